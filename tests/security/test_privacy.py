"""hub.privacy in isolation: protect/reveal, key wrapping, erasure semantics, retention configs."""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path

import pytest

from hub import privacy
from hub.privacy import (
    KEYS,
    Erased,
    Identity,
    KeyRing,
    KeyTable,
    PrivacyConfigError,
    PrivacyError,
    key_output,
    protect,
    reveal,
)
from tests.security.conftest import Keys, assert_no_personal_data


def _melding(feed, **kwargs):
    doc, reporter, _ = feed.melding(anonymous=False, **kwargs)
    return doc, reporter, doc["identificator"]["notatie"]


def _table(identity: Identity, *outputs: tuple[str, dict | None]) -> KeyTable:
    """A key table fed (melding id, key record or None for a tombstone) in log order."""
    table = KeyTable(identity)
    for melding_id, record in outputs:
        _, key, value, _ = key_output(melding_id, record)
        table.apply(key, value)
    return table


def test_protect_encrypts_the_melder_and_the_owner_reveals_it(feed, keys: Keys) -> None:
    doc, reporter, mid = _melding(feed)
    original = copy.deepcopy(doc)
    protected = protect(doc, mid, "kortrijk", keys.ring)

    assert doc == original, "protect must not change its input"
    published = protected["melding"]
    assert set(published["melder"]) == {"@type", "versleuteld"}
    assert published["melder"]["versleuteld"].startswith("mh1.")
    assert {k: v for k, v in published.items() if k != "melder"} == {k: v for k, v in doc.items() if k != "melder"}
    assert protected["recipients"] == ["hub", "authority:kortrijk"]
    text = json.dumps(published, ensure_ascii=False) + json.dumps(protected["key"])
    assert reporter[0] not in text and reporter[1] not in text and reporter[2] not in text
    assert doc["melder"]["@id"] not in text  # the person's identifier is personal data too

    for identity in (keys.kortrijk, keys.hub_identity):
        table = _table(identity, (mid, protected["key"]))
        assert table.state(mid) == "available"
        assert reveal(published, table) == doc


def test_each_melding_gets_its_own_data_key(feed, keys: Keys) -> None:
    doc, _, mid = _melding(feed)
    one, two = protect(doc, mid, "kortrijk", keys.ring), protect(doc, mid, "kortrijk", keys.ring)
    assert one["melding"]["melder"] != two["melding"]["melder"]
    t1 = _table(keys.kortrijk, (mid, one["key"]))
    t2 = _table(keys.kortrijk, (mid, two["key"]))
    assert t1[mid] != t2[mid]
    with pytest.raises(PrivacyError):  # one melding's key does not open another ciphertext
        reveal(two["melding"], t1)


def test_anonymous_melding_passes_unchanged_without_key_record(feed, keys: Keys) -> None:
    doc, reporter, _ = feed.melding(anonymous=True)
    assert reporter is None
    out = protect(doc, doc["identificator"]["notatie"], "kortrijk", keys.ring)
    assert out["melding"] == doc and out["key"] is None and out["recipients"] == []
    assert reveal(doc, {}) == doc


def test_a_melder_given_as_an_iri_is_protected_too(feed, keys: Keys) -> None:
    doc, _, mid = _melding(feed)
    doc["melder"] = "mailto:sofie.vandenberghe@example.org"
    out = protect(doc, mid, "kortrijk", keys.ring)
    assert "example.org" not in json.dumps(out["melding"])
    assert reveal(out["melding"], _table(keys.kortrijk, (mid, out["key"])))["melder"] == doc["melder"]


def test_another_authority_cannot_unwrap_the_owners_key(feed, keys: Keys) -> None:
    doc, _, mid = _melding(feed)
    out = protect(doc, mid, "kortrijk", keys.ring)
    table = _table(keys.imog, (mid, out["key"]))
    assert table.state(mid) == "not-recipient"
    assert table.get(mid) is None
    assert "melder" not in reveal(out["melding"], table)
    with pytest.raises(Erased):
        reveal(out["melding"], table, strict=True)
    # even claiming to be kortrijk with imog's private key fails: the wrap is bound to kortrijk's key
    impostor = Identity.authority("kortrijk", keys.imog_private)
    with pytest.raises(PrivacyError):
        _table(impostor, (mid, out["key"]))[mid]


def test_a_shared_key_authority_and_an_owner_without_a_key(feed, keys: Keys) -> None:
    doc, _, mid = _melding(feed)
    out = protect(doc, mid, "awv", keys.ring)
    assert reveal(out["melding"], _table(keys.awv, (mid, out["key"]))) == doc

    out = protect(doc, mid, "menen", keys.ring)  # no key known for menen: wrapped for the hub only
    assert out["recipients"] == ["hub"]
    menen = Identity.authority("menen", os.urandom(32), "shared")
    assert _table(menen, (mid, out["key"])).state(mid) == "not-recipient"
    assert reveal(out["melding"], _table(keys.hub_identity, (mid, out["key"]))) == doc


def test_a_tombstone_erases_one_melding_and_no_other(feed, keys: Keys) -> None:
    (a, _, mid_a), (b, _, mid_b) = _melding(feed), _melding(feed)
    pa, pb = protect(a, mid_a, "kortrijk", keys.ring), protect(b, mid_b, "kortrijk", keys.ring)

    # the log as written (record, record, tombstone) — uncompacted — and as compacted (one record)
    uncompacted = [(mid_a, pa["key"]), (mid_b, pb["key"]), (mid_a, None)]
    compacted = [(mid_b, pb["key"])]
    for log in (uncompacted, compacted):
        for identity in (keys.kortrijk, keys.hub_identity):
            table = _table(identity, *log)
            assert table.state(mid_a) in ("erased", "unknown")
            assert "melder" not in reveal(pa["melding"], table)
            assert reveal(pb["melding"], table) == b
    assert _table(keys.kortrijk, *uncompacted).state(mid_a) == "erased"
    assert _table(keys.kortrijk, *compacted).state(mid_a) == "unknown"


def test_a_key_record_written_after_an_erasure_is_a_new_key(feed, keys: Keys) -> None:
    doc, _, mid = _melding(feed)
    old, new = protect(doc, mid, "kortrijk", keys.ring), protect(doc, mid, "kortrijk", keys.ring)
    table = _table(keys.kortrijk, (mid, old["key"]), (mid, None), (mid, new["key"]))
    assert table.state(mid) == "available"
    assert reveal(new["melding"], table) == doc
    with pytest.raises(PrivacyError):  # the erased ciphertext stays unreadable
        reveal(old["melding"], table)


def test_tampering_is_detected(feed, keys: Keys) -> None:
    (a, _, mid_a), (b, _, mid_b) = _melding(feed), _melding(feed)
    pa, pb = protect(a, mid_a, "kortrijk", keys.ring), protect(b, mid_b, "kortrijk", keys.ring)
    table = _table(keys.kortrijk, (mid_a, pa["key"]), (mid_b, pb["key"]))

    flipped = copy.deepcopy(pa["melding"])
    text = flipped["melder"]["versleuteld"]
    flipped["melder"]["versleuteld"] = text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1]
    with pytest.raises(PrivacyError, match="tampered"):
        reveal(flipped, table)

    moved = copy.deepcopy(pb["melding"])  # a's ciphertext pasted into b: bound to a's id
    moved["melder"] = pa["melding"]["melder"]
    with pytest.raises(PrivacyError):
        reveal(moved, table)

    bad_record = copy.deepcopy(pa["key"])
    wrap = bad_record["wrapped"]["authority:kortrijk"]
    wrap["wk"] = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    with pytest.raises(PrivacyError, match="tampered"):
        _table(keys.kortrijk, (mid_a, bad_record))[mid_a]

    malformed = copy.deepcopy(pa["melding"])
    malformed["melder"]["versleuteld"] = "mh1.not-base64!"
    with pytest.raises(PrivacyError, match="malformed"):
        reveal(malformed, table)


def test_a_record_under_another_meldings_key_is_ignored(feed, keys: Keys) -> None:
    (a, _, mid_a), (_, _, mid_b) = _melding(feed), _melding(feed)
    pa = protect(a, mid_a, "kortrijk", keys.ring)
    table = KeyTable(keys.kortrijk)
    table.apply(mid_b.encode(), privacy.key_record_value(pa["key"]))  # key b, record of a
    table.apply(mid_a.encode(), b"not json")
    assert len(table) == 0


def test_invalid_melding_ids_are_refused(keys: Keys) -> None:
    for bad in ("", "../x", "a b", "x" * 200):
        with pytest.raises(PrivacyError):
            protect({"melder": {"naam": "x"}}, bad, "kortrijk", keys.ring)
    with pytest.raises(PrivacyError):
        key_output("a b", None)


def test_key_output_and_tombstone(feed, keys: Keys) -> None:
    doc, _, mid = _melding(feed)
    out = protect(doc, mid, "kortrijk", keys.ring)
    topic, key, value, headers = key_output(mid, out["key"])
    assert (topic, key) == (KEYS, mid.encode()) and json.loads(value) == out["key"]
    assert dict(headers)["melding-id"] == mid.encode()
    assert key_output(mid, None)[2] is None


def test_keyring_and_identity_from_the_environment(tmp_path: Path, keys: Keys, feed) -> None:
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(
        "authorities:\n"
        f"  kortrijk: {{x25519_public: \"{base64.b64encode(keys.kortrijk_public).decode()}\"}}\n"
        "  awv: {shared_key_env: TEST_AWV_KEY}\n",
        encoding="utf-8",
    )
    hub_file = tmp_path / "hub.key"
    hub_file.write_text(base64.b64encode(keys.hub).decode() + "\n")
    env = {
        "MELDHUB_PRIVACY_HUB_KEY_FILE": str(hub_file),
        "MELDHUB_PRIVACY_RECIPIENTS": str(recipients),
        "TEST_AWV_KEY": keys.awv_shared.hex(),
    }
    ring = KeyRing.from_env(env)
    assert sorted(ring.authorities) == ["awv", "kortrijk"]
    doc, _, mid = _melding(feed)
    out = protect(doc, mid, "kortrijk", ring)

    reader = Identity.from_env(
        {"MELDHUB_PRIVACY_IDENTITY": "authority:kortrijk", "MELDHUB_PRIVACY_PRIVATE_KEY": base64.b64encode(keys.kortrijk_private).decode()}
    )
    assert reveal(out["melding"], _table(reader, (mid, out["key"]))) == doc
    hub = Identity.from_env({"MELDHUB_PRIVACY_IDENTITY": "hub", "MELDHUB_PRIVACY_HUB_KEY": keys.hub.hex()})
    assert reveal(out["melding"], _table(hub, (mid, out["key"]))) == doc
    assert "secret" not in repr(hub) and keys.hub.hex() not in repr(hub)


def test_configuration_errors_name_the_variable_not_the_key(tmp_path: Path) -> None:
    with pytest.raises(PrivacyConfigError, match="MELDHUB_PRIVACY_HUB_KEY"):
        KeyRing.from_env({})
    short = base64.b64encode(b"too short").decode()
    with pytest.raises(PrivacyConfigError) as info:
        KeyRing.from_env({"MELDHUB_PRIVACY_HUB_KEY": short})
    assert short not in str(info.value)
    with pytest.raises(PrivacyConfigError, match="TEST_MISSING"):
        recipients = tmp_path / "r.yaml"
        recipients.write_text("authorities:\n  imog: {shared_key_env: TEST_MISSING}\n")
        KeyRing.from_env({"MELDHUB_PRIVACY_HUB_KEY": os.urandom(32).hex(), "MELDHUB_PRIVACY_RECIPIENTS": str(recipients)})
    with pytest.raises(PrivacyConfigError, match="MELDHUB_PRIVACY_IDENTITY"):
        Identity.from_env({})


def test_protected_melding_still_conforms_to_the_hubs_shapes(feed, keys: Keys) -> None:
    """The owner-topic melding stays a valid melding for consumers that validate it."""
    from hub.pipeline import validate
    from hub.validation import ShaclValidator

    doc, _, mid = _melding(feed)
    doc["behandelaar"] = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"
    published = protect(doc, mid, "kortrijk", keys.ring)["melding"]
    melding = validate(published, ShaclValidator())
    assert melding.melding_id == mid


def test_erasure_reason_and_actor_carry_no_contact_details() -> None:
    reason = privacy.clean_reason("verzoek van sofie.vandenberghe@example.org, bel +32 470 11 22 33\n(AVG-2026-114)")
    assert "example.org" not in reason and "470" not in reason and "AVG-2026-114" in reason
    assert "\n" not in reason
    with pytest.raises(PrivacyError):
        privacy.clean_reason("   ")
    assert "@" not in privacy.who("koen.desmet@example.net", env={})
    assert privacy.who(None, env={"MELDHUB_KAFKA_SASL_USERNAME": "admin"}) == "admin"


def test_audit_record_shape_matches_hub_audit() -> None:
    erasure = privacy.Erasure("m-1", "admin", "2026-11-20T08:00:00.000+00:00", "AVG-1", 2, 17)
    key, value, headers = privacy.audit_record(erasure)
    data = json.loads(value)
    assert key == b"meldingen.keys/m-1"
    assert data["action"] == "gdpr-erased" and data["by"] == "admin" and data["melding_id"] == "m-1"
    assert set(data) == {"action", "by", "at", "channel", "target", "melding_id", "reason", "details"}
    assert dict(headers) == {"audit-action": b"gdpr-erased", "audit-by": b"admin"}


def test_topic_configs_retention() -> None:
    configs = privacy.topic_configs(["kortrijk", "imog"], ["open311-zwvl"], authority_retention_days={"imog": 90})
    day = privacy.DAY_MS

    def days(topic: str) -> float:
        return int(configs[topic]["retention.ms"]) / day

    assert days("meldingen.inbound") == 3
    assert days("meldingen.authority.kortrijk") == 30
    assert days("meldingen.authority.imog") == 90
    assert days("meldingen.deadletter") == 14
    assert days("meldingen.status") == 30 and days("meldingen.status.open311-zwvl") == 30
    assert configs[KEYS]["cleanup.policy"] == "compact"
    assert int(configs[KEYS]["max.compaction.lag.ms"]) <= day
    assert configs["meldingen.audit"]["retention.ms"] == "-1"
    assert days("meldingen.inbound") < days("meldingen.authority.kortrijk")


def test_no_personal_data_in_any_output_or_error_for_the_whole_corpus(feed, keys: Keys) -> None:
    """Every reporter of hub.demo's corpus: published docs, key records and every error text."""
    from tests.security.conftest import reporters

    texts: list[str] = []
    for name, email, phone in reporters():
        doc, _, mid = _melding(feed)
        doc["melder"]["naam"] = name
        doc["melder"]["contactpunt"] = {"@type": "Contactpunt", "email": email, "telefoon": phone}
        out = protect(doc, mid, "kortrijk", keys.ring)
        texts += [json.dumps(out["melding"], ensure_ascii=False), json.dumps(out["key"]), repr(out["key"])]
        table = _table(keys.kortrijk, (mid, out["key"]))
        assert reveal(out["melding"], table)["melder"]["naam"] == name
        broken = copy.deepcopy(out["melding"])
        broken["melder"]["versleuteld"] = broken["melder"]["versleuteld"][:-4] + "AAAA"
        for call in (
            lambda: reveal(broken, table),
            lambda: reveal(out["melding"], _table(keys.imog, (mid, out["key"])), strict=True),
            lambda: protect({**doc, "melder": {"naam": name, "x": {1, 2}}}, mid, "kortrijk", keys.ring),
            lambda: protect(doc, f"{name} {email}", "kortrijk", keys.ring),
            lambda: reveal({**out["melding"], "identificator": {"notatie": email}}, table),
        ):
            with pytest.raises(PrivacyError) as info:
                call()
            texts += [str(info.value), repr(info.value)]
    assert_no_personal_data(texts, "hub.privacy")
