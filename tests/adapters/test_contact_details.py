"""Encrypted contact details at the authority adapters, with real keys (X25519, hub/privacy.py):
the owner's adapter decrypts them for its vendor; without a key (erased, or no identity) it files
the ticket without them and says so without personal data; a refusal carries the key record the
hub needs to re-encrypt for the next owner."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from adapters.contact import ContactKeys
from adapters.topdesk.client import TopdeskClient
from adapters.topdesk.service import TopdeskWorker
from adapters.topdesk.store import Store as TopdeskStore
from adapters.webhook.client import WebhookClient
from adapters.webhook.service import WebhookWorker
from adapters.webhook.store import Store as WebhookStore
from hub import logs
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.pipeline import Record
from hub.privacy import (
    Identity,
    KeyRing,
    PrivacyConfigError,
    RecipientKey,
    authority_recipient,
    generate_keypair,
    is_protected,
    key_output,
    protect,
    unwrap,
)
from hub.registry import Registry
from hub.topics import STATUS, Header
from tests.adapters import test_topdesk as td
from tests.adapters import test_webhook as wh
from tests.adapters.refusal_check import assert_one_refusal, owner_record
from tests.adapters.topdesk_standin import TopdeskStandIn
from tests.adapters.webhook_standin import WebhookReceiver

HUB_KEY = os.urandom(32)


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=1717)


class Keys:
    """An authority's key pair, the hub's key ring, and the adapter's view of meldingen.keys."""

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self.private, public = generate_keypair()
        self.ring = KeyRing(HUB_KEY, {authority: RecipientKey(authority_recipient(authority), public=public)})
        self.contacts = ContactKeys(Identity.authority(authority, self.private))
        self.records: dict[str, dict[str, Any]] = {}

    def protect(self, record: Record) -> Record:
        """The routed melding as the hub forwards it with MELDHUB_PROTECT_CONTACT_DETAILS=true."""
        doc = json.loads(record.value or b"")
        mid = (record.key or b"").decode()
        protected = protect(doc, mid, self.authority, self.ring)
        assert is_protected(protected["melding"])
        self.records[mid] = protected["key"]
        _, key, value, _ = key_output(mid, protected["key"])
        self.contacts.table.apply(key, value)  # as read from meldingen.keys
        return Record(value=json.dumps(protected["melding"]).encode(), key=record.key, headers=record.headers,
                      topic=record.topic, partition=record.partition, offset=record.offset)

    def erase(self, melding_id: str) -> None:
        _, key, value, _ = key_output(melding_id, None)  # the tombstone of meldhub gdpr erase
        self.contacts.table.apply(key, value)


def topdesk(tmp_path: Path, contacts: ContactKeys | None, **config: Any) -> tuple[TopdeskWorker, TopdeskStandIn]:
    standin = TopdeskStandIn()
    cfg = td._config(**config)
    client = TopdeskClient(cfg.base_url, "hub-operator", "app-password", transport=standin.transport())
    return TopdeskWorker(cfg, client, TopdeskStore(tmp_path / "t.sqlite3"), td.KORTRIJK, "Stad Kortrijk",
                         contacts=contacts), standin


@pytest.fixture
def captured_logs() -> Any:
    buf = io.StringIO()
    logs.configure("INFO", stream=buf)
    yield buf
    logs.configure("INFO")


async def test_the_owners_adapter_files_the_ticket_with_the_decrypted_contact_details(tmp_path: Path, feed: DemoFeed) -> None:
    keys = Keys("kortrijk")
    plain = td._routed(feed, anonymous=False)
    melder = json.loads(plain.value or b"")["melder"]
    record = keys.protect(plain)
    assert melder["naam"].encode() not in (record.value or b""), "on the topic the reporter is encrypted"
    worker, standin = topdesk(tmp_path, keys.contacts)
    emit = await worker.handle(record)
    assert [o.topic for o in emit.outputs] == [STATUS]
    (incident,) = standin.incidents.values()
    assert incident["caller"]["dynamicName"] == melder["naam"]
    # the kept record (for a refusal) is the encrypted one, as consumed: no contact details in clear in the store
    value, _ = worker.store.kept.get(incident["externalNumber"])  # type: ignore[misc]
    assert value == record.value and melder["naam"].encode() not in value


async def test_without_a_key_the_ticket_is_filed_without_contact_details_and_a_clean_warning(
    tmp_path: Path, feed: DemoFeed, captured_logs: io.StringIO
) -> None:
    keys = Keys("kortrijk")
    erased = keys.protect(td._routed(feed, anonymous=False))
    erased_id = (erased.key or b"").decode()
    keys.erase(erased_id)
    other_keys = Keys("kortrijk")  # a melding the hub encrypted for a key this adapter does not have
    foreign = other_keys.protect(td._routed(feed, anonymous=False))
    rotated = other_keys.protect(td._routed(feed, anonymous=False))  # ... whose key record this adapter reads
    rid = (rotated.key or b"").decode()
    keys.contacts.table.apply(rid.encode(), json.dumps(other_keys.records[rid]).encode())
    buf = captured_logs
    worker, standin = topdesk(tmp_path, keys.contacts)
    for record in (erased, foreign, rotated):
        emit = await worker.handle(record)
        assert [o.topic for o in emit.outputs] == [STATUS], "filed, not dead-lettered"
    callers = [i["caller"]["dynamicName"] for i in standin.incidents.values()]
    assert callers == ["Anonieme melder"] * 3
    # no identity configured at all: same, never the ciphertext passed on
    bare, standin2 = topdesk(tmp_path / "bare", None)
    await bare.handle(keys.protect(td._routed(feed, anonymous=False)))
    (incident,) = standin2.incidents.values()
    assert incident["caller"]["dynamicName"] == "Anonieme melder" and "mh1." not in json.dumps(incident)
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    warnings = [line for line in lines if line["event"] == "contact_details.unavailable"]
    assert sorted(w["key_state"] for w in warnings) == ["erased", "no-identity", "unknown", "unreadable"]
    assert all("naam" not in json.dumps(w) and "@" not in json.dumps(w) for w in warnings)


async def test_a_webhook_receives_the_melding_with_its_contact_details_revealed(tmp_path: Path, feed: DemoFeed) -> None:
    keys = Keys("imog")
    plain = owner_record(wh._routed(feed), "imog")
    melder = json.loads(plain.value or b"")["melder"]
    record = keys.protect(plain)
    receiver = WebhookReceiver(wh.KEY)
    cfg = wh._config()
    worker = WebhookWorker(cfg, WebhookClient(cfg.url, wh.KEY, transport=receiver.transport()),
                           WebhookStore(tmp_path / "w.sqlite3"), wh.IMOG, "Imog", contacts=keys.contacts)
    emit = await worker.handle(record)
    assert [o.topic for o in emit.outputs] == [STATUS]
    (delivered,) = receiver.accepted.values()
    assert delivered["melder"] == melder and not is_protected(delivered)


async def test_a_refusal_carries_the_key_record_the_hub_can_unwrap(tmp_path: Path, feed: DemoFeed) -> None:
    keys = Keys("kortrijk")
    record = keys.protect(owner_record(td._routed(feed, anonymous=False), "kortrijk"))
    mid = (record.key or b"").decode()
    worker, standin = topdesk(tmp_path, keys.contacts,
                              processing_statuses={"Logged": "557", "Niet bevoegd": None}, workflow=None,
                              refusal_statuses={"Niet bevoegd": None})
    emit = await worker.handle(record)
    emit.done()
    standin.set_status(mid, "Niet bevoegd")
    emit = await worker.poll_once()
    assert_one_refusal(emit.outputs, record, "kortrijk")
    raw = dict(emit.outputs[0].headers)[Header.MELDING_KEY]
    assert json.loads(raw) == keys.records[mid]
    assert unwrap(json.loads(raw), Identity.hub(HUB_KEY), mid) is not None, "the hub can re-encrypt for the next owner"


def test_an_adapter_refuses_an_identity_that_is_not_its_authority() -> None:
    private, _ = generate_keypair()
    import base64

    env = {"MELDHUB_PRIVACY_IDENTITY": "authority:menen", "MELDHUB_PRIVACY_PRIVATE_KEY": base64.b64encode(private).decode()}
    with pytest.raises(PrivacyConfigError, match="reads as 'authority:kortrijk'"):
        ContactKeys.from_env("kortrijk", "127.0.0.1:9", env)
    assert ContactKeys.from_env("kortrijk", "127.0.0.1:9", {}) is None
    assert ContactKeys.from_env("menen", "127.0.0.1:9", env) is not None
