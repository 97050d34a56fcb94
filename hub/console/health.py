"""Destination health for the console: what can honestly be computed from Kafka.

Per authority topic ``meldingen.authority.<id>``:

- **backlog** per consumer group that committed offsets on the topic: Σ (end offset − committed
  offset) over its partitions (end = last stable offset, as ``read_committed`` readers see it).
  Without any group we cannot know what was consumed: the backlog is shown as unknown and only the
  number of messages on the topic is given.
- **oldest waiting message**: the Kafka timestamp of the record at the committed offset of the
  group that is furthest behind (one record read per partition with a backlog).
- **last error**: the newest dead letter naming the destination (``authority`` header or an
  original topic of that authority) — failures of the hub's own stages have no destination.
- **paused**: only known when adapters expose metrics and ``MELDHUB_CONSOLE_METRICS_URLS`` lists
  them (``meldhub_destination_paused``); otherwise unknown.

Also the hub's own backlog on ``meldingen.inbound`` (its consumer group).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.topics import AUTHORITY_PREFIX, INBOUND

METRICS_URLS_ENV = "MELDHUB_CONSOLE_METRICS_URLS"
HUB_GROUP_ENV = "MELDHUB_GROUP_ID"


@dataclass
class GroupLag:
    group: str
    backlog: int
    oldest: datetime | None = None
    partitions_without_commit: int = 0


@dataclass
class Health:
    topic: str
    authority_id: str
    name: str | None = None
    exists: bool = True
    messages: int = 0
    """Records currently on the topic (end − beginning, over partitions)."""
    groups: list[GroupLag] = field(default_factory=list)
    last_error: Any = None  # the newest Entry naming this destination
    open_dead_letters: int = 0
    paused: bool | None = None

    @property
    def backlog(self) -> int | None:
        return max((g.backlog for g in self.groups), default=None)

    @property
    def oldest(self) -> datetime | None:
        times = [g.oldest for g in self.groups if g.oldest is not None]
        return min(times) if times else None


@dataclass
class Overview:
    destinations: list[Health]
    hub: Health | None
    computed_at: datetime
    problems: list[str] = field(default_factory=list)
    paused_known: bool = False


async def compute(bootstrap: str, entries: list[Any], registry: Any = None, timeout: float = 15.0) -> Overview:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    problems: list[str] = []
    names: dict[str, str] = {}
    if registry is not None:
        names = {a.id: a.name for a in registry.authorities}
    from hub.kafka_auth import client_kwargs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs(), client_id="meldhub-console")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await admin.start()
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            existing = set(await admin.list_topics())
            topics = sorted({t for t in existing if t.startswith(AUTHORITY_PREFIX)} | {AUTHORITY_PREFIX + a for a in names})
            present = [t for t in topics if t in existing]
            described = await admin.describe_topics([*present, INBOUND]) if present or INBOUND in existing else []
            parts = {d["topic"]: [TopicPartition(d["topic"], p["partition"]) for p in d["partitions"]] for d in described if d["error_code"] == 0}
            all_tps = [tp for tps in parts.values() for tp in tps]
            end = await consumer.end_offsets(all_tps) if all_tps else {}
            begin = await consumer.beginning_offsets(all_tps) if all_tps else {}
            committed: dict[str, dict[Any, int]] = {}
            try:
                groups = [g[0] for g in await admin.list_consumer_groups()]
            except Exception as e:  # noqa: BLE001 - shown, not fatal
                groups = []
                problems.append(f"consumer groups niet leesbaar: {type(e).__name__}")
            for g in groups:
                try:
                    offsets = await admin.list_consumer_group_offsets(g)
                except Exception:  # noqa: BLE001
                    continue
                mine = {tp: om.offset for tp, om in offsets.items() if tp.topic in parts and om.offset >= 0}
                if mine:
                    committed[g] = mine

            async def health_of(topic: str, authority_id: str) -> Health:
                h = Health(topic, authority_id, names.get(authority_id), exists=topic in parts)
                tps = parts.get(topic, [])
                h.messages = sum(end[tp] - begin[tp] for tp in tps)
                for g, offs in committed.items():
                    if not any(tp in offs for tp in tps):
                        continue
                    lag = GroupLag(g, 0)
                    for tp in tps:
                        at = offs.get(tp)
                        if at is None:
                            lag.partitions_without_commit += 1
                            at = begin[tp]
                        lag.backlog += max(0, end[tp] - at)
                        if end[tp] > at:
                            ts = await _timestamp_at(consumer, tp, at)
                            if ts is not None and (lag.oldest is None or ts < lag.oldest):
                                lag.oldest = ts
                    h.groups.append(lag)
                return h

            destinations = [await health_of(t, t[len(AUTHORITY_PREFIX) :]) for t in topics]
            hub = await health_of(INBOUND, "hub") if INBOUND in parts else None
            if hub is not None:
                hub.name = "hub (meldingen.inbound)"
                wanted = os.environ.get(HUB_GROUP_ENV, "meldingen-hub")
                hub.groups = [g for g in hub.groups if g.group == wanted] or hub.groups
    finally:
        await consumer.stop()
        await admin.close()

    for h in destinations:
        mine = [e for e in entries if e.dead_letter.destination == h.authority_id]
        h.open_dead_letters = sum(1 for e in mine if e.state.value == "open")
        h.last_error = max(mine, key=lambda e: e.dead_letter.timestamp, default=None)

    paused_known = False
    urls = [u.strip() for u in os.environ.get(METRICS_URLS_ENV, "").split(",") if u.strip()]
    if urls:
        paused, errors = await asyncio.to_thread(_scrape_paused, urls)
        problems += errors
        paused_known = not errors
        for h in destinations:
            if h.authority_id in paused:
                h.paused = paused[h.authority_id]
            elif paused_known:
                h.paused = False
    return Overview(destinations, hub, datetime.now(UTC), problems, paused_known)


async def _timestamp_at(consumer: Any, tp: Any, offset: int) -> datetime | None:
    """The timestamp of the first committed record at or after ``offset``."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=300, max_records=1)
        for records in batch.values():
            for r in records:
                return datetime.fromtimestamp(r.timestamp / 1000, UTC) if r.timestamp and r.timestamp > 0 else None
    return None


def _scrape_paused(urls: list[str]) -> tuple[dict[str, bool], list[str]]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    paused: dict[str, bool] = {}
    errors: list[str] = []
    for url in urls:
        try:
            text = httpx.get(url, timeout=2.0).text
            for family in text_string_to_metric_families(text):
                if family.name == "meldhub_destination_paused":
                    for s in family.samples:
                        dest = s.labels.get("destination")
                        if dest:
                            paused[dest] = paused.get(dest, False) or s.value >= 1
        except Exception as e:  # noqa: BLE001 - one adapter down must not break the page
            errors.append(f"metrics van {url} niet leesbaar: {type(e).__name__}")
    return paused, errors
