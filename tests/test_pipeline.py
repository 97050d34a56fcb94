"""The pure stages, without a broker: every kind of input ends as exactly one output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.demo import BROKEN_KINDS, DemoFeed
from hub.errors import ErrorClass
from hub.geo import MunicipalityIndex
from hub.pipeline import Pipeline, Record
from hub.registry import Registry
from hub.routing import Router
from hub.topics import DEADLETTER, INBOUND, Header, authority_topic
from hub.validation import ShaclValidator
from tests.oracle import expected_owner


@pytest.fixture(scope="module")
def parts() -> tuple[Pipeline, DemoFeed, Registry]:
    registry = Registry.load(Path(__file__).parent / "data" / "registry-no-layers.yaml")
    index = MunicipalityIndex.load()
    return Pipeline(ShaclValidator(), Router(registry, index)), DemoFeed(registry, index, seed=7), registry


def _record(value: bytes | None, key: bytes | None = b"k", headers=()) -> Record:
    return Record(value=value, key=key, headers=tuple(headers), topic=INBOUND, partition=2, offset=41)


def test_valid_melding_goes_to_its_owner_with_behandelaar_and_routing_headers(parts) -> None:
    pipeline, feed, registry = parts
    for category in ("zwerfvuil", "wegdefect", "straatverlichting", "hinder-wegenwerken"):
        item = feed.valid(category=category, nis="34022")
        outcome = pipeline.process(_record(item.value, item.key, item.headers))
        owner = expected_owner(category, "34022")
        assert not outcome.dead_lettered, outcome.reason
        assert outcome.output.topic == authority_topic(owner)
        doc = json.loads(outcome.output.value)
        authority = next(a for a in registry.authorities if a.id == owner)
        assert doc["behandelaar"] == authority.identifier
        headers = dict(outcome.output.headers)
        assert headers[Header.AUTHORITY] == owner.encode()
        assert headers[Header.MUNICIPALITY_NIS] == b"34022"
        assert headers[Header.RULESET_VERSION] == registry.version.encode()
        assert headers[Header.RULE_ID]
        assert headers[Header.SOURCE] == b"meldingsapp-kortrijk"
        # the rest of the melding is unchanged
        original = json.loads(item.value)
        assert {k: v for k, v in doc.items() if k != "behandelaar"} == original


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_each_broken_kind_is_dead_lettered_with_its_own_class_and_original_bytes(parts, kind: str) -> None:
    pipeline, feed, _ = parts
    item = feed.broken(kind)
    outcome = pipeline.process(_record(item.value, item.key, item.headers))
    assert outcome.error_class == ErrorClass(kind)
    out = outcome.output
    assert out.topic == DEADLETTER
    assert out.value == item.value  # untouched
    assert out.key == item.key
    headers = dict(out.headers)
    assert headers[Header.ERROR_CLASS] == kind.encode()
    assert headers[Header.ORIGINAL_TOPIC] == INBOUND.encode()
    assert headers[Header.ORIGINAL_PARTITION] == b"2"
    assert headers[Header.ORIGINAL_OFFSET] == b"41"
    assert headers[Header.FIRST_SEEN]
    reason = headers[Header.ERROR_REASON].decode()
    assert reason and "\n" not in reason
    assert headers[Header.SOURCE] == item.headers[0][1]  # producer's headers are kept


def test_shape_violations_are_listed_in_the_details_header(parts) -> None:
    pipeline, feed, _ = parts
    item = feed.broken("shape-violation")
    headers = dict(pipeline.process(_record(item.value)).output.headers)
    details = json.loads(headers[Header.ERROR_DETAILS])
    fields = {d["field"] for d in details}
    assert "titel" in fields
    assert "statusdatum" in fields


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (None, ErrorClass.NOT_JSON),
        (b"", ErrorClass.NOT_JSON),
        (b"[1, 2, 3]", ErrorClass.NOT_JSONLD),
        (b'"just a string"', ErrorClass.NOT_JSONLD),
        (b"[" * 200_000 + b"]" * 200_000, ErrorClass.NOT_JSON),
        (b'{"@context": "https://example.org/ctx.jsonld", "@type": "Melding"}', ErrorClass.NOT_JSONLD),
        (b'{"@context": {"@vocab": "https://example.org/"}, "naam": "x"}', ErrorClass.NOT_JSONLD),
    ],
)
def test_odd_input_never_raises(parts, value, error_class) -> None:
    pipeline, _, _ = parts
    outcome = pipeline.process(_record(value))
    assert outcome.error_class == error_class
    assert outcome.output.value == value


def test_a_bug_in_a_stage_is_dead_lettered_with_a_fingerprint(parts) -> None:
    _, feed, registry = parts

    class BrokenRouter(Router):
        def route(self, category_iris, points):
            raise KeyError("boom")

    pipeline = Pipeline(ShaclValidator(), BrokenRouter(registry, MunicipalityIndex.load()))
    item = feed.valid()
    outcome = pipeline.process(_record(item.value))
    assert outcome.error_class == ErrorClass.BUG
    headers = dict(outcome.output.headers)
    details = json.loads(headers[Header.ERROR_DETAILS])
    assert details["exception"] == "KeyError"
    assert len(details["fingerprint"]) == 16
    assert b"fingerprint" in headers[Header.ERROR_REASON]


def test_replayed_dead_letter_keeps_its_first_seen_time(parts) -> None:
    pipeline, _, _ = parts
    outcome = pipeline.process(_record(b"nope", headers=[(Header.FIRST_SEEN, b"2026-01-01T00:00:00+00:00")]))
    headers = [h for h in outcome.output.headers if h[0] == Header.FIRST_SEEN]
    assert headers == [(Header.FIRST_SEEN, b"2026-01-01T00:00:00+00:00")]
