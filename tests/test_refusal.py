"""Refusal and re-routing without a broker: "not ours" → next candidate → triage, history kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub import privacy
from hub.demo import DemoFeed
from hub.errors import ErrorClass, NotARefusal
from hub.geo import MunicipalityIndex
from hub.pipeline import Outcome, Pipeline, Record
from hub.refusal import TRIAGE_AGENT, parse_history, read_refusal, refusal_output
from hub.registry import Registry
from hub.routing import Router
from hub.status import TOEGEWEZEN, StatusChange
from hub.topics import DEADLETTER, INBOUND, KEYS, REFUSALS, STATUS, TRIAGE, Header, authority_topic
from hub.validation import make_validator

REGISTRY = Path(__file__).parent / "data" / "registry-no-layers.yaml"
WHEN = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(REGISTRY)


@pytest.fixture(scope="module")
def router(registry: Registry) -> Router:
    return Router(registry, MunicipalityIndex.load())


@pytest.fixture(scope="module")
def feed(registry: Registry) -> DemoFeed:
    return DemoFeed(registry, MunicipalityIndex.load(), seed=2)


@pytest.fixture(scope="module")
def pipeline(router: Router) -> Pipeline:
    return Pipeline(make_validator("compiled"), router)


def _inbound(item) -> Record:
    return Record(item.value, item.key, tuple(item.headers), INBOUND, 0, 7)


def _refused(out: Outcome, by: str, reason: str = "niet onze bevoegdheid", at: datetime = WHEN, **kw) -> Record:
    """What an owner's adapter produces: the melding as it received it, plus who/why/when."""
    topic, key, value, headers = refusal_output(out.output.value, out.output.headers, by, reason, refused_at=at, **kw)
    assert topic == REFUSALS
    return Record(value, key, headers, REFUSALS, 1, 12)


def _h(out: Outcome) -> dict[str, str]:
    return {k: v.decode() for k, v in out.output.headers}


def test_an_owner_that_refuses_passes_the_melding_to_the_next_matching_rule(pipeline, feed, registry) -> None:
    item = feed.valid(category="zwerfvuil", nis="34022")  # Kortrijk is an Imog member: waste-imog first
    first = pipeline.process(_inbound(item))
    assert first.output.topic == authority_topic("imog")

    second = pipeline.process(_refused(first, "imog", "Sluikstort op privéterrein: bevoegdheid van de stad"))
    assert not second.dead_lettered, second.reason
    assert second.output.topic == authority_topic("kortrijk")
    assert second.decision is not None and second.decision.rule_id == "default-municipality"
    doc = json.loads(second.output.value)
    kortrijk = next(a for a in registry.authorities if a.id == "kortrijk")
    assert doc["behandelaar"] == kortrijk.identifier
    h = _h(second)
    assert h[Header.AUTHORITY] == "kortrijk" and h[Header.RULE_ID] == "default-municipality"
    assert h[Header.SOURCE] == dict(item.headers)[Header.SOURCE].decode()
    (hop,) = parse_history(h[Header.ROUTE_HISTORY])
    assert (hop.authority, hop.rule, hop.ruleset_version) == ("imog", "waste-imog", registry.version)
    assert hop.reason.startswith("Sluikstort op privéterrein") and hop.refused_at == WHEN.isoformat(timespec="milliseconds")
    # the refusal headers themselves do not travel on to the next owner (only the history)
    assert Header.REFUSED_BY not in h and Header.REFUSAL_REASON not in h

    # the citizen's channel is told who has it now, in the same transaction (an extra output)
    (status_out,) = [o for o in second.extra if o.topic == STATUS]
    change = StatusChange.from_jsonld(json.loads(status_out.value))
    assert change.status.notation == TOEGEWEZEN and change.melding_id == item.melding_id
    assert change.door == kortrijk.identifier and "Stad Kortrijk" in change.beschrijving
    assert "privéterrein" not in change.beschrijving, "the owner's free text is not for the citizen"
    assert change.statusdatum >= WHEN, "dated at the hand-over, never before the refusal"
    assert dict(status_out.headers)[Header.SOURCE] == dict(item.headers)[Header.SOURCE]


def test_when_every_candidate_refused_the_melding_goes_to_triage_with_its_history(pipeline, feed) -> None:
    item = feed.valid(category="zwerfvuil", nis="34022")
    first = pipeline.process(_inbound(item))
    second = pipeline.process(_refused(first, "imog"))
    third = pipeline.process(_refused(second, "kortrijk", "Ligt op het domein van de NMBS", WHEN.replace(hour=11)))
    assert third.triaged and not third.dead_lettered
    assert third.output.topic == TRIAGE
    h = _h(third)
    assert [x.authority for x in parse_history(h[Header.ROUTE_HISTORY])] == ["imog", "kortrijk"]
    assert "geen andere kandidaat" in h[Header.TRIAGE_REASON]
    assert Header.AUTHORITY not in h
    assert "behandelaar" not in json.loads(third.output.value)
    (status_out,) = [o for o in third.extra if o.topic == STATUS]
    change = StatusChange.from_jsonld(json.loads(status_out.value))
    assert change.door == TRIAGE_AGENT and "triagedienst" in change.beschrijving


def test_at_most_max_hops_refusals_then_triage(router, feed) -> None:
    pipeline = Pipeline(make_validator("compiled"), router, max_route_hops=1)
    first = pipeline.process(_inbound(feed.valid(category="zwerfvuil", nis="34022")))
    second = pipeline.process(_refused(first, "imog"))
    assert second.triaged, "one hop allowed: after the first refusal the region's triage team decides"
    assert "maximum 1" in _h(second)[Header.TRIAGE_REASON]


def test_a_single_candidate_owner_that_refuses_sends_the_melding_to_triage(pipeline, feed) -> None:
    first = pipeline.process(_inbound(feed.valid(category="riolering-wateroverlast", nis="34042")))
    assert first.output.topic == authority_topic("zwevegem")
    assert pipeline.process(_refused(first, "zwevegem")).triaged


@pytest.mark.parametrize(
    ("by", "drop", "reason"),
    [
        ("kortrijk", None, "routed this melding to imog"),  # not the owner
        ("", None, "who refused"),
        ("imog", Header.AUTHORITY, "headers it was received with"),
    ],
)
def test_a_refusal_that_does_not_add_up_is_dead_lettered_with_its_headers(pipeline, feed, by, drop, reason) -> None:
    first = pipeline.process(_inbound(feed.valid(category="zwerfvuil", nis="34022")))
    headers = [(k, v) for k, v in first.output.headers if k != drop]
    headers += [(Header.REFUSED_BY, by.encode()), (Header.REFUSAL_REASON, b"niet van ons")]
    out = pipeline.process(Record(first.output.value, first.output.key, tuple(headers), REFUSALS, 0, 3))
    assert out.dead_lettered and out.error_class == ErrorClass.NOT_A_REFUSAL
    assert reason in (out.reason or "")
    dl = dict(out.output.headers)
    assert out.output.topic == DEADLETTER and out.output.value == first.output.value
    assert dl[Header.ORIGINAL_TOPIC] == REFUSALS.encode()
    assert dl[Header.REFUSAL_REASON] == b"niet van ons", "an admin sees what the refusal said"


def test_a_channel_cannot_inject_a_route_history(pipeline, feed) -> None:
    item = feed.valid(category="zwerfvuil", nis="34022")
    forged = (*item.headers, (Header.ROUTE_HISTORY, b'[{"authority":"imog"}]'), (Header.REFUSED_BY, b"imog"))
    out = pipeline.process(Record(item.value, item.key, forged, INBOUND, 0, 1))
    assert out.output.topic == authority_topic("imog")
    assert Header.ROUTE_HISTORY not in _h(out) and Header.REFUSED_BY not in _h(out)


def test_refusal_output_and_read_refusal_agree() -> None:
    topic, key, value, headers = refusal_output(
        b"{}", [(Header.MELDING_ID, b"m-1"), (Header.AUTHORITY, b"awv"), (Header.RULE_ID, b"regional-road-awv")],
        "awv", "  gemeenteweg,\n geen gewestweg ", refused_at=WHEN,
    )
    assert (topic, key, value) == (REFUSALS, b"m-1", b"{}")
    rfs = read_refusal(headers)
    assert rfs.refused_by == "awv" and rfs.reason == "gemeenteweg, geen gewestweg" and rfs.refused == {"awv"}
    assert rfs.history[-1].rule == "regional-road-awv"
    with pytest.raises(ValueError):
        refusal_output(b"{}", [], "Not An Id", "x")
    with pytest.raises(NotARefusal, match="time zone"):
        read_refusal([*headers[:-1], (Header.REFUSED_AT, b"2026-12-02T10:00:00")])


def test_explain_shows_the_refused_owner_passed_over(router, feed) -> None:
    from hub.melding import Melding

    item = feed.valid(category="zwerfvuil", nis="34022")
    m = Melding.from_jsonld(json.loads(item.value))
    ex = router.explain(m.category_iris, m.points(), exclude=frozenset({"imog"}))
    assert ex.decision is not None and ex.decision.authority_id == "kortrijk"
    imog = next(t for t in ex.rules if t.rule_id == "waste-imog")
    assert not imog.matched and "imog refused" in imog.reason


def test_encrypted_contact_details_are_re_encrypted_for_the_next_owner_only(router, feed) -> None:
    imog_priv, imog_pub = privacy.generate_keypair()
    kortrijk_priv, kortrijk_pub = privacy.generate_keypair()
    keyring = privacy.KeyRing(
        b"h" * 32,
        {
            "imog": privacy.RecipientKey("authority:imog", public=imog_pub),
            "kortrijk": privacy.RecipientKey("authority:kortrijk", public=kortrijk_pub),
        },
    )
    pipeline = Pipeline(make_validator("compiled"), router, keyring=keyring)
    item = feed.valid(category="zwerfvuil", nis="34022", anonymous=False)
    original_melder = json.loads(item.value)["melder"]
    first = pipeline.process(_inbound(item))
    assert privacy.is_protected(json.loads(first.output.value))
    (key1,) = [o for o in first.extra if o.topic == KEYS]
    record1 = json.loads(key1.value)

    # without a key record (erased after routing) it goes on, without the contact details
    erased = pipeline.process(_refused(first, "imog"))
    assert erased.output.topic == authority_topic("kortrijk") and "melder" not in json.loads(erased.output.value)
    assert not [o for o in erased.extra if o.topic == KEYS], "nothing left to protect: no key record"

    second = pipeline.process(_refused(first, "imog", key_record=record1))
    assert second.output.topic == authority_topic("kortrijk"), second.reason
    doc = json.loads(second.output.value)
    assert privacy.is_protected(doc)
    (key2,) = [o for o in second.extra if o.topic == KEYS]
    record2 = json.loads(key2.value)
    kortrijk = privacy.Identity.authority("kortrijk", kortrijk_priv)
    imog = privacy.Identity.authority("imog", imog_priv)
    data_key = privacy.unwrap(record2, kortrijk, item.melding_id)
    assert privacy.reveal(doc, {item.melding_id: data_key})["melder"] == original_melder
    assert privacy.unwrap(record2, imog, item.melding_id) is None, "the refusing owner loses access"
    assert Header.MELDING_KEY not in _h(second)
