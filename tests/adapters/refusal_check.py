"""What every adapter's refusal must be, checked the way the hub reads it (hub.refusal.read_refusal)."""

from __future__ import annotations

from typing import Any

from hub.pipeline import Record
from hub.refusal import Refusal, read_refusal
from hub.topics import REFUSALS, STATUS, Header


def owner_record(record: Record, authority: str) -> Record:
    """``record`` with the headers the hub puts on an owner topic (who owns it, by which rule)."""
    kept = tuple((k, v) for k, v in record.headers if k not in (Header.AUTHORITY, Header.MELDING_ID))
    headers = kept + (
        (Header.MELDING_ID, record.key or b""),
        (Header.AUTHORITY, authority.encode()),
        (Header.RULE_ID, b"r-test"),
        (Header.RULESET_VERSION, b"2026.1"),
        ("content-type", b"application/ld+json"),
    )
    return Record(value=record.value, key=record.key, headers=headers, topic=record.topic,
                  partition=record.partition, offset=record.offset)


def assert_one_refusal(outputs: list[Any], record: Record, authority: str) -> Refusal:
    """Exactly one record on meldingen.refusals, nothing for the citizen, the melding as consumed."""
    refusals = [o for o in outputs if o.topic == REFUSALS]
    assert len(refusals) == 1, f"{len(refusals)} refusals in {[o.topic for o in outputs]}"
    assert not [o for o in outputs if o.topic == STATUS], "a refusal is not reported to meldingen.status"
    (out,) = refusals
    assert out.value == record.value, "the value exactly as consumed"
    assert out.key == record.key
    assert list(out.headers[: len(record.headers)]) == list(record.headers), "the consumed headers, unchanged, in order"
    refusal = read_refusal(out.headers)
    assert refusal.refused_by == authority and refusal.hops == 1
    return refusal
