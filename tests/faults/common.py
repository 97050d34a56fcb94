"""Shared pieces of the fault tests: the test registry, hub workers, exactly-once checks."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

from hub.demo import FeedItem
from hub.demo_run import HubProcess
from hub.kafka_io import Delivered
from hub.registry import Registry
from hub.topics import DEADLETTER, Header, authority_topic
from tests.oracle import expected_owner

REGISTRY = Path(__file__).parents[1] / "data" / "registry-no-layers.yaml"
HUB_ENV = {
    "MELDHUB_REGISTRY": str(REGISTRY),
    "MELDHUB_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum: a killed worker's partitions move on sooner
    "MELDHUB_VALIDATOR": os.environ.get("MELDHUB_VALIDATOR", "compiled"),
}


def all_topics(registry: Registry) -> list[str]:
    return [DEADLETTER, *(authority_topic(a.id) for a in registry.authorities)]


def progress(*logs: Path) -> int:
    """Meldingen the workers reported as committed (one ``melding.*`` line each)."""
    total = 0
    for log in logs:
        if log.exists():
            total += log.read_text(encoding="utf-8", errors="replace").count('"event": "melding.')
    return total


def wait_for_progress(target: int, *logs: Path, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while (done := progress(*logs)) < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"workers stalled at {done} of {target} meldingen")
        time.sleep(0.1)
    return done


def start_worker(bootstrap: str, log: Path, **env: str) -> HubProcess:
    return HubProcess(bootstrap, log, env={**HUB_ENV, **env}).start()


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
