"""The forward stage with a keyring: the owner's topic never carries the reporter in clear,
the key record travels with it, and the owner (only) gets the contact details back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hub import privacy
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.pipeline import Pipeline, Record
from hub.registry import Registry
from hub.routing import Router
from hub.topics import INBOUND, KEYS
from hub.validation import ShaclValidator
from tests.oracle import expected_owner

REGISTRY = Path(__file__).parent / "data" / "registry-no-layers.yaml"


def test_contact_details_are_encrypted_for_the_owner_and_the_key_record_goes_along() -> None:
    registry = Registry.load(REGISTRY)
    index = MunicipalityIndex.load()
    owner_secret = os.urandom(32)
    owner = expected_owner("wegdefect", "34022")
    keyring = privacy.KeyRing(os.urandom(32), {owner: privacy.RecipientKey(privacy.authority_recipient(owner), shared=owner_secret)})
    pipeline = Pipeline(ShaclValidator(), Router(registry, index), keyring=keyring)
    feed = DemoFeed(registry, index, seed=3)
    item = feed.valid(category="wegdefect", nis="34022", anonymous=False)
    outcome = pipeline.process(Record(item.value, item.key, item.headers, INBOUND, 0, 0))

    assert not outcome.dead_lettered
    published = outcome.output.value.decode()
    for secret in item.reporter:
        assert secret not in published
    (key_out,) = outcome.extra
    assert key_out.topic == KEYS and key_out.key == item.key
    record = json.loads(key_out.value)

    owner_identity = privacy.Identity.authority(owner, owner_secret, kind="shared")
    data_key = privacy.unwrap(record, owner_identity, item.melding_id)
    revealed = privacy.reveal(json.loads(published), {item.melding_id: data_key})
    assert revealed["melder"]["naam"] == item.reporter[0]

    stranger = privacy.Identity.authority("imog", os.urandom(32), kind="shared")
    assert privacy.unwrap(record, stranger, item.melding_id) is None


def test_an_anonymous_melding_needs_no_key_record() -> None:
    registry = Registry.load(REGISTRY)
    index = MunicipalityIndex.load()
    pipeline = Pipeline(ShaclValidator(), Router(registry, index), keyring=privacy.KeyRing(os.urandom(32)))
    item = DemoFeed(registry, index, seed=4).valid(anonymous=True)
    outcome = pipeline.process(Record(item.value, item.key, item.headers, INBOUND, 0, 0))
    assert not outcome.dead_lettered and outcome.extra == ()


def test_the_shapes_know_the_encrypted_melder_and_refuse_a_broken_ciphertext() -> None:
    """``versleuteld`` is a term of the hub's context and a checked property of the Persoon shape:
    without the term JSON-LD processing would silently drop it from the RDF."""
    from hub.validation import make_validator

    registry = Registry.load()
    feed = DemoFeed(registry, MunicipalityIndex.load(), seed=11)
    item = feed.valid(category="zwerfvuil", nis="34022", anonymous=False)
    protected = privacy.protect(json.loads(item.value), item.melding_id, "imog", privacy.KeyRing(os.urandom(32)))["melding"]
    broken = json.loads(json.dumps(protected))
    broken["melder"]["versleuteld"] = "mh1.not-base64!"
    twice = json.loads(json.dumps(protected))
    other = privacy.protect(json.loads(item.value), item.melding_id, "imog", privacy.KeyRing(os.urandom(32)))["melding"]
    twice["melder"]["versleuteld"] = [protected["melder"]["versleuteld"], other["melder"]["versleuteld"]]
    for engine in ("compiled", "pyshacl"):
        validator = make_validator(engine)
        assert validator.validate(protected).conforms, engine
        for bad, component in ((broken, "PatternConstraintComponent"), (twice, "MaxCountConstraintComponent")):
            result = validator.validate(bad)
            assert not result.conforms, engine
            (v,) = result.violations
            assert v.path == privacy.PROTECTED_IRI and v.component.endswith(component), (engine, v)
