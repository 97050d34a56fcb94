"""Signalen: translation (contract-checked against Signalen's published files), status mapping and
its check, and the worker against a stand-in that enforces the request contract (no broker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters import registry as adapter_registry
from adapters.base import UnknownVendorStatus, VendorMalformed, VendorRejected
from adapters.signalen import translate as t
from adapters.signalen.client import SignalenClient
from adapters.signalen.config import DEFAULT_STATES, Config
from adapters.signalen.service import SignalenWorker
from adapters.signalen.store import Store
from hub.categories import categories, by_slug
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.melding import Melding
from hub.pipeline import Record
from hub.registry import Registry
from hub.status import StatusChange, StatusHeader
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters import poll_check
from tests.adapters.signalen_standin import (
    SignalenStandIn,
    category_tree,
    example_signal,
    openapi,
    validate_create,
    validate_signal,
)

MENEN = "https://w3id.org/meldingen-hub/id/organisatie/menen"
TOKEN = "signalen-test-token"


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=4)


def _config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "id": "signalen-test",
        "authority": "menen",
        "base_url": "https://signalen.menen.test",
        "token_env": "SIGNALEN_TOKEN",
        "retry": {"max_attempts": 3, "base_delay_s": 0, "max_delay_s": 0},
    }
    return Config.model_validate({**base, **overrides})


def _routed(feed: DemoFeed, category: str = "wegdefect", **kwargs: Any) -> Record:
    item = feed.valid(category=category, nis="34027", **kwargs)
    doc = json.loads(item.value)
    doc["behandelaar"] = MENEN
    return Record(
        value=json.dumps(doc).encode(), key=item.key,
        headers=((Header.SOURCE, b"open311-zwvl"), (Header.MELDING_ID, item.key), (Header.AUTHORITY, b"menen")),
        topic=authority_topic("menen"), partition=0, offset=7,
    )


def _melding(record: Record) -> Melding:
    return Melding.from_jsonld(json.loads(record.value or b""))


# -- translation and contract ----------------------------------------------------------------------
def test_signal_request_follows_signalens_published_contract(feed: DemoFeed) -> None:
    config = _config()
    now = __import__("datetime").datetime.now(__import__("datetime").UTC)
    for anonymous in (False, True):
        record = _routed(feed, anonymous=anonymous)
        melding = _melding(record)
        body = t.signal_request(melding, config, now)
        validate_create(body)
        assert body["category"]["sub_category"] == (
            "/signals/v1/public/terms/categories/wegen-verkeer-straatmeubilair/sub_categories/onderhoud-stoep-straat-en-fietspad"
        )
        (item,) = body["extra_properties"]
        assert item == {"id": "meldingen_hub_melding_id", "label": "Melding-id (Meldingen Hub)",
                        "answer": melding.melding_id, "category_url": body["category"]["sub_category"]}
        assert body["text_extra"].splitlines()[0] == f"Melding-id (Meldingen Hub): {melding.melding_id}"
        assert body["source"] == "Meldingen Hub" and body["type"] == {"code": "SIG"}
        lon, lat = melding.points()[0]
        assert body["location"]["geometrie"] == {"type": "Point", "coordinates": [round(lon, 8), round(lat, 8)]}
        doc = json.loads(record.value or b"")
        if anonymous:
            assert body["reporter"] == {"sharing_allowed": False}
        else:
            assert body["reporter"]["email"] == doc["melder"]["contactpunt"]["email"]
        assert t.reference_of(body, config) == melding.melding_id
    # tenant override, the default for a category without a match, hostile/long text
    doc = json.loads(_routed(feed).value or b"")
    doc["titel"] = "Put " * 1000
    doc["heeftTarget"] = [{"@type": "Adresvoorstelling", "straatnaam": "Rijselstraat", "huisnummer": "12b",
                           "postcode": "8930", "gemeentenaam": "Menen"}]
    body = t.signal_request(Melding.from_jsonld(doc), _config(categories={"wegdefect": "wegen-verkeer-straatmeubilair/wegdek"}), now)
    validate_create(body)
    assert len(body["text"]) == t.TEXT_MAX and body["category"]["sub_category"].endswith("/wegen-verkeer-straatmeubilair/sub_categories/wegdek")
    assert body["location"]["address"] == {"openbare_ruimte": "Rijselstraat", "huisnummer": 12, "huisletter": "B",
                                           "postcode": "8930", "woonplaats": "Menen"}
    vraag = _melding(_routed(feed, category="vraag-burgerzaken"))
    assert t.signal_request(vraag, _config(), now)["category"]["sub_category"].endswith("/overig/sub_categories/overig")
    with pytest.raises(VendorRejected, match="no Signalen category"):
        t.signal_request(vraag, _config(default_category=None), now)


def test_the_category_map_points_into_signalens_category_tree() -> None:
    tree = category_tree()
    config = _config()
    for c in categories():
        main, sub = t.signalen_category(c, config)  # type: ignore[misc]
        assert (main, sub) in tree, f"{c.slug} → {main}/{sub} is not a Signalen sub-category"
    assert t.signalen_category(by_slug("zwerfvuil"), config) == ("afval", "veeg-zwerfvuil")


def test_signalens_published_examples_read_as_oslo_values() -> None:
    config = _config()
    states = openapi()["components"]["schemas"]["StatusStateChoices"]["enum"]
    assert set(states) == set(DEFAULT_STATES), "every state Signalen publishes is mapped (null = no change)"
    expected = {"m": "557", "i": "557", "b": "496", "ingepland": "496", "o": "133", "a": "250", "reopened": "647", "s": "956"}
    for state in states:
        reading = t.reading_of(example_signal(state), config)
        assert reading.signal_id == 123 and reading.display == "SIG-123"
        assert reading.changed.isoformat() == "2020-01-01T00:00:00+00:00"
        notation = reading.status.notation if reading.status else None
        assert notation == DEFAULT_STATES[state]
        if state in expected:
            assert notation == expected[state]
    with pytest.raises(UnknownVendorStatus, match="'geparkeerd'.*not in the tenant's map"):
        t.reading_of(example_signal("geparkeerd"), config)
    with pytest.raises(VendorMalformed):
        t.reading_of({**example_signal(), "id": "123"}, config)
    with pytest.raises(VendorMalformed):
        t.reading_of({**example_signal(), "status": {"state": "m", "created_at": "gisteren"}}, config)


def test_check_proves_the_shipped_example_and_names_each_gap() -> None:
    configured = adapter_registry.load()
    shipped = [c for c in configured if c.vendor == "signalen"]
    assert shipped and all(c.config is not None and t.check(c.config) == [] for c in shipped)  # type: ignore[arg-type]
    # Signalen's own workflow holds a → b (Geannuleerd → In behandeling): bridged through 647
    assert ("a", "b") in t.bridged_edges(_config())
    problems = "\n".join(t.check(_config(reopen_via_heringediend=False)))
    assert "'a' → 'b' means 250 Gesloten → 496 In onderzoek, not a legal transition" in problems
    broken = "\n".join(t.check(_config(states={**DEFAULT_STATES, "o": "511"}, default_category=None,
                                       categories={}, workflow={"m": ["o", "x"]})))
    assert "'x' is not mapped" in broken
    assert "'m' → 'o' means 557 Toegewezen aan → 511 Ingediend" in broken
    assert "hub category 'vraag-burgerzaken' has no Signalen category" in broken


# -- the worker -------------------------------------------------------------------------------------
class Harness:
    def __init__(self, tmp_path: Path, token: str = TOKEN, page_size: int = 100, **config: Any) -> None:
        self.standin = SignalenStandIn(TOKEN, page_size=page_size)
        self.config = _config(**config)
        self.store = Store(tmp_path / "signalen.sqlite3")
        self.client = SignalenClient(self.config.base_url, token, transport=self.standin.transport())
        self.worker = SignalenWorker(self.config, self.client, self.store, MENEN, "Stad Menen")

    def restart(self) -> None:
        """A new adapter process on the same store (after a crash)."""
        self.worker = SignalenWorker(self.config, self.client, self.store, MENEN, "Stad Menen")

    async def deliver(self, record: Record) -> list[Any]:
        emit = await self.worker.handle(record)
        emit.done()
        return emit.outputs

    async def poll(self) -> list[Any]:
        emit = await self.worker.poll_once()
        emit.done()
        return emit.outputs


def _change(out: Any) -> StatusChange:
    return StatusChange.from_jsonld(json.loads(out.value))


async def test_a_melding_becomes_one_signal_and_toegewezen_aan(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    record = _routed(feed)
    mid = record.key.decode()  # type: ignore[union-attr]
    (out,) = await h.deliver(record)
    assert out.topic == STATUS and out.key == record.key
    change = _change(out)
    assert (change.melding_id, change.status.notation, change.door) == (mid, "557", MENEN)
    assert "Stad Menen" in change.beschrijving and "SIG-1" in change.beschrijving
    headers = dict(out.headers)
    assert headers[Header.SOURCE] == b"open311-zwvl" and headers[StatusHeader.PREVIOUS] == b"511"
    assert headers[StatusHeader.REPORTED_BY] == b"signalen-test"
    (signal,) = h.standin.by_reference(mid)
    validate_signal(signal)
    # delivered again (at least once): the linked signal is re-read; nothing created or reported twice
    assert await h.deliver(record) == []
    assert h.standin.creates[mid] == 1 and h.standin.reads[signal["id"]] == 1
    assert h.standin.rejections == []


async def test_a_lost_create_answer_or_transient_failures_never_make_a_second_signal(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path, page_size=2)
    for _ in range(3):  # other signals of the hub, so the look-up has to page
        await h.deliver(_routed(feed))
    h.standin.lose_create_responses = 1
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert out.topic == STATUS and h.standin.creates[record.key.decode()] == 1  # type: ignore[union-attr]
    assert any("page=2" in url for _, url in h.standin.requests), "the look-up followed the next links"

    h.standin.faults = [503, "timeout"]
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert out.topic == STATUS and h.standin.creates[record.key.decode()] == 1  # type: ignore[union-attr]
    assert h.standin.rejections == []

    # a state file lost while the create's outcome was unknown: the look-up still finds the signal
    fresh = Harness(tmp_path / "fresh")
    fresh.standin = h.standin
    fresh.worker.client = SignalenClient(fresh.config.base_url, TOKEN, transport=h.standin.transport())
    (out,) = await fresh.deliver(record)
    assert _change(out).status.notation == "557" and h.standin.creates[record.key.decode()] == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        (400, "vendor-rejected"),
        ("malformed", "vendor-malformed"),
        ("exhausted", "vendor-unavailable"),
        ("timeouts", "vendor-timeout"),
        ("auth", "vendor-auth"),
        ("unknown-source", "vendor-rejected"),
        ("not-json", "not-json"),
    ],
)
async def test_vendor_failures_are_dead_lettered_with_their_class(tmp_path: Path, feed: DemoFeed, fault: Any, error_class: str) -> None:
    h = Harness(tmp_path, token="expired" if fault == "auth" else TOKEN,
                **({"source": "Onbekend"} if fault == "unknown-source" else {}))
    record = _routed(feed)
    if fault == "exhausted":
        h.standin.faults = [503, 502, 504]
    elif fault == "timeouts":
        h.standin.faults = ["timeout"] * 3
    elif fault == "not-json":
        record = Record(value=b"geen melding", key=b"x", topic=authority_topic("menen"))
    elif fault == 400:
        h.standin.faults = [None, 400]  # type: ignore[list-item]  # the look-up passes, the create is refused
    elif fault == "malformed":
        h.standin.faults = [fault]
    (out,) = await h.deliver(record)
    assert out.topic == DEADLETTER
    assert out.value == record.value, "the original record is kept untouched"
    headers = dict(out.headers)
    assert headers[Header.ERROR_CLASS] == error_class.encode()
    assert headers[Header.ORIGINAL_TOPIC] == authority_topic("menen").encode()
    if fault in ("exhausted", "timeouts"):
        assert b"gave up after 3 attempts" in headers[Header.ERROR_REASON]
    assert not h.standin.signals
    assert TOKEN.encode() not in b"".join(v for _, v in out.headers)


async def test_signalen_state_changes_reach_the_status_topic_once(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    record = _routed(feed)
    mid = record.key.decode()  # type: ignore[union-attr]
    await h.deliver(record)
    assert await h.poll() == [], "m = Toegewezen aan, already reported"

    h.standin.set_state(mid, "b")
    (out,) = await h.poll()
    assert _change(out).status.notation == "496" and dict(out.headers)[StatusHeader.PREVIOUS] == b"557"
    h.standin.set_state(mid, "h")  # On hold: also In onderzoek, nothing new for the citizen
    assert await h.poll() == []
    h.standin.set_state(mid, "ready to send")  # plumbing: no change
    assert await h.poll() == []

    h.standin.set_state(mid, "o", text="De put werd hersteld door de wegendienst.", send_email=True)
    (out,) = await h.poll()
    change = _change(out)
    assert change.status.label == "Opgelost" and change.beschrijving == "De put werd hersteld door de wegendienst."
    assert dict(out.headers)[StatusHeader.PREVIOUS] == b"496" and dict(out.headers)[Header.SOURCE] == b"open311-zwvl"
    assert await h.poll() == [], "the overlap re-reads, but a change is reported once"

    # the reporter asks to reopen (no change), the operator cancels: 133 → 250 is bridged through 647
    h.standin.set_state(mid, "reopen requested")
    assert await h.poll() == []
    h.standin.set_state(mid, "a", text="intern: dubbel", send_email=False)
    first, second = await h.poll()
    assert [_change(first).status.notation, _change(second).status.notation] == ["647", "250"]
    assert [dict(o.headers)[StatusHeader.PREVIOUS] for o in (first, second)] == [b"133", b"647"]
    assert _change(second).beschrijving == "Uw melding kon niet behandeld worden en werd gesloten.", "internal text stays internal"
    assert _change(first).statusdatum < _change(second).statusdatum

    # an unknown state: a dead letter, once, without the reporter's data
    h.standin.set_state(mid, "geparkeerd")
    (out,) = await h.poll()
    assert out.topic == DEADLETTER and dict(out.headers)[Header.ERROR_CLASS] == b"vendor-unknown-status"
    assert json.loads(out.value)["status"]["state"] == "geparkeerd" and "reporter" not in json.loads(out.value)
    assert await h.poll() == []

    # Signalen's a → b (Geannuleerd → In behandeling)
    h.standin.set_state(mid, "b")
    first, second = await h.poll()
    assert [_change(o).status.notation for o in (first, second)] == ["647", "496"]
    assert h.store.get(mid)["oslo_status"] == "496"  # type: ignore[index]


async def test_a_poll_during_a_deliverys_unacknowledged_status_reports_nothing_twice(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    await poll_check.assert_poll_leaves_an_unacknowledged_delivery(h, _routed(feed), _in_behandeling(h))


async def test_a_change_left_for_the_next_poll_is_read_again_without_overlap(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path, poll_overlap_s=0)
    await poll_check.assert_a_held_change_is_read_again_without_overlap(h, _routed(feed), _routed(feed), _in_behandeling(h))


async def test_a_crash_before_the_store_moved_makes_the_poll_repeat_the_deliverys_own_event(
    tmp_path: Path, feed: DemoFeed
) -> None:
    await poll_check.assert_a_stop_before_the_store_moved_repeats_the_same_event(Harness(tmp_path), _routed(feed))


async def test_a_signal_taken_up_before_the_record_is_read_again_is_reported_after_toegewezen_aan(
    tmp_path: Path, feed: DemoFeed
) -> None:
    """The delivery's Toegewezen aan was not acknowledged (broker trouble), and the civil servant
    took the signal up before the record was read again: the second delivery finds the signal and
    reports Toegewezen aan, and the poll then reports In behandeling (it is not taken as seen)."""
    h = Harness(tmp_path)
    record = _routed(feed)
    await h.worker.handle(record)  # produced, never acknowledged
    h.standin.set_state(record.key.decode(), "b")  # type: ignore[union-attr]
    (out,) = await h.deliver(record)
    assert _change(out).status.notation == "557"
    (out,) = await h.poll()
    assert _change(out).status.notation == "496" and dict(out.headers)[StatusHeader.PREVIOUS] == b"557"
    assert await h.poll() == []


def _in_behandeling(h: Harness) -> poll_check.MoveOn:
    return lambda melding_id: h.standin.set_state(melding_id, "b")  # type: ignore[func-returns-value]


async def test_a_change_the_life_cycle_forbids_is_a_dead_letter(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path, reopen_via_heringediend=False)
    record = _routed(feed)
    mid = record.key.decode()  # type: ignore[union-attr]
    await h.deliver(record)
    h.standin.set_state(mid, "a")
    (out,) = await h.poll()
    assert _change(out).status.notation == "250"
    h.standin.set_state(mid, "b")
    (out,) = await h.poll()
    assert out.topic == DEADLETTER and dict(out.headers)[Header.ERROR_CLASS] == b"illegal-transition"
    assert dict(out.headers)[Header.ORIGINAL_TOPIC] == b"signalen-poll:signalen-test"
    assert h.store.get(mid)["oslo_status"] == "250"  # type: ignore[index]
    assert await h.poll() == []


# -- refusal: "not ours" in Signalen ----------------------------------------------------------------
async def test_a_tenants_hand_over_state_gives_the_melding_back_to_the_hub(tmp_path: Path, feed: DemoFeed) -> None:
    from adapters.signalen.config import DEFAULT_STATES
    from tests.adapters.refusal_check import assert_one_refusal, owner_record

    assert "forward to external" not in _config().refusal_states, "Signalen has no 'not ours' state by default"
    problems = "\n".join(t.check(_config(refusal_states={"forward to external": None})))
    assert "'forward to external' maps to 496: a refusal is never reported as a status" in problems

    h = Harness(tmp_path, states={**DEFAULT_STATES, "forward to external": None},
                refusal_states={"forward to external": None})
    assert t.check(h.config) == []
    record = owner_record(_routed(feed), "menen")
    mid = record.key.decode()  # type: ignore[union-attr]
    await h.deliver(record)
    h.standin.set_state(mid, "b")
    (out,) = await h.poll()
    assert _change(out).status.notation == "496"
    h.standin.set_state(mid, "forward to external", text="Doorgezet naar Fluvius, tel 0470 12 34 56", send_email=True)
    refusal = assert_one_refusal(await h.poll(), record, "menen")
    assert refusal.reason == "Stad Menen is niet bevoegd (status 'Doorgezet naar extern' in haar systeem)"
    assert "0470" not in refusal.reason, "the operator's free text never travels with the refusal"
    h.standin.set_state(mid, "o")
    assert await h.poll() == [], "handed over: no longer followed"
