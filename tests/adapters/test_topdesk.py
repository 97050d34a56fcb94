"""TOPdesk: translation (contract-checked), status mapping, and the worker against a stand-in
that enforces the TOPdesk request contract (no broker: the worker returns what it would produce).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from adapters import registry as adapter_registry
from adapters.base import RetryPolicy, UnknownVendorStatus, VendorMalformed
from adapters.topdesk import translate as t
from adapters.topdesk.client import TopdeskClient
from adapters.topdesk.config import Config
from adapters.topdesk.schema import INCIDENT, INCIDENT_CREATE
from adapters.topdesk.service import TopdeskWorker
from adapters.topdesk.store import Store
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.melding import Melding
from hub.pipeline import Record
from hub.registry import Registry
from hub.status import StatusChange, StatusHeader
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters import poll_check
from tests.adapters.topdesk_standin import EXAMPLE, TopdeskStandIn

KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=311)


def _config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "id": "topdesk-test",
        "authority": "kortrijk",
        "base_url": "https://kortrijk.topdesk.test",
        "username_env": "TOPDESK_USER",
        "password_env": "TOPDESK_PASSWORD",
        "retry": {"max_attempts": 3, "base_delay_s": 0, "max_delay_s": 0},
        "categories": {"wegdefect": {"category": {"name": "Openbaar domein"}, "subcategory": {"name": "Wegen"}}},
        "entry_type": {"name": "Meldingen Hub"},
    }
    return Config.model_validate({**base, **overrides})


def _routed(feed: DemoFeed, **kwargs: Any) -> Record:
    item = feed.valid(category="wegdefect", nis="34022", **kwargs)
    doc = json.loads(item.value)
    doc["behandelaar"] = KORTRIJK
    return Record(
        value=json.dumps(doc).encode(),
        key=item.key,
        headers=((Header.SOURCE, b"open311-zwvl"), (Header.MELDING_ID, item.key), (Header.AUTHORITY, b"kortrijk")),
        topic=authority_topic("kortrijk"),
        partition=1,
        offset=42,
    )


# -- translation and contract ----------------------------------------------------------------------
def test_incident_request_follows_the_contract(feed: DemoFeed) -> None:
    config = _config()
    validator = jsonschema.Draft202012Validator(INCIDENT_CREATE)
    for anonymous in (False, True):
        record = _routed(feed, anonymous=anonymous)
        melding = Melding.from_jsonld(json.loads(record.value))
        body = t.incident_request(melding, config)
        validator.validate(body)
        assert body["externalNumber"] == melding.melding_id
        assert body["subcategory"] == {"name": "Wegen"} and body["entryType"] == {"name": "Meldingen Hub"}
        assert melding.melding_id in body["request"] and "Coördinaten" in body["request"]
        if anonymous:
            assert body["caller"] == {"dynamicName": "Anonieme melder"}
        else:
            assert body["caller"]["dynamicName"] == json.loads(record.value)["melder"]["naam"]
    # hostile or long text stays inside the contract (escaped, truncated)
    doc = json.loads(_routed(feed).value)
    doc["titel"] = "Put " * 40
    doc["heeftBody"][0]["beschrijving"] = "<script>alert(1)</script>\nTweede regel <b>vet</b>"
    body = t.incident_request(Melding.from_jsonld(doc), config)
    validator.validate(body)
    assert len(body["briefDescription"]) == 80 and "&lt;script&gt;" in body["request"]


def test_topdesks_example_incident_reads_as_oslo_values() -> None:
    incident = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(INCIDENT).validate(incident)
    reading = t.reading_of(incident, _config())
    assert (reading.vendor_status, reading.status.notation, reading.status.label) == ("Logged", "557", "Toegewezen aan")
    assert reading.modified.isoformat() == "2021-02-11T06:32:36+00:00"
    assert reading.number == "TEST-1" and reading.external_number is None
    with pytest.raises(UnknownVendorStatus, match="'Logged'.*not in the tenant's map"):
        t.reading_of(incident, _config(processing_statuses={"Geregistreerd": "557"}, workflow=None, new_incident_status=None))
    with pytest.raises(VendorMalformed):
        t.reading_of({**incident, "id": None}, _config())
    with pytest.raises(VendorMalformed):
        t.reading_of({**incident, "modificationDate": "gisteren"}, _config())


def test_check_proves_the_shipped_tenant_and_names_each_gap() -> None:
    configured = adapter_registry.load()
    kortrijk = next(c for c in configured if c.vendor == "topdesk")
    assert kortrijk.config is not None and t.check(kortrijk.config) == []  # type: ignore[arg-type]
    assert adapter_registry.check(configured, Registry.load(None)) == {c.id: [] for c in configured} | {"(life cycle)": []}
    broken = _config(
        processing_statuses={"Logged": "557", "Completed": "133", "Closed": "956"},
        workflow={"Logged": ["Completed", "Parked"], "Completed": ["Logged", "Closed"], "Closed": []},
    )
    problems = "\n".join(t.check(broken))
    assert "'Parked' is not mapped" in problems
    assert "'Completed' → 'Logged' means 133 Opgelost → 557 Toegewezen aan, not a legal transition" in problems
    assert "'Logged' → 'Completed'" not in problems


# -- the worker -------------------------------------------------------------------------------------
class Harness:
    def __init__(self, tmp_path: Path, password: str = "app-password", **config: Any) -> None:
        self.standin = TopdeskStandIn()
        self.config = _config(**config)
        self.store = Store(tmp_path / "topdesk.sqlite3")
        self.client = TopdeskClient(self.config.base_url, "hub-operator", password, transport=self.standin.transport())
        self.worker = TopdeskWorker(self.config, self.client, self.store, KORTRIJK, "Stad Kortrijk")

    def restart(self) -> None:
        """A new adapter process on the same store (after a crash)."""
        self.worker = TopdeskWorker(self.config, self.client, self.store, KORTRIJK, "Stad Kortrijk")

    async def deliver(self, record: Record) -> list[Any]:
        emit = await self.worker.handle(record)
        emit.done()  # as if the broker acknowledged
        return emit.outputs

    async def poll(self) -> list[Any]:
        emit = await self.worker.poll_once()
        emit.done()
        return emit.outputs


async def test_a_melding_becomes_one_incident_and_toegewezen_aan(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    record = _routed(feed)
    mid = record.key.decode()
    (out,) = await h.deliver(record)
    assert out.topic == STATUS and out.key == record.key
    change = StatusChange.from_jsonld(json.loads(out.value))
    assert (change.melding_id, change.status.notation, change.door) == (mid, "557", KORTRIJK)
    assert "Stad Kortrijk" in change.beschrijving
    headers = dict(out.headers)
    assert headers[Header.SOURCE] == b"open311-zwvl" and headers[StatusHeader.PREVIOUS] == b"511"
    assert headers[StatusHeader.REPORTED_BY] == b"topdesk-test"
    # delivered again (at least once): found by externalNumber, nothing created or reported twice
    assert await h.deliver(record) == []
    assert h.standin.creates[mid] == 1 and h.standin.lookups[mid] == 2
    assert h.standin.rejections == []


async def test_a_lost_create_answer_or_transient_failures_never_make_a_second_incident(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    h.standin.lose_create_responses = 1
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert out.topic == STATUS
    assert h.standin.creates[record.key.decode()] == 1

    h.standin.faults = [503, "timeout"]
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert out.topic == STATUS and h.standin.creates[record.key.decode()] == 1


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        (400, "vendor-rejected"),
        ("malformed", "vendor-malformed"),
        ("exhausted", "vendor-unavailable"),
        ("auth", "vendor-auth"),
        ("not-json", "not-json"),
    ],
)
async def test_vendor_failures_are_dead_lettered_with_their_class(tmp_path: Path, feed: DemoFeed, fault: Any, error_class: str) -> None:
    h = Harness(tmp_path, password="wrong" if fault == "auth" else "app-password")
    record = _routed(feed)
    if fault == "exhausted":
        h.standin.faults = [503, 502, 504]
    elif fault == "not-json":
        record = Record(value=b"geen melding", key=b"x", topic=authority_topic("kortrijk"))
    elif fault != "auth":
        h.standin.faults = [fault]
    (out,) = await h.deliver(record)
    assert out.topic == DEADLETTER
    assert out.value == record.value, "the original record is kept untouched"
    headers = dict(out.headers)
    assert headers[Header.ERROR_CLASS] == error_class.encode()
    assert headers[Header.ORIGINAL_TOPIC] == authority_topic("kortrijk").encode()
    if fault == "exhausted":
        assert b"gave up after 3 attempts" in headers[Header.ERROR_REASON]
    assert not h.standin.incidents


async def test_status_changes_in_topdesk_reach_the_status_topic_once(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    record = _routed(feed)
    mid = record.key.decode()
    await h.deliver(record)
    assert await h.poll() == [], "Logged = Toegewezen aan, already reported"

    h.standin.set_status(mid, "In progress")
    (out,) = await h.poll()
    change = StatusChange.from_jsonld(json.loads(out.value))
    assert change.status.notation == "496" and dict(out.headers)[StatusHeader.PREVIOUS] == b"557"
    h.standin.set_status(mid, "Waiting for user")  # also In onderzoek: nothing new for the citizen
    assert await h.poll() == []

    h.standin.set_status(mid, "Completed", closure="Hersteld")
    (out,) = await h.poll()
    change = StatusChange.from_jsonld(json.loads(out.value))
    assert change.status.label == "Opgelost" and change.beschrijving == "Uw melding werd opgelost. (Hersteld)"
    assert dict(out.headers)[StatusHeader.PREVIOUS] == b"496" and dict(out.headers)[Header.SOURCE] == b"open311-zwvl"
    assert await h.poll() == [], "the overlap re-reads, but a change is reported once"

    # a change the life cycle forbids is kept as a dead letter; the citizen keeps the legal status
    h.standin.set_status(mid, "Logged")
    (out,) = await h.poll()
    assert out.topic == DEADLETTER and dict(out.headers)[Header.ERROR_CLASS] == b"illegal-transition"
    assert h.store.get(mid)["oslo_status"] == "133"

    # an unknown processing status: a dead letter, once
    h.standin.set_status(mid, "Geparkeerd")
    (out,) = await h.poll()
    assert dict(out.headers)[Header.ERROR_CLASS] == b"vendor-unknown-status"
    assert json.loads(out.value)["processingStatus"]["name"] == "Geparkeerd"
    assert await h.poll() == []

    h.standin.set_status(mid, "Closed")
    (out,) = await h.poll()
    assert StatusChange.from_jsonld(json.loads(out.value)).status.label == "Afgerond"
    assert dict(out.headers)[StatusHeader.PREVIOUS] == b"133"


async def test_a_poll_during_a_deliverys_unacknowledged_status_reports_nothing_twice(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    await poll_check.assert_poll_leaves_an_unacknowledged_delivery(h, _routed(feed), _in_progress(h))


async def test_a_delivery_whose_status_was_not_acknowledged_is_reported_when_delivered_again(
    tmp_path: Path, feed: DemoFeed
) -> None:
    """The broker did not acknowledge the delivery's Toegewezen aan: the record is read again; a
    poll meanwhile does not report it, the second delivery does, once."""
    h = Harness(tmp_path)
    record = _routed(feed)
    await h.worker.handle(record)  # produced, never acknowledged
    assert await h.poll() == []
    (out,) = await h.deliver(record)
    assert StatusChange.from_jsonld(json.loads(out.value)).status.notation == "557"
    assert await h.poll() == [] and await h.deliver(record) == []


async def test_a_change_left_for_the_next_poll_is_read_again_without_overlap(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path, poll_overlap_s=0)
    await poll_check.assert_a_held_change_is_read_again_without_overlap(
        h, _routed(feed), _routed(feed), _in_progress(h), lambda: h.standin.later(2)  # TOPdesk compares whole seconds
    )


async def test_a_crash_before_the_store_moved_makes_the_poll_repeat_the_deliverys_own_event(
    tmp_path: Path, feed: DemoFeed
) -> None:
    await poll_check.assert_a_stop_before_the_store_moved_repeats_the_same_event(Harness(tmp_path), _routed(feed))


def _in_progress(h: Harness) -> poll_check.MoveOn:
    return lambda melding_id: h.standin.set_status(melding_id, "In progress")  # type: ignore[func-returns-value]


def test_retry_policy_is_bounded() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=1, max_delay_s=30)
    assert all(policy.delay(n) <= 30 for n in range(1, 20))
    assert policy.delay(3, retry_after=120) == 30


# -- refusal: "not ours" in TOPdesk -----------------------------------------------------------------
def test_check_reports_refusal_statuses_that_cannot_work() -> None:
    bad = _config(refusal_statuses={"Rejected": None, "Overgedragen": "x"})
    problems = "\n".join(t.check(bad))
    assert "refusal status 'Rejected' maps to 475: a refusal is never reported as a status" in problems
    assert "refusal status 'Overgedragen' is not a status" in problems
    good = _config(processing_statuses={**t.status_mapping(_config()).to_oslo, "Niet bevoegd": None},
                   refusal_statuses={"Niet bevoegd": None})
    assert t.check(good) == []
    assert t.status_mapping(good).refusal_rows() == [("TOPdesk status 'Niet bevoegd'", "(default: names the status)")]


async def test_not_ours_in_topdesk_gives_the_melding_back_to_the_hub_once(tmp_path: Path, feed: DemoFeed) -> None:
    from tests.adapters.refusal_check import assert_one_refusal, owner_record

    h = Harness(tmp_path, processing_statuses={**t.status_mapping(_config()).to_oslo, "Niet bevoegd": None},
                refusal_statuses={"Niet bevoegd": "Gewestweg: bevoegdheid van AWV"})
    record = owner_record(_routed(feed), "kortrijk")
    mid = record.key.decode()  # type: ignore[union-attr]
    await h.deliver(record)
    h.standin.set_status(mid, "Niet bevoegd")
    outputs = await h.poll()
    refusal = assert_one_refusal(outputs, record, "kortrijk")
    assert refusal.reason == "Gewestweg: bevoegdheid van AWV"
    assert h.store.kept.handed_over(mid) and h.store.kept.get(mid) is None, "handed over; its bytes no longer kept"
    # handed over: no longer followed — a later change in TOPdesk reaches nobody, no second refusal
    h.standin.set_status(mid, "Completed")
    assert await h.poll() == []
    h.standin.set_status(mid, "Niet bevoegd")
    assert await h.poll() == []
    assert h.store.get(mid)["oslo_status"] == "557"  # type: ignore[index]


async def test_a_refusal_not_acknowledged_is_produced_again_and_a_lost_record_is_a_dead_letter(tmp_path: Path, feed: DemoFeed) -> None:
    from tests.adapters.refusal_check import owner_record

    h = Harness(tmp_path, processing_statuses={**t.status_mapping(_config()).to_oslo, "Niet bevoegd": None},
                refusal_statuses={"Niet bevoegd": None})
    record = owner_record(_routed(feed), "kortrijk")
    mid = record.key.decode()  # type: ignore[union-attr]
    await h.deliver(record)
    h.standin.set_status(mid, "Niet bevoegd")
    emit = await h.worker.poll_once()  # the broker never acknowledged it: nothing is marked
    assert [o.topic for o in emit.outputs] == ["meldingen.refusals"]
    (again,) = await h.poll()
    assert again.topic == "meldingen.refusals" and b"Stad Kortrijk is niet bevoegd" in dict(again.headers)["refusal-reason"]

    # a melding filed before records were kept: the refusal cannot be built exactly → a dead letter for an admin
    other = owner_record(_routed(feed), "kortrijk")
    oid = other.key.decode()  # type: ignore[union-attr]
    await h.deliver(other)
    h.store.db.execute("DELETE FROM kept_records WHERE melding_id = ?", (oid,))
    h.standin.set_status(oid, "Niet bevoegd")
    (out,) = await h.poll()
    assert out.topic == DEADLETTER and dict(out.headers)[Header.ERROR_CLASS] == b"not-a-refusal"
