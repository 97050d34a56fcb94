"""The dead-letter read model without a broker: parsing, redaction, edits, filters, state;
the delivery pause policy; the metrics API."""

from __future__ import annotations

import copy
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest

from hub import metrics
from hub.deadletters import (
    Action,
    ActionState,
    DeadLetter,
    DeadLetterFilter,
    DestinationGate,
    Entry,
    PausePolicy,
    State,
    Verdict,
    check_edited,
    contains_redacted,
    delivery_dead_letter,
    parse_dead_letter_id,
    parse_when,
    redact_json,
    redact_text,
    replay_headers,
    restore_redacted,
    scrub_text,
    select,
)
from hub.demo import DemoFeed, FeedItem
from hub.errors import NotJson, ShapeViolation
from hub.geo import MunicipalityIndex
from hub.logs import REDACTED, scrub
from hub.pipeline import Outcome, Output, Record, dead_letter
from hub.registry import Registry
from hub.routing import RouteDecision
from hub.topics import DEADLETTER, INBOUND, Header
from hub.validation import ShaclValidator

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=5150)


@pytest.fixture(scope="module")
def validator() -> ShaclValidator:
    return ShaclValidator()


def _with_reporter(feed: DemoFeed, kind: str) -> FeedItem:
    while True:
        item = feed.broken(kind)
        if item.reporter:
            return item


def _dl(
    out: Output, partition: int = 0, offset: int = 7, when: datetime = T0, topic: str = DEADLETTER
) -> DeadLetter:
    record = SimpleNamespace(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(when.timestamp() * 1000),
        key=out.key,
        value=out.value,
        headers=list(out.headers),
    )
    return DeadLetter.from_record(record)


def _dead(item: FeedItem, error: Exception, offset: int = 7, when: datetime = T0, partition: int = 0) -> DeadLetter:
    record = Record(item.value, item.key, item.headers, INBOUND, 2, 40 + offset)
    return _dl(dead_letter(record, error, item.melding_id, now=when - timedelta(minutes=5)), partition, offset, when)  # type: ignore[arg-type]


def _assert_no_reporter(text: str, item: FeedItem) -> None:
    assert item.reporter
    for secret in item.reporter:
        assert secret not in text, f"personal data {secret!r} in output"


# --- parsing ------------------------------------------------------------------------------


def test_a_dead_letter_is_read_back_from_the_hubs_own_headers(feed: DemoFeed) -> None:
    item = feed.broken("shape-violation")
    violations = [{"field": "titel", "component": "MinCountConstraintComponent", "message": "is required but missing",
                   "value": None, "focus_node": "x", "path": "p", "severity": "Violation"}]  # fmt: skip
    dl = _dead(item, ShapeViolation("titel: is required but missing", violations), offset=17, partition=1)
    assert dl.id == "1/17" and dl.ref == f"{DEADLETTER}/1/17"
    assert dl.melding_id == item.melding_id
    assert dl.error_class == "shape-violation" and dl.stage == "validate"
    assert dl.reason == "titel: is required but missing"
    assert dl.violations == violations
    assert dl.source == item.headers[0][1].decode()
    assert (dl.original_topic, dl.original_partition, dl.original_offset) == (INBOUND, 2, 57)
    assert dl.first_seen == T0 - timedelta(minutes=5)
    assert dl.timestamp == T0
    assert dl.destination is None
    assert dl.value == item.value, "the original bytes, untouched"


def test_ids_accept_the_short_and_the_full_form() -> None:
    assert parse_dead_letter_id("0/17") == (0, 17)
    assert parse_dead_letter_id(f"{DEADLETTER}/2/5") == (2, 5)
    for bad in ("17", "a/b", "0/17/3", ""):
        with pytest.raises(ValueError):
            parse_dead_letter_id(bad)


def test_times_are_absolute_or_relative() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_when("2d", now) == now - timedelta(days=2)
    assert parse_when("90m", now) == now - timedelta(minutes=90)
    assert parse_when("2026-11-20") == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_when("2026-11-20T08:00+01:00") == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    assert parse_when("") is None
    with pytest.raises(ValueError):
        parse_when("gisteren")


# --- redaction ----------------------------------------------------------------------------


def test_redacted_view_hides_the_reporter_of_a_json_melding(feed: DemoFeed) -> None:
    item = _with_reporter(feed, "shape-violation")
    view = _dead(item, ShapeViolation("x")).redacted()
    assert view.payload_kind == "json"
    _assert_no_reporter(view.payload, item)
    _assert_no_reporter(json.dumps(view.document, ensure_ascii=False), item)
    assert view.document["melder"] == REDACTED
    assert view.document["heeftBody"] == json.loads(item.value)["heeftBody"], "the rest is untouched"
    revealed = _dead(item, ShapeViolation("x")).revealed()
    assert item.reporter[0] in revealed.payload


def test_non_json_payloads_get_a_scrubbed_text_preview(feed: DemoFeed) -> None:
    item = _with_reporter(feed, "not-utf8")  # latin-1 JSON with trailing garbage: no JSON parser reads it
    view = _dead(item, NotJson("x")).redacted()
    assert view.payload_kind == "text"
    _assert_no_reporter(view.payload, item)
    assert '"melder": "«redacted»"' in view.payload
    assert "titel" in view.payload

    free = b"Melding van Jan: bel 0470/12.34.56 of mail jan.peeters@example.org, put aan de Kerkstraat"
    text = DeadLetter(DEADLETTER, 0, 1, T0, None, free, ()).redacted().payload
    assert "0470/12.34.56" not in text and "jan.peeters@example.org" not in text
    assert "Kerkstraat" in text


def test_truncated_and_expanded_json_is_redacted_too(feed: DemoFeed) -> None:
    item = _with_reporter(feed, "shape-violation")
    cut = item.value[: item.value.index(b'"telefoon"') + 14]  # cut inside the phone number
    text = redact_text(cut.decode())
    for secret in item.reporter[:2]:
        assert secret not in text
    expanded = {"https://data.vlaanderen.be/ns/melding#melder": {"foaf:name": "An"}, "schema:email": "a@b.be", "titel": "x"}
    assert redact_json(expanded) == {
        "https://data.vlaanderen.be/ns/melding#melder": REDACTED,
        "schema:email": REDACTED,
        "titel": "x",
    }


def test_headers_are_scrubbed(feed: DemoFeed) -> None:
    item = feed.broken("not-json")
    item = FeedItem(item.key, item.value, item.headers + (("x-note", b"mail an@example.org"), ("email", b"an@x.be")), item.melding_id, item.kind)
    view = _dead(item, NotJson("x")).redacted()
    assert view.headers["x-note"] == f"mail {REDACTED}"
    assert view.headers["email"] == REDACTED
    assert view.headers[Header.ERROR_CLASS] == "not-json"


def test_a_1_mib_description_does_not_flood_the_screen_nor_stall_the_scrubber(feed: DemoFeed) -> None:
    item = feed.broken("too-large")
    started = time.monotonic()
    view = _dead(item, NotJson("x")).redacted()
    assert time.monotonic() - started < 5, "hub.logs.scrub alone backtracks for minutes on 1 MiB of 'AAAA'"
    assert len(view.payload) < 20_000
    assert "tekens)" in view.payload
    assert len(view.document["heeftBody"][0]["beschrijving"]) > 1024 * 1024, "the editor gets it whole"
    sample = "bel 0470/12.34.56 of an@example.org; " * 200 + "X" * 300 + " mail bo@example.be"
    assert scrub_text(sample) == scrub(sample)


# --- edits --------------------------------------------------------------------------------


def _fixed(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["titel"] = "Put in de rijweg"
    doc["heeftStatus"][0]["statusdatum"] = "2026-11-20T08:15:00+01:00"
    return doc


def test_an_edit_of_the_redacted_view_keeps_the_reporter(feed: DemoFeed, validator: ShaclValidator) -> None:
    item = _with_reporter(feed, "shape-violation")
    dl = _dead(item, ShapeViolation("x"))
    edited = _fixed(dl.redacted().document)
    assert contains_redacted(edited)
    check = check_edited(json.dumps(edited), dl, validator)
    assert check.ok, check
    assert check.melding_id == item.melding_id
    assert check.document["melder"] == json.loads(item.value)["melder"]
    assert not contains_redacted(check.document)


def test_an_edit_that_is_still_invalid_names_the_fields(feed: DemoFeed, validator: ShaclValidator) -> None:
    item = _with_reporter(feed, "shape-violation")
    dl = _dead(item, ShapeViolation("x"))
    doc = dl.redacted().document
    doc["titel"] = "Put"
    check = check_edited(doc, dl, validator)
    assert not check.ok
    assert check.error_class == "shape-violation"
    assert {v["field"] for v in check.violations} == {"statusdatum"}
    _assert_no_reporter(json.dumps(check.violations), item)
    assert not check_edited("{not json", dl, validator).ok
    assert check_edited("", dl, validator).error_class == "not-json"


def test_redacted_placeholders_without_an_original_are_refused(feed: DemoFeed, validator: ShaclValidator) -> None:
    item = feed.broken("not-json")  # no JSON original to restore from
    dl = _dead(item, NotJson("x"))
    doc = _fixed(json.loads(feed.valid().value))
    doc["melder"] = REDACTED
    check = check_edited(doc, dl, validator)
    assert not check.ok and REDACTED in (check.reason or "")
    assert restore_redacted({"a": REDACTED, "b": [REDACTED]}, {"a": 1, "b": [2]}) == {"a": 1, "b": [2]}
    assert restore_redacted(f"bel {REDACTED}", "bel 0470/12.34.56") == "bel 0470/12.34.56"
    assert restore_redacted(f"nieuw {REDACTED}", "bel 0470/12.34.56") == f"nieuw {REDACTED}"


# --- replay headers -----------------------------------------------------------------------


def test_replay_headers_keep_source_and_first_seen_and_say_where_from(feed: DemoFeed) -> None:
    item = feed.broken("shape-violation")
    dl = _dead(item, ShapeViolation("x"), offset=3, partition=2)
    headers = dict(replay_headers(dl, item.melding_id, "anna", "2026-11-24T10:00:00+00:00", edited=False))
    assert headers[Header.SOURCE] == dict(item.headers)[Header.SOURCE]
    assert headers[Header.FIRST_SEEN] == (T0 - timedelta(minutes=5)).isoformat().encode()
    assert headers[Header.REPLAYED_FROM] == f"{DEADLETTER}/2/3".encode()
    assert headers[Header.REPLAYED_BY] == b"anna"
    for gone in (Header.ERROR_CLASS, Header.ERROR_REASON, Header.ORIGINAL_TOPIC, Header.HUB_VERSION):
        assert gone not in headers
    # if it fails again, the hub's new dead letter keeps the first failure time and the replay origin
    again = dead_letter(Record(dl.value, dl.key, tuple(headers.items()), INBOUND, 0, 99), NotJson("x"), None)
    again_headers = dict(again.headers)
    assert again_headers[Header.FIRST_SEEN] == headers[Header.FIRST_SEEN]
    assert again_headers[Header.REPLAYED_FROM] == f"{DEADLETTER}/2/3".encode()


# --- state and filters --------------------------------------------------------------------


def test_state_is_the_latest_action_per_dead_letter() -> None:
    s = ActionState()
    assert s.state("0/1") is State.OPEN
    s.apply(b"0/1", Action("0/1", "discarded", "anna", "t1", reason="dubbel").to_value())
    assert s.state("0/1") is State.DISCARDED
    s.apply(b"0/1", Action("0/1", "replayed", "bert", "t2").to_value())
    assert s.state("0/1") is State.REPLAYED and s.get("0/1").by == "bert"
    s.apply(b"0/2", b"not json")  # ignored
    s.apply(None, b"{}")
    assert s.state("0/2") is State.OPEN
    s.apply(b"0/1", None)  # tombstone
    assert s.state("0/1") is State.OPEN


def test_filters(feed: DemoFeed) -> None:
    a = _dead(feed.broken("shape-violation"), ShapeViolation("x"), offset=1, when=T0)
    b = _dead(feed.broken("not-json"), NotJson("x"), offset=2, when=T0 + timedelta(hours=2))
    routed = feed.valid()
    c_out = delivery_dead_letter(
        Record(routed.value, routed.key, routed.headers, "meldingen.authority.kortrijk", 0, 5),
        "kortrijk",
        ShapeViolation("vendor said no"),
        attempts=3,
    )
    c = _dl(c_out, offset=3, when=T0 + timedelta(hours=4))
    entries = [Entry(a, State.OPEN), Entry(b, State.REPLAYED), Entry(c, State.OPEN)]

    def ids(**kw: object) -> list[str]:
        return [e.id for e in select(entries, DeadLetterFilter(**kw))]  # type: ignore[arg-type]

    assert ids() == ["0/1", "0/2", "0/3"]
    assert ids(error_classes=frozenset({"not-json"})) == ["0/2"]
    assert ids(states=frozenset({State.OPEN})) == ["0/1", "0/3"]
    assert ids(since=T0 + timedelta(hours=1)) == ["0/2", "0/3"]
    assert ids(until=T0 + timedelta(hours=1)) == ["0/1"]
    assert ids(melding_id=b.melding_id.upper()) == ["0/2"]
    assert ids(destination="kortrijk") == ["0/3"]
    assert ids(destination="kort*") == ["0/3"]
    assert ids(source=a.source) == ["0/1"] or a.source == c.source
    assert ids(source="meldingsapp-*") == ["0/1", "0/2", "0/3"]
    assert ids(ids=frozenset({"0/2"})) == ["0/2"]
    assert c.destination == "kortrijk" and c.stage == "validate"
    assert dict(c_out.headers)["delivery-attempts"] == b"3"
    assert "error-class=not-json" in DeadLetterFilter(error_classes=frozenset({"not-json"})).describe()


# --- delivery pause policy ----------------------------------------------------------------


def test_a_destination_that_keeps_failing_is_paused_then_probed() -> None:
    now = [1000.0]
    gate = DestinationGate("kortrijk", PausePolicy(failures_to_pause=3, pause_for=30, max_pause=100), clock=lambda: now[0])
    assert gate.record_failure(transient=True).verdict is Verdict.DEAD_LETTER
    assert gate.record_failure(transient=True).verdict is Verdict.DEAD_LETTER
    d = gate.record_failure(transient=True)
    assert d.verdict is Verdict.PAUSE and d.seconds == 30
    assert metrics.sample("meldhub_destination_paused", {"destination": "kortrijk"}) == 1
    assert not gate.allowed() and gate.paused
    now[0] += 31
    assert gate.allowed() and not gate.paused
    assert metrics.sample("meldhub_destination_paused", {"destination": "kortrijk"}) == 0
    # the probe fails too: the next pause is longer (capped)
    for _ in range(3):
        d = gate.record_failure(transient=True)
    assert d.verdict is Verdict.PAUSE and d.seconds == 60
    now[0] += 61
    assert gate.allowed()
    gate.record_success()
    assert gate.pauses_in_a_row == 0 and gate.failures_in_a_row == 0
    # a refused melding is that melding's problem, not the destination's
    assert gate.record_failure(transient=False).verdict is Verdict.DEAD_LETTER
    assert not gate.paused
    # wrong credentials fail every melding: pause at once
    assert gate.record_failure(transient=False, auth=True).verdict is Verdict.PAUSE


# --- metrics ------------------------------------------------------------------------------


def _decision(authority: str) -> RouteDecision:
    return RouteDecision(authority, "Stad", "https://x", f"meldingen.authority.{authority}", "34022", "Kortrijk", "r1", "v1")


def test_metrics_count_outcomes_per_stage_destination_and_error_class() -> None:
    out = Output("t", None, None, ())

    def s(name: str, **labels: str) -> float:
        return metrics.sample(name, labels)

    before = (
        s("meldhub_messages_total", outcome="routed", destination="kortrijk"),
        s("meldhub_dead_letters_total", error_class="shape-violation"),
        s("meldhub_stage_messages_total", stage="validate", result="failed"),
        s("meldhub_stage_messages_total", stage="decode", result="passed"),
        s("meldhub_stage_seconds_count", stage="pipeline"),
        s("meldhub_messages_total", outcome="routed", destination="other"),
    )
    metrics.record_outcome(Outcome(out, "id-1", _decision("kortrijk")), 0.004)
    metrics.record_outcome(Outcome(out, "id-2", error_class="shape-violation", reason="x"), 0.002)  # type: ignore[arg-type]
    metrics.record_outcome(Outcome(out, "id-3", _decision("Not An Id!")), None)
    metrics.record_batch(2, 0.05)
    after = (
        s("meldhub_messages_total", outcome="routed", destination="kortrijk"),
        s("meldhub_dead_letters_total", error_class="shape-violation"),
        s("meldhub_stage_messages_total", stage="validate", result="failed"),
        s("meldhub_stage_messages_total", stage="decode", result="passed"),
        s("meldhub_stage_seconds_count", stage="pipeline"),
        s("meldhub_messages_total", outcome="routed", destination="other"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 3, 2, 1]
    assert metrics.sample("meldhub_batch_size_count") >= 1
    with metrics.time_stage("produce"):
        pass
    assert metrics.sample("meldhub_stage_seconds_count", {"stage": "produce"}) >= 1


def test_metrics_are_served_and_carry_no_melding_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.PORT_ENV, raising=False)
    assert metrics.serve() is None, "not served unless a port is configured"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(metrics.PORT_ENV, str(port))
    metrics.record_outcome(Outcome(Output("t", None, None, ()), "3f6c2a1e-secret-id", _decision("imog")), 0.01)
    assert metrics.serve() == port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'meldhub_messages_total{destination="imog",outcome="routed"}' in text
    assert "meldhub_destination_paused" in text and "process_cpu_seconds_total" in text
    assert "3f6c2a1e" not in text
