"""Shared pieces of the fault tests: the test registry, hub workers, exactly-once checks."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaProducer

from hub.demo import FeedItem
from hub.demo_run import HubProcess
from hub.kafka_io import MAX_RECORD_BYTES, Delivered
from hub.registry import Registry
from hub.topics import DEADLETTER, Header, authority_topic
from tests.oracle import expected_owner

REGISTRY = Path(__file__).parents[1] / "data" / "registry-no-layers.yaml"
HUB_ENV = {
    "MELDHUB_REGISTRY": str(REGISTRY),
    "MELDHUB_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum: a killed worker's partitions move on sooner
    "MELDHUB_VALIDATOR": os.environ.get("MELDHUB_VALIDATOR", "compiled"),
}


class StreamInBackground:
    """Produces the items at a fixed rate from a thread, so that a fault injected meanwhile lands
    while the stream is still flowing — however fast the hub has become."""

    def __init__(self, bootstrap: str, topic: str, items: Sequence[FeedItem], rate: float) -> None:
        self.bootstrap, self.topic, self.items, self.rate = bootstrap, topic, items, rate
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="stream", daemon=True)

    def start(self) -> StreamInBackground:
        self._thread.start()
        return self

    @property
    def flowing(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 600) -> None:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.sent == len(self.items), f"only {self.sent} of {len(self.items)} meldingen were sent"

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
            max_request_size=MAX_RECORD_BYTES,  # the broken items include an oversized melding
        )  # fmt: skip
        await producer.start()
        try:
            chunk = max(1, int(self.rate / 10))
            started = time.monotonic()
            for first in range(0, len(self.items), chunk):
                part = self.items[first : first + chunk]
                futures = [await producer.send(self.topic, i.value, key=i.key, headers=list(i.headers)) for i in part]
                await asyncio.gather(*futures)
                self.sent += len(part)
                delay = started + self.sent / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            await producer.stop()


def all_topics(registry: Registry) -> list[str]:
    return [DEADLETTER, *(authority_topic(a.id) for a in registry.authorities)]


def melding_lines(log: Path) -> int:
    """Meldingen one worker reported as committed: its JSON log lines whose event is ``melding.*``
    (read as JSON, not matched as text: the line's spacing is the renderer's business)."""
    if not log.exists():
        return 0
    count = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"melding.' not in line:
            continue
        try:
            event = json.loads(line).get("event", "")
        except ValueError:  # a line still being written
            continue
        count += isinstance(event, str) and event.startswith("melding.")
    return count


def progress(*logs: Path) -> int:
    """Meldingen the workers reported as committed, all workers together."""
    return sum(melding_lines(log) for log in logs)


def wait_for_progress(target: int, *logs: Path, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while (done := progress(*logs)) < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"workers stalled at {done} of {target} meldingen")
        time.sleep(0.1)
    return done


def start_worker(bootstrap: str, log: Path, until: str = "hub.joined", **env: str) -> HubProcess:
    return HubProcess(bootstrap, log, env={**HUB_ENV, **env}).start(until=until)


def assert_exactly_once(items: list[FeedItem], delivered: list[Delivered]) -> None:
    """Every valid melding once on its owner's topic, every broken one once in the dead letters."""
    by_id: dict[str, list[Delivered]] = defaultdict(list)
    for d in delivered:
        by_id[d.melding_id].append(d)
    lost = [i.melding_id for i in items if i.melding_id not in by_id]
    doubled = {m: len(ds) for m, ds in by_id.items() if len(ds) > 1}
    assert not lost, f"{len(lost)} of {len(items)} meldingen lost, e.g. {lost[:3]}"
    assert not doubled, f"{len(doubled)} meldingen delivered more than once, e.g. {list(doubled.items())[:3]}"
    for item in items:
        (d,) = by_id[item.melding_id]
        if item.kind == "valid":
            assert d.topic == authority_topic(expected_owner(item.category, item.municipality_nis))
        else:
            assert d.topic == DEADLETTER
            assert d.headers[Header.ERROR_CLASS] == item.kind
