"""The audit trail of admin actions on dead letters: who did what, when, why.

Every admin action — replaying or discarding a dead letter, showing or exporting personal data,
exporting dead letters, logging in to the console — becomes one record on ``meldingen.audit``
(append-only, kept forever: ``retention.ms=-1``). Replays and discards are written in the same
Kafka transaction as the replayed melding and the state on ``meldingen.deadletter.actions``, so
the audit trail can never miss an action that happened. Showing personal data is audited
*before* the data is shown: if the audit record cannot be written, nothing is revealed.

Audit records carry no payloads and no personal data: the dead letter's reference, the melding
id, the admin's name, and the reason the admin gave.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub.kafka_admin import ensure_topics
from hub.kafka_auth import client_kwargs, principal_name
from hub.kafka_io import partitions_of
from hub.logs import scrub
from hub.topics import AUDIT, DEADLETTER_ACTIONS

__all__ = ["AUDIT", "AuditAction", "AuditEvent", "ensure_admin_topics", "principal", "read", "write"]

ADMIN_ENV = "MELDHUB_ADMIN"
"""Who the admin is when ``--as`` is not given (else the OS user)."""

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    # state per dead letter ("<partition>/<offset>" → latest action): only the latest matters
    DEADLETTER_ACTIONS: {"cleanup.policy": "compact", "min.compaction.lag.ms": "86400000"},
    # the trail itself: never compacted, never deleted by age
    AUDIT: {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
}
"""Admin topics: one partition each, so every reader sees admin actions in the order they happened."""


class AuditAction(StrEnum):
    REPLAYED = "replayed"
    DISCARDED = "discarded"
    REVEALED = "revealed-personal-data"
    EXPORTED = "exported"
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"


@dataclass(frozen=True)
class AuditEvent:
    """One admin action. ``target`` is a dead letter reference (``meldingen.deadletter/<p>/<o>``),
    a filter description for bulk actions, or empty."""

    action: str
    by: str
    at: str = field(default_factory=lambda: now_iso())
    channel: str = "cli"  # "cli" or "console"
    target: str = ""
    melding_id: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]:
        data = asdict(self)
        kafka_user = principal_name()
        if kafka_user and "kafka_user" not in data["details"]:
            data["details"] = {**data["details"], "kafka_user": kafka_user}  # the SASL principal, besides the admin
        value = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        headers = (("audit-action", self.action.encode()), ("audit-by", self.by.encode()))
        return (self.target.encode() if self.target else None), value, headers

    @classmethod
    def from_value(cls, value: bytes | None) -> AuditEvent | None:
        try:
            data = json.loads(value or b"")
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or "action" not in data or "by" not in data:
            return None
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["details"] = known.get("details") or {}
        return cls(**known)

    @property
    def timestamp(self) -> datetime | None:
        return parse_time(self.at)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def principal(explicit: str | None = None) -> str:
    """The admin acting: ``--as``, else ``$MELDHUB_ADMIN``, else the OS user."""
    for candidate in (explicit, os.environ.get(ADMIN_ENV)):
        if candidate and candidate.strip():
            return _clean_name(candidate)
    try:
        return _clean_name(getpass.getuser())
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid-{os.getuid()}"


def _clean_name(name: str) -> str:
    name = " ".join(name.split())[:100]
    return scrub(name)  # an admin name is an account name, not a place for someone's e-mail


async def ensure_admin_topics(bootstrap: str, replication_factor: int = 1) -> None:
    """Create the actions and audit topics (one partition each) unless they exist."""
    await ensure_topics(
        bootstrap,
        {name: 1 for name in TOPIC_CONFIGS},
        replication_factor=replication_factor,
        configs=TOPIC_CONFIGS,
    )


async def write(bootstrap: str, *events: AuditEvent) -> None:
    """Write audit events and wait until the broker acknowledged them (``acks=all``).

    For actions outside a replay/discard transaction (revealing personal data, exports, logins).
    Raises when the broker does not acknowledge: callers must then not perform the action.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for event in events:
            key, value, headers = event.to_record()
            futures.append(await producer.send(AUDIT, value=value, key=key, headers=list(headers)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read(bootstrap: str, limit: int | None = 500, timeout: float = 30.0) -> list[AuditEvent]:
    """The audit trail, newest first (at most ``limit`` events; ``None`` for all)."""
    try:
        parts = (await partitions_of(bootstrap, [AUDIT]))[AUDIT]
    except LookupError:
        return []
    tps = [TopicPartition(AUDIT, p) for p in parts]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        begin = await consumer.beginning_offsets(tps)
        for tp in tps:
            start = begin[tp] if limit is None else max(begin[tp], end[tp] - limit * 2)
            consumer.seek(tp, start)
        events: list[AuditEvent] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.offset < end[TopicPartition(r.topic, r.partition)]:
                        event = AuditEvent.from_value(r.value)
                        if event is not None:
                            events.append(event)
    finally:
        await consumer.stop()
    events.sort(key=lambda e: e.at, reverse=True)
    return events if limit is None else events[:limit]
