"""E-mail adapter: the message, the signed links, the worker against a real SMTP server (aiosmtpd)
with injected failures, and the status form (no broker: the report function is a fake)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from adapters import registry as adapter_registry
from adapters.email import translate as t
from adapters.email.client import SmtpClient
from adapters.email.config import Config
from adapters.email.server import StatusApp
from adapters.email.service import EmailWorker
from adapters.email.store import Store
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.melding import Melding
from hub.pipeline import Record
from hub.registry import Registry
from hub.status import StatusChange, StatusHeader
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters.email_standin import SilentServer, SmtpStandIn, status_link, text_of

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

LENDELEDE = "https://w3id.org/meldingen-hub/id/organisatie/lendelede"
KEY = b"k" * 32


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=25)


def _config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "id": "email-test",
        "authority": "lendelede",
        "recipients": ["meldingen@lendelede.example"],
        "category_recipients": {"groenonderhoud-bomen": ["groen@lendelede.example"]},
        "smtp_security": "none",
        "from_address": "noreply@hub.example",
        "reply_domain": "hub.example",
        "public_url": "https://hub.example/email-lendelede/",
        "link_secret_env": "EMAIL_LINK_KEY",
        "retry": {"max_attempts": 3, "base_delay_s": 0, "max_delay_s": 0},
        "timeout_s": 2,
    }
    return Config.model_validate({**base, **overrides})


def _routed(feed: DemoFeed, category: str = "wegdefect", **kwargs: Any) -> Record:
    item = feed.valid(category=category, nis="34025", **kwargs)
    doc = json.loads(item.value)
    doc["behandelaar"] = LENDELEDE
    return Record(value=json.dumps(doc).encode(), key=item.key,
                  headers=((Header.SOURCE, b"open311-zwvl"), (Header.MELDING_ID, item.key)),
                  topic=authority_topic("lendelede"), partition=2, offset=3)


# -- the message and the links ---------------------------------------------------------------------
def test_one_dutch_message_with_the_reporter_only_for_the_owner(feed: DemoFeed) -> None:
    config = _config()
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    record = _routed(feed)
    doc = json.loads(record.value or b"")
    melding = Melding.from_jsonld(doc)
    mid = melding.melding_id
    link, expires = t.status_link(mid, config, KEY, now)
    msg = t.compose(melding, config, "Gemeente Lendelede", link, expires, now)
    assert msg["Message-ID"] == f"<melding-{mid}@hub.example>"
    assert msg["Reply-To"] == f"melding+{mid}@hub.example" and msg["To"] == "meldingen@lendelede.example"
    assert msg["Subject"].startswith("Melding Wegdefect: ")
    text = text_of(msg)
    assert "Via Meldingen Hub kwam een melding binnen voor Gemeente Lendelede." in text
    assert doc["melder"]["naam"] in text and doc["melder"]["contactpunt"]["email"] in text
    assert link in text and "geldig tot 20-01-2027 13:00" in text and mid in text
    html_part = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert doc["melder"]["naam"] in html_part and 'lang="nl"' in html_part
    # the same melding composed again (a retry) is the same message
    again = t.compose(melding, config, "Gemeente Lendelede", link, expires, now)
    assert again["Message-ID"] == msg["Message-ID"] and text_of(again) == text
    # anonymous; another category's mailbox; hostile text is escaped in the HTML
    anon = Melding.from_jsonld(json.loads(_routed(feed, category="groenonderhoud-bomen", anonymous=True).value or b""))
    anon_msg = t.compose(anon, config, "Gemeente Lendelede", link, expires, now)
    assert "De melder blijft anoniem." in text_of(anon_msg) and anon_msg["To"] == "groen@lendelede.example"
    doc["heeftBody"][0]["beschrijving"] = "<script>alert(1)</script>"
    hostile = t.compose(Melding.from_jsonld(doc), config, "Gemeente Lendelede", link, expires, now)
    assert "<script>" not in hostile.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    # the status page shows category and place, never personal data
    assert doc["melder"]["naam"] not in t.summary(melding) and "Wegdefect" in t.summary(melding)


def test_status_links_are_signed_and_expire() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    mid = "5b0d7f6a-1c42-4c7a-9e21-3f6c2a1e8d4b"
    token = t.sign(mid, KEY, "email-test", now, timedelta(days=60))
    assert t.verify(token, KEY, "email-test", now + timedelta(days=59))[0] == mid
    with pytest.raises(t.LinkExpired):
        t.verify(token, KEY, "email-test", now + timedelta(days=60))
    melding, expires, mac = token.split(".")
    for forged in (f"{melding}.{int(expires) + 86400}.{mac}", f"{melding[:-1]}0.{expires}.{mac}", f"{token}x", "x.y"):
        with pytest.raises(t.LinkInvalid):
            t.verify(forged, KEY, "email-test", now)
    with pytest.raises(t.LinkInvalid):
        t.verify(token, b"another key" * 3, "email-test", now)
    with pytest.raises(t.LinkInvalid):
        t.verify(token, KEY, "email-other", now)


def test_check_proves_the_shipped_example_and_names_each_gap() -> None:
    shipped = [c for c in adapter_registry.load() if c.vendor == "email"]
    assert shipped and all(c.config is not None and t.check(c.config) == [] for c in shipped)  # type: ignore[arg-type]
    problems = "\n".join(t.check(_config(status_choices=["133", "511", "733"])))
    assert "511 Ingediend is the citizen's to set" in problems and "733 Ingetrokken is the citizen's" in problems
    assert "means 557 Toegewezen aan → 511 Ingediend, not a legal transition" in problems


# -- the worker --------------------------------------------------------------------------------------
class Harness:
    def __init__(self, tmp_path: Path, smtp_port: int, **config: Any) -> None:
        self.config = _config(smtp_port=smtp_port, **config)
        self.store = Store(tmp_path / "email.sqlite3")
        login = self.config.smtp_login()
        self.client = SmtpClient("127.0.0.1", smtp_port, "none", login, timeout=self.config.timeout_s)
        self.worker = EmailWorker(self.config, self.client, self.store, KEY, LENDELEDE, "Gemeente Lendelede")

    async def deliver(self, record: Record) -> list[Any]:
        emit = await self.worker.handle(record)
        emit.done()
        return emit.outputs


async def test_a_melding_is_mailed_once_and_reported_as_toegewezen(tmp_path: Path, feed: DemoFeed) -> None:
    with SmtpStandIn() as smtp:
        h = Harness(tmp_path, smtp.port)
        record = _routed(feed)
        mid = record.key.decode()  # type: ignore[union-attr]
        (out,) = await h.deliver(record)
        assert out.topic == STATUS
        change = StatusChange.from_jsonld(json.loads(out.value))
        assert change.status.notation == "557" and change.beschrijving == "Uw melding werd per e-mail bezorgd aan Gemeente Lendelede."
        assert dict(out.headers)[StatusHeader.PREVIOUS] == b"511" and dict(out.headers)[Header.SOURCE] == b"open311-zwvl"
        ((sender, rcpts, msg),) = smtp.messages
        assert sender == f"melding+{mid}@hub.example" and rcpts == ["meldingen@lendelede.example"]
        assert status_link(msg).startswith("https://hub.example/email-lendelede/status/")
        # redelivered: no second mail, nothing reported twice
        assert await h.deliver(record) == []
        assert len(smtp.for_melding(mid)) == 1
        # a crash after the server accepted the mail but before it was recorded: re-sent, same Message-ID
        record2 = _routed(feed)
        mid2 = record2.key.decode()  # type: ignore[union-attr]
        h.store.sending(mid2, "open311-zwvl", "x", t.message_id(mid2, h.config), "511")
        (out,) = await h.deliver(record2)
        assert out.topic == STATUS
        assert [m["Message-ID"] for m in smtp.for_melding(mid2)] == [f"<melding-{mid2}@hub.example>"]
        assert h.store.get(mid2)["attempts"] == 2  # type: ignore[index]


async def test_a_4xx_is_retried_and_a_login_is_used(tmp_path: Path, feed: DemoFeed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMTP_USER", "hub")
    monkeypatch.setenv("T_SMTP_PASSWORD", "s3cret")
    with SmtpStandIn(login=("hub", "s3cret")) as smtp:
        h = Harness(tmp_path, smtp.port, smtp_username_env="T_SMTP_USER", smtp_password_env="T_SMTP_PASSWORD")
        smtp.faults = [451]
        record = _routed(feed)
        (out,) = await h.deliver(record)
        assert out.topic == STATUS and len(smtp.messages) == 1 and smtp.logins == ["hub", "hub"]


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [("550", "vendor-rejected"), ("452-exhausted", "vendor-unavailable"), ("auth", "vendor-auth"),
     ("refused", "vendor-unavailable"), ("silent", "vendor-timeout")],
)
async def test_smtp_failures_are_dead_lettered_with_their_class(tmp_path: Path, feed: DemoFeed, fault: str, error_class: str) -> None:
    record = _routed(feed)
    silent = SilentServer() if fault == "silent" else None
    smtp = SmtpStandIn(login=("hub", "right") if fault == "auth" else None).start()
    try:
        port = silent.port if silent else smtp.port
        if fault == "refused":
            smtp.stop()
        h = Harness(tmp_path, port, timeout_s=0.5)
        if fault == "auth":
            h.client.login = ("hub", "wrong")
        elif fault == "550":
            smtp.faults = [550]
        elif fault == "452-exhausted":
            smtp.faults = [452, 452, 452]
        (out,) = await h.deliver(record)
        assert out.topic == DEADLETTER and out.value == record.value
        headers = dict(out.headers)
        assert headers[Header.ERROR_CLASS] == error_class.encode()
        if error_class in ("vendor-unavailable", "vendor-timeout"):
            assert b"gave up after 3 attempts" in headers[Header.ERROR_REASON]
        assert smtp.messages == [] and h.store.get(record.key.decode())["state"] == "sending"  # type: ignore[index,union-attr]
    finally:
        if fault != "refused":
            smtp.stop()
        if silent:
            silent.close()


# -- the status form ---------------------------------------------------------------------------------
class FormHarness:
    def __init__(self, tmp_path: Path, fail: bool = False) -> None:
        self.config = _config()
        self.store = Store(tmp_path / "email.sqlite3")
        self.reported: list[tuple[StatusChange, str | None, str]] = []
        self.fail = fail
        self.now = datetime.now(UTC)
        self.app = StatusApp(self.config, self.store, KEY, self.report, LENDELEDE, clock=lambda: self.now).app()
        self.mid = "0f6a1c42-8d4b-4c7a-9e21-5b0d7f6a3f6c"
        self.store.sending(self.mid, "open311-zwvl", "Wegdefect — Kerkstraat 3, 8860 Lendelede", "<x>", "511")
        self.store.sent(self.mid, self.now)
        self.store.advance(self.mid, "511", "557")
        link, _ = t.status_link(self.mid, self.config, KEY, self.now)
        self.path = urlsplit(link).path.removeprefix("/email-lendelede")

    async def report(self, change: StatusChange, source: str | None, previous: str) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.reported.append((change, source, previous))

    async def call(self, method: str, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test") as client:
            return await client.request(method, path, data=data)


async def test_the_receiver_sets_a_status_through_the_signed_link(tmp_path: Path) -> None:
    h = FormHarness(tmp_path)
    page = await h.call("GET", h.path)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "Huidige status: <strong>Toegewezen aan</strong>" in page.text and "Wegdefect — Kerkstraat 3" in page.text
    assert {"496", "133", "475", "751", "250", "956"} == set(re.findall(r'value="(\d+)"', page.text))

    done = await h.call("POST", h.path, {"status": "133", "toelichting": "Put  gedicht op 22/11."})
    assert done.status_code == 200 and "Opgelost" in done.text
    ((change, source, previous),) = h.reported
    assert (change.status.notation, change.beschrijving, change.door, source, previous) == (
        "133", "Put gedicht op 22/11.", LENDELEDE, "open311-zwvl", "557")
    assert h.store.get(h.mid)["oslo_status"] == "133"  # type: ignore[index]

    again = await h.call("POST", h.path, {"status": "133", "toelichting": "Put gedicht op 22/11."})
    assert again.status_code == 200 and "Ongewijzigd" in again.text and len(h.reported) == 1
    illegal = await h.call("POST", h.path, {"status": "496"})
    assert illegal.status_code == 409 and "kan de status niet naar In onderzoek" in illegal.text and len(h.reported) == 1
    bad = await h.call("POST", h.path, {"status": "511"})
    assert bad.status_code == 400 and len(h.reported) == 1
    closed = await h.call("POST", h.path, {"status": "956"})
    assert closed.status_code == 200 and h.reported[-1][0].beschrijving == "De behandeling van uw melding is afgerond."


async def test_forged_expired_and_unknown_links_and_broker_trouble(tmp_path: Path) -> None:
    h = FormHarness(tmp_path)
    assert (await h.call("GET", h.path[:-2] + "xx")).status_code == 403
    assert (await h.call("POST", h.path[:-2] + "xx", {"status": "133"})).status_code == 403
    h.now += timedelta(days=61)
    assert (await h.call("GET", h.path)).status_code == 410
    h.now -= timedelta(days=61)
    other = t.sign("11111111-2222-4333-8444-555555555555", KEY, h.config.id, h.now, timedelta(days=1))
    assert (await h.call("GET", f"/status/{other}")).status_code == 404
    assert h.reported == []

    down = FormHarness(tmp_path / "down", fail=True)
    response = await down.call("POST", down.path, {"status": "133"})
    assert response.status_code == 503 and down.store.get(down.mid)["oslo_status"] == "557"  # type: ignore[index]


# -- refusal: "niet onze bevoegdheid" on the status form ----------------------------------------------
class Published:
    """Stands in for the broker side of adapters.loop.Publisher: what the app produced, acknowledged."""

    def __init__(self) -> None:
        self.outputs: list[Any] = []

    async def publish(self, outputs: Any) -> None:
        self.outputs += list(outputs)


async def test_the_receiver_gives_a_melding_back_as_not_ours(tmp_path: Path, feed: DemoFeed) -> None:
    from adapters.loop import refuser
    from tests.adapters.refusal_check import assert_one_refusal, owner_record

    with SmtpStandIn() as smtp:
        h = Harness(tmp_path, smtp.port)
        record = owner_record(_routed(feed), "lendelede")
        mid = record.key.decode()  # type: ignore[union-attr]
        await h.deliver(record)
        link = status_link(smtp.for_melding(mid)[0])
    published = Published()
    reported: list[Any] = []

    async def report(*args: Any) -> None:
        reported.append(args)

    app = StatusApp(h.config, h.store, KEY, report, LENDELEDE, refuse=refuser(h.worker, published)).app()  # type: ignore[arg-type]
    path = urlsplit(link).path.removeprefix("/email-lendelede")

    async def call(method: str, data: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, data=data)

    page = await call("GET")
    assert 'value="weigeren"' in page.text and "Niet onze bevoegdheid" in page.text and 'name="reden"' in page.text
    no_reason = await call("POST", {"status": "weigeren", "reden": "  "})
    assert no_reason.status_code == 400 and published.outputs == []
    done = await call("POST", {"status": "weigeren", "reden": "Privé-terrein van de NMBS, zie jan@nmbs.example"})
    assert done.status_code == 200 and "teruggegeven aan Meldingen Hub" in done.text
    refusal = assert_one_refusal(published.outputs, record, "lendelede")
    assert refusal.reason.startswith("Privé-terrein van de NMBS") and "jan@nmbs.example" not in refusal.reason
    assert reported == [], "no status for the citizen: the hub tells them who handles it next"
    assert (await call("GET")).status_code == 410
    assert (await call("POST", {"status": "133"})).status_code == 410 and reported == []
    assert len(published.outputs) == 1


async def test_guessing_status_links_is_cut_off_per_address(tmp_path: Path) -> None:
    h = FormHarness(tmp_path)
    h.app = StatusApp(h.config.model_copy(update={"rate_limit_auth_failures": "2/hour"}), h.store, KEY, h.report,
                      LENDELEDE, clock=lambda: h.now).app()  # fmt: skip
    assert [(await h.call("GET", h.path[:-2] + g)).status_code for g in ("xx", "yy")] == [403, 403]
    blocked = await h.call("GET", h.path)  # even the right link, from that address, for a while
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1 and "Te veel verzoeken" in blocked.text
