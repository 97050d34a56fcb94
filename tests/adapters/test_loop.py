"""The shared authority-adapter loop (adapters/loop.py) on a real broker, with the TOPdesk stand-in
as a real HTTP server: a destination that refuses (401) or is down (503) is paused — its meldingen
stay queued, the stand-in is not hammered, nothing is dead-lettered — and once it answers again
every melding is filed exactly once. What the vendor rejects for one melding is still dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from adapters.base import Runtime
from adapters.loop import authority_consumer, consume, gate_for
from adapters.topdesk.client import TopdeskClient
from adapters.topdesk.config import Config
from adapters.topdesk.service import TopdeskWorker
from adapters.topdesk.store import Store
from hub import metrics
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.kafka_admin import ensure_topics
from hub.kafka_io import collect, produce
from hub.registry import Registry
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters.topdesk_standin import TopdeskStandIn

pytestmark = pytest.mark.kafka

KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"
PASSWORD = "app-password"


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=4242)


def routed(feed: DemoFeed, authority: str, n: int) -> list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]]:
    out = []
    for _ in range(n):
        item = feed.valid(category="wegdefect", nis="34022")
        doc = json.loads(item.value)
        doc["behandelaar"] = KORTRIJK
        headers = ((Header.SOURCE, b"open311-zwvl"), (Header.MELDING_ID, item.key), (Header.AUTHORITY, authority.encode()))
        out.append((item.key, json.dumps(doc).encode(), headers))
    return out


def config_for(authority: str, **overrides: Any) -> Config:
    base: dict[str, Any] = {
        "id": f"topdesk-{authority}",
        "authority": authority,
        "base_url": "http://127.0.0.1:1",
        "username_env": "T_TOPDESK_USER",
        "password_env": "T_TOPDESK_PASSWORD",
        "timeout_s": 2,
        "retry": {"max_attempts": 2, "base_delay_s": 0, "max_delay_s": 0},
        "pause": {"pause_for_s": 1.0, "max_pause_s": 2.0},
        "entry_type": {"name": "Meldingen Hub"},
    }
    return Config.model_validate({**base, **overrides})


@dataclass
class Running:
    standin: TopdeskStandIn
    config: Config
    topic: str
    bootstrap: str

    async def committed(self) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(f"adapter-{self.config.id}")
        finally:
            await admin.close()
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self.topic and meta.offset > 0)


@asynccontextmanager
async def adapter(bootstrap: str, tmp_path: Path, standin: TopdeskStandIn, **overrides: Any) -> AsyncIterator[Running]:
    """The TOPdesk worker in the shared loop (the gate as ``meldhub adapters run`` builds it)."""
    authority = f"loop-{uuid.uuid4().hex[:10]}"
    url, server = standin.serve()
    config = config_for(authority, base_url=url, **overrides)
    topic = authority_topic(authority)
    await ensure_topics(bootstrap, [topic, STATUS, DEADLETTER], partitions=2)
    store = Store(tmp_path / f"{authority}.sqlite3")
    worker = TopdeskWorker(config, TopdeskClient(url, "hub-operator", PASSWORD, timeout=config.timeout_s), store,
                           KORTRIJK, "Stad Kortrijk")
    consumer = authority_consumer(config, Runtime(bootstrap, tmp_path))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    await consumer.start()
    stopping = asyncio.Event()
    task = asyncio.create_task(consume(worker.handle, consumer, producer, stopping, "topdesk", config, gate_for(config)))
    try:
        yield Running(standin, config, topic, bootstrap)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await consumer.stop()
        await producer.stop()
        await worker.aclose()
        server.shutdown()
        server.server_close()


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


async def assert_filed_exactly_once(run: Running, ids: set[str]) -> None:
    await eventually(lambda: all(run.standin.creates.get(m) for m in ids), 60, "every melding filed")
    await eventually(lambda: True, 0.5, "")
    assert {m: run.standin.creates[m] for m in ids} == dict.fromkeys(ids, 1)
    assert all(len(run.standin.by_external(m)) == 1 for m in ids)
    deadline = time.monotonic() + 30
    while await run.committed() < len(ids):
        assert time.monotonic() < deadline, "offsets not committed after delivery"
        await asyncio.sleep(0.2)
    statuses = await collect(run.bootstrap, [STATUS], ids, timeout=30, settle=1.0)
    assert Counter(d.melding_id for d in statuses) == Counter(dict.fromkeys(ids, 1)), "one Toegewezen aan each"


async def test_a_refusing_destination_is_paused_probed_and_resumed(kafka_bootstrap: str, tmp_path: Path, feed: DemoFeed) -> None:
    standin = TopdeskStandIn(password="rotated-by-the-tenant")  # our application password no longer works: 401
    async with adapter(kafka_bootstrap, tmp_path, standin) as run:
        records = routed(feed, run.config.authority, 8)
        ids = {k.decode() for k, _, _ in records}
        await produce(kafka_bootstrap, run.topic, records)
        await eventually(lambda: standin.requests >= 1, 60, "the first delivery attempt")
        paused_at = time.monotonic()
        await eventually(lambda: metrics.sample("meldhub_destination_paused", {"destination": run.config.authority}) == 1,
                         5, "the paused gauge")
        await asyncio.sleep(4.0)
        # not hammered: the first attempt, then one probe per pause (1 s, then 2 s): 8 meldingen would be 8+ calls
        assert standin.requests <= 5, f"{standin.requests} requests during a 4 s pause"
        assert standin.incidents == {}
        assert await run.committed() == 0, "the meldingen stay queued: nothing committed"
        assert await collect(kafka_bootstrap, [DEADLETTER], ids, timeout=2, settle=0) == [], "nothing dead-lettered"

        standin.password = PASSWORD  # the admin puts the new password in place (here: the tenant takes ours back)
        await assert_filed_exactly_once(run, ids)
        assert time.monotonic() - paused_at < 30
        assert metrics.sample("meldhub_destination_paused", {"destination": run.config.authority}) == 0
        assert await collect(kafka_bootstrap, [DEADLETTER], ids, timeout=2, settle=0) == []


async def test_an_outage_keeps_the_backlog_queued_and_a_rejected_melding_is_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path, feed: DemoFeed
) -> None:
    standin = TopdeskStandIn()
    standin.down = 503
    async with adapter(kafka_bootstrap, tmp_path, standin) as run:
        records = routed(feed, run.config.authority, 6)
        ids = {k.decode() for k, _, _ in records}
        await produce(kafka_bootstrap, run.topic, records)
        await eventually(lambda: standin.requests >= 2, 60, "the first delivery and its retry")
        await asyncio.sleep(3.0)
        assert standin.requests <= 8, f"{standin.requests} requests: an outage must not be hammered"
        assert await run.committed() == 0
        assert await collect(kafka_bootstrap, [DEADLETTER], ids, timeout=2, settle=0) == [], "an outage is no dead letter"

        standin.down = None
        await assert_filed_exactly_once(run, ids)

        # the vendor rejects one melding (400): that one is dead-lettered, the next is filed
        rejected, fine = routed(feed, run.config.authority, 2)
        standin.faults = [400]
        await produce(kafka_bootstrap, run.topic, [rejected])
        await eventually(lambda: not standin.faults, 30, "the rejected melding tried")
        await produce(kafka_bootstrap, run.topic, [fine])
        (dl,) = await collect(kafka_bootstrap, [DEADLETTER], {rejected[0].decode()}, timeout=30, settle=1.0)
        assert dl.headers[Header.ERROR_CLASS] == "vendor-rejected" and dl.headers[Header.AUTHORITY] == run.config.authority
        assert dl.value == rejected[1], "the original bytes"
        await eventually(lambda: standin.creates.get(fine[0].decode()) == 1, 30, "the next melding filed")
