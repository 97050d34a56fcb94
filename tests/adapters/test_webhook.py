"""Signed webhooks: the scheme (against an independent implementation in the stand-in), outgoing
delivery with its idempotency key and failure classes, and the inbound endpoint's checks
(signature, replay window, reuse, fields, life cycle). No broker: the report function is a fake."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import registry as adapter_registry
from adapters.webhook import translate as t
from adapters.webhook.client import WebhookClient
from adapters.webhook.config import Config
from adapters.webhook.server import InboundApp
from adapters.webhook.service import WebhookWorker
from adapters.webhook.store import Store
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.pipeline import Record
from hub.registry import Registry
from hub.status import StatusChange, StatusHeader
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters.webhook_standin import WebhookReceiver, sign, status_body

IMOG = "https://w3id.org/meldingen-hub/id/organisatie/imog"
KEY = b"webhook-test-key-" * 2


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=9)


def _config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "id": "webhook-test", "authority": "imog", "url": "https://imog.example/hub/meldingen",
        "secret_env": "WEBHOOK_KEY", "retry": {"max_attempts": 3, "base_delay_s": 0, "max_delay_s": 0},
    }
    return Config.model_validate({**base, **overrides})


def _routed(feed: DemoFeed) -> Record:
    item = feed.valid(category="sluikstort", nis="34013")
    doc = json.loads(item.value)
    doc["behandelaar"] = IMOG
    return Record(value=json.dumps(doc).encode(), key=item.key, headers=((Header.SOURCE, b"open311-zwvl"),),
                  topic=authority_topic("imog"), partition=1, offset=11)


# -- the scheme ----------------------------------------------------------------------------------------
def test_the_signature_is_the_documented_scheme() -> None:
    body = b'{"melding_id": "x"}'
    now = datetime.now(UTC)
    assert t.sign(KEY, body, now) == sign(KEY, body, int(now.timestamp()))  # the independent implementation agrees
    header = sign(KEY, body)
    assert t.verify(header, KEY, body, now, 300)[1] == header.split("v1=")[1]
    rotated = f"{header},v1={'0' * 64}"
    assert t.verify(rotated, KEY, body, now, 300)
    bad = [
        None, "", "v1=abc", f"t=x,v1={'0' * 64}",
        sign(b"another key", body),
        sign(KEY, body + b" "),
        sign(KEY, body, int(time.time()) - 301),
        sign(KEY, body, int(time.time()) + 301),
    ]
    for h in bad:
        with pytest.raises(t.BadSignature):
            t.verify(h, KEY, body, datetime.now(UTC), 300)


def test_check_proves_the_shipped_example_and_names_each_gap() -> None:
    shipped = [c for c in adapter_registry.load() if c.vendor == "webhook"]
    assert shipped and all(c.config is not None and t.check(c.config) == [] for c in shipped)  # type: ignore[arg-type]
    problems = "\n".join(t.check(_config(statuses={"nieuw": "511", "klaar": "133"})))
    assert "'nieuw' maps to 511 Ingediend" in problems and "klaar" not in problems


# -- outgoing ----------------------------------------------------------------------------------------
class Harness:
    def __init__(self, tmp_path: Path, key: bytes = KEY) -> None:
        self.receiver = WebhookReceiver(KEY)
        self.config = _config()
        self.store = Store(tmp_path / "webhook.sqlite3")
        self.client = WebhookClient(self.config.url, key, transport=self.receiver.transport())
        self.worker = WebhookWorker(self.config, self.client, self.store, IMOG, "Imog")

    async def deliver(self, record: Record) -> list[Any]:
        emit = await self.worker.handle(record)
        emit.done()
        return emit.outputs


async def test_a_melding_is_delivered_signed_and_accepted_once(tmp_path: Path, feed: DemoFeed) -> None:
    h = Harness(tmp_path)
    record = _routed(feed)
    mid = record.key.decode()  # type: ignore[union-attr]
    (out,) = await h.deliver(record)
    assert out.topic == STATUS
    change = StatusChange.from_jsonld(json.loads(out.value))
    assert (change.status.notation, change.beschrijving) == ("557", "Uw melding werd bezorgd aan Imog.")
    assert dict(out.headers)[StatusHeader.PREVIOUS] == b"511" and dict(out.headers)[Header.SOURCE] == b"open311-zwvl"
    assert h.receiver.accepted[mid] == json.loads(record.value or b"") and h.receiver.rejections == []
    assert await h.deliver(record) == [] and h.receiver.deliveries[mid] == 1, "a redelivery is not POSTed again"

    # an answer lost (502 after accepting) and a timeout: retried with the same key, accepted once
    h.receiver.faults = ["lose", "timeout"]
    record = _routed(feed)
    mid = record.key.decode()  # type: ignore[union-attr]
    (out,) = await h.deliver(record)
    assert out.topic == STATUS and h.receiver.deliveries[mid] == 2 and len(h.receiver.accepted) == 2
    # the state file lost after delivery: POSTed again, the receiver recognises the key
    fresh = Harness(tmp_path / "fresh")
    fresh.worker.client = WebhookClient(fresh.config.url, KEY, transport=h.receiver.transport())
    (out,) = await fresh.deliver(record)
    assert out.topic == STATUS and h.receiver.deliveries[mid] == 3 and len(h.receiver.accepted) == 2


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [(422, "vendor-rejected"), (302, "vendor-rejected"), ("exhausted", "vendor-unavailable"),
     ("timeouts", "vendor-timeout"), ("wrong-key", "vendor-auth")],
)
async def test_delivery_failures_are_dead_lettered_with_their_class(tmp_path: Path, feed: DemoFeed, fault: Any, error_class: str) -> None:
    h = Harness(tmp_path, key=b"wrong" if fault == "wrong-key" else KEY)
    if fault == "exhausted":
        h.receiver.faults = [503, 429, 500]
    elif fault == "timeouts":
        h.receiver.faults = ["timeout"] * 3
    elif isinstance(fault, int):
        h.receiver.faults = [fault]
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert out.topic == DEADLETTER and out.value == record.value
    assert dict(out.headers)[Header.ERROR_CLASS] == error_class.encode()
    assert h.receiver.accepted == {}


# -- incoming ----------------------------------------------------------------------------------------
class Inbound:
    def __init__(self, tmp_path: Path, fail: bool = False) -> None:
        self.config = _config()
        self.store = Store(tmp_path / "webhook.sqlite3")
        self.reported: list[tuple[StatusChange, str | None, str]] = []
        self.fail = fail
        self.app = InboundApp(self.config, self.store, KEY, self.report, IMOG).app()
        self.mid = "3f6c2a1e-8d4b-4c7a-9e21-5b0d7f6a1c42"
        self.store.sending(self.mid, "open311-zwvl", "511")
        self.store.delivered(self.mid, datetime.now(UTC))
        self.store.advance(self.mid, "511", "557")

    async def report(self, change: StatusChange, source: str | None, previous: str) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.reported.append((change, source, previous))

    async def post(self, body: bytes, signature: str | None = None, key: bytes = KEY) -> httpx.Response:
        headers = {"Content-Type": "application/json", "X-Meldingen-Signature": signature or sign(key, body)}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test") as client:
            return await client.post("/webhook/status", content=body, headers=headers)


async def test_a_signed_status_change_becomes_a_status_event(tmp_path: Path) -> None:
    h = Inbound(tmp_path)
    body = status_body(h.mid, "in-behandeling", "Ploeg ingepland voor donderdag.", "2026-11-21T10:00:00+01:00")
    response = await h.post(body)
    assert response.status_code == 202 and response.json()["result"] == "accepted"
    ((change, source, previous),) = h.reported
    assert (change.status.notation, change.beschrijving, source, previous) == (
        "496", "Ploeg ingepland voor donderdag.", "open311-zwvl", "557")
    assert change.statusdatum.isoformat() == "2026-11-21T10:00:00+01:00" and change.door == IMOG
    assert response.json()["event"] == change.event_id

    same = status_body(h.mid, "496", "Ploeg ingepland voor donderdag.")
    assert (await h.post(same)).json()["result"] == "unchanged" and len(h.reported) == 1
    solved = await h.post(status_body(h.mid, "Opgelost"))
    assert solved.status_code == 202 and h.reported[-1][0].beschrijving == "Uw melding werd opgelost."
    assert h.store.get(h.mid)["oslo_status"] == "133"  # type: ignore[index]


async def test_the_inbound_endpoint_refuses_what_it_must(tmp_path: Path) -> None:
    h = Inbound(tmp_path)
    body = status_body(h.mid, "opgelost")
    signature = sign(KEY, body)
    assert (await h.post(body, signature)).status_code == 202
    replay = await h.post(body, signature)
    assert replay.status_code == 409 and "already used" in replay.json()["error"]
    cases = [
        (body, sign(KEY, body, int(time.time()) - 301), 401),  # too old
        (body, sign(KEY, body, int(time.time()) + 301), 401),  # from the future
        (body, sign(b"another key", body), 401),
        (body, "t=1,v1=", 401),
        (b"not json", None, 400),
        (status_body(h.mid, "geparkeerd"), None, 422),
        (status_body("not-a-uuid", "opgelost"), None, 422),
        (json.dumps({"melding_id": h.mid, "status": "opgelost", "extra": 1}).encode(), None, 422),
        (status_body(h.mid, "opgelost", when="2099-01-01T00:00:00+00:00"), None, 422),
        (status_body("11111111-2222-4333-8444-555555555555", "opgelost"), None, 404),
        (status_body(h.mid, "in-onderzoek"), None, 422),  # 133 → 496 is not a legal transition
        (b"x" * (70 * 1024), None, 413),
    ]
    for payload, sig, code in cases:
        response = await h.post(payload, sig)
        assert response.status_code == code, (payload[:80], response.text)
    assert len(h.reported) == 1

    down = Inbound(tmp_path / "down", fail=True)
    body = status_body(down.mid, "opgelost")
    signature = sign(KEY, body)
    assert (await down.post(body, signature)).status_code == 503
    down.fail = False
    assert (await down.post(body, signature)).status_code == 202, "a 503 releases the signature for a retry"


# -- refusal: the system says "not ours" -----------------------------------------------------------
class Published:
    def __init__(self) -> None:
        self.outputs: list[Any] = []

    async def publish(self, outputs: Any) -> None:
        self.outputs += list(outputs)


async def test_a_signed_refusal_gives_the_melding_back_to_the_hub(tmp_path: Path, feed: DemoFeed) -> None:
    from adapters.loop import refuser
    from tests.adapters.refusal_check import assert_one_refusal, owner_record

    h = Harness(tmp_path)
    record = owner_record(_routed(feed), "imog")
    mid = record.key.decode()  # type: ignore[union-attr]
    await h.deliver(record)
    published, reported = Published(), []

    async def report(*args: Any) -> None:
        reported.append(args)

    app = InboundApp(h.config, h.store, KEY, report, IMOG, refuse=refuser(h.worker, published)).app()  # type: ignore[arg-type]

    async def post(doc: dict[str, Any]) -> httpx.Response:
        body = json.dumps(doc).encode()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/webhook/status", content=body,
                                     headers={"Content-Type": "application/json", "X-Meldingen-Signature": sign(KEY, body)})

    for bad in ({"melding_id": mid, "actie": "weigeren"}, {"melding_id": mid, "actie": "doorsturen", "reden": "x"},
                {"melding_id": mid, "actie": "weigeren", "reden": "x", "status": "opgelost"},
                {"melding_id": mid, "status": "opgelost", "reden": "x"}):
        assert (await post(bad)).status_code == 422, bad
    response = await post({"melding_id": mid, "actie": "weigeren", "reden": "Geen sluikstort: privéterrein (bel 056 12 34 56)"})
    assert response.status_code == 202 and response.json() == {"result": "refused", "melding_id": mid}
    refusal = assert_one_refusal(published.outputs, record, "imog")
    assert refusal.reason.startswith("Geen sluikstort: privéterrein") and "56 12 34" not in refusal.reason
    assert reported == []
    assert (await post({"melding_id": mid, "status": "opgelost"})).status_code == 410
    assert (await post({"melding_id": mid, "actie": "weigeren", "reden": "nogmaals"})).status_code == 410
    assert len(published.outputs) == 1
    assert "weigeren" in t.status_mapping(h.config).refusal_how  # type: ignore[operator]


async def test_the_inbound_endpoint_is_rate_limited_per_address(tmp_path: Path) -> None:
    """Bad signatures count per address: after the limit even a good one gets 429 (guessing the
    key is cut off); plain request floods get 429 with Retry-After too."""
    h = Inbound(tmp_path)
    h.app = InboundApp(h.config.model_copy(update={"rate_limit_auth_failures": "2/hour"}), h.store, KEY, h.report, IMOG).app()
    body = status_body(h.mid, "in-behandeling")
    assert [(await h.post(body, sign(b"guess", body))).status_code for _ in range(2)] == [401, 401]
    blocked = await h.post(body)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1 and h.reported == []

    flood = Inbound(tmp_path / "flood")
    flood.app = InboundApp(flood.config.model_copy(update={"rate_limit_requests": "2/minute"}), flood.store, KEY,
                           flood.report, IMOG).app()  # fmt: skip
    codes = [(await flood.post(status_body(flood.mid, s))).status_code for s in ("in-behandeling", "opgelost", "afgerond")]
    assert codes == [202, 202, 429] and len(flood.reported) == 2
