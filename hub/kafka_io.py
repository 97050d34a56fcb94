"""Plain produce and read-back helpers for the demo feed, the CLI and the tests.

Reading back assigns every partition of the given topics directly (no consumer group), so
an observer never takes partitions away from the hub or from an authority's consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from hub.topics import Header
from hub.kafka_auth import client_kwargs

MAX_RECORD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Delivered:
    """A record found on a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def melding_id(self) -> str | None:
        if Header.MELDING_ID in self.headers:
            return self.headers[Header.MELDING_ID]
        return self.key.decode("utf-8", errors="replace") if self.key else None


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]],
) -> int:
    """Send (key, value, headers) records and wait until the broker acknowledged all."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **client_kwargs(), acks="all", enable_idempotence=True, max_request_size=MAX_RECORD_BYTES
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=list(headers)) for key, value, headers in records
        ]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def collect(
    bootstrap: str,
    topics: Iterable[str],
    wanted: set[str] | None = None,
    timeout: float = 60.0,
    settle: float = 1.0,
    by_key: bool = False,
    where: Callable[[Delivered], bool] | None = None,
) -> list[Delivered]:
    """Read ``topics`` from the start (read_committed) until every id in ``wanted`` was seen
    (or ``timeout`` passed), then keep reading for ``settle`` seconds so late duplicates are
    counted too. With ``wanted=None`` it reads up to the current end of each partition.
    Only records whose melding id (or, with ``by_key``, whose key) is in ``wanted`` are returned;
    with ``where``, only those it accepts (the second delivery of a melding, say: a record
    already on the topics must not count as the one waited for)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **client_kwargs(),
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=4 * MAX_RECORD_BYTES,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t, ps in (await partitions_of(bootstrap, topics)).items() for p in ps]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Delivered] = []
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        end = await consumer.end_offsets(partitions) if wanted is None else None
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if wanted is not None and settle_until is None and wanted <= seen:
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                break
            if now >= deadline:
                break
            if end is not None and all(await _position(consumer, tp) >= end[tp] for tp in partitions):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    d = Delivered(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        {k: (v or b"").decode("utf-8", errors="replace") for k, v in (r.headers or ())},
                    )
                    ident = d.key.decode("utf-8", errors="replace") if by_key and d.key else d.melding_id
                    if (wanted is None or ident in wanted) and (where is None or where(d)):
                        found.append(d)
                        if ident:
                            seen.add(ident)
        return found
    finally:
        await consumer.stop()


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> dict[str, list[int]]:
    """Partition ids of each topic; raises LookupError for a topic that does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs(), client_id="meldhub-reader")
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    missing = [t["topic"] for t in described if t["error_code"] != 0]
    if missing:
        raise LookupError(f"topics do not exist: {', '.join(missing)}")
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described}


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    return await consumer.position(tp)
