"""The admin console over HTTP (Starlette TestClient) on a real broker: login, roles (read-only
gets 403 on every change), CSRF, edit → re-validate → replay, discard, reveal (audited), bulk
replay, the audit log and destination health pages."""

from __future__ import annotations

import asyncio
import json
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from hub import audit
from hub.audit import AuditAction
from hub.console.app import create_app
from hub.console.auth import ADMIN, READ_ONLY, User, UserDB, UsersError, hash_password, parse_users, user_line
from hub.demo import DemoFeed, FeedItem
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.logs import REDACTED
from hub.pipeline import Pipeline, Record
from hub.registry import Registry
from hub.routing import Router
from hub.topics import DEADLETTER, INBOUND, Header
from hub.validation import ShaclValidator

pytestmark = pytest.mark.kafka

PASSWORD = "correct horse battery"


def _users(path: Path | None = None) -> UserDB:
    cheap = lambda: hash_password(PASSWORD, iterations=1000)  # noqa: E731 - fast tests; production uses 600k
    users = {"anna": User("anna", ADMIN, cheap()), "lea": User("lea", READ_ONLY, cheap())}
    if path is None:
        return UserDB(users=users)
    path.write_text("\n".join(user_line(u.name, u.role, u.password_hash) for u in users.values()) + "\n")
    return UserDB(path)


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "every page with a form carries a CSRF token"
    return m.group(1)


@contextmanager
def client_for(bootstrap: str, user: str | None, users: UserDB | None = None) -> Iterator[TestClient]:
    app = create_app(bootstrap, users or _users(), secret="test-secret")
    with TestClient(app) as client:
        if user is not None:
            login = client.get("/login")
            r = client.post("/login", data={"csrf": csrf(login.text), "username": user, "password": PASSWORD, "next": "/"})
            assert r.status_code == 200 and "Afmelden" in r.text, r.text[:500]
        yield client


@pytest.fixture(scope="module")
def dead(kafka_bootstrap: str) -> dict[str, tuple[FeedItem, str]]:
    """Dead letters the hub's own pipeline makes of broken meldingen, on the real topic."""
    registry, index = Registry.load(None), MunicipalityIndex.load()
    pipeline = Pipeline(ShaclValidator(), Router(registry, index))
    feed = DemoFeed(registry, index, seed=time.time_ns())

    def broken(kind: str) -> FeedItem:
        while True:
            item = feed.broken(kind)
            if item.reporter:
                return item

    items = {name: broken("shape-violation") for name in ("edit", "readonly", "discard", "reveal", "bulk-1", "bulk-2")}
    outs = []
    for n, item in enumerate(items.values()):
        out = pipeline.process(Record(item.value, item.key, item.headers, INBOUND, 0, 9000 + n)).output
        assert out.topic == DEADLETTER
        outs.append((out.key, out.value, out.headers))
    from hub.deadletters import ensure_dlq_topics

    asyncio.run(ensure_dlq_topics(kafka_bootstrap))
    asyncio.run(produce(kafka_bootstrap, DEADLETTER, outs))
    got = asyncio.run(collect(kafka_bootstrap, [DEADLETTER], {i.melding_id for i in items.values()}, timeout=30, settle=0.2))
    ids = {d.melding_id: f"{d.partition}/{d.offset}" for d in got}
    return {name: (item, ids[item.melding_id]) for name, item in items.items()}


def _no_reporter(text: str, item: FeedItem) -> None:
    for secret in item.reporter or ():
        assert secret not in text


# --- no Kafka needed ----------------------------------------------------------------------


def test_pages_need_a_login_and_changes_need_a_session(kafka_bootstrap: str) -> None:
    with client_for(kafka_bootstrap, None) as c:
        r = c.get("/deadletters?state=open", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fdeadletters")
        assert c.post("/deadletters/0/0/replay", data={}).status_code == 401
        page = c.get("/login")
        assert page.status_code == 200 and "Aanmelden" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        bad = c.post("/login", data={"csrf": csrf(page.text), "username": "anna", "password": "fout", "next": "/"})
        assert bad.status_code == 401 and "verkeerd wachtwoord" in bad.text
        assert c.post("/login", data={"username": "anna", "password": PASSWORD}).status_code == 403, "no CSRF token"
        ok = c.post(
            "/login",
            data={"csrf": csrf(page.text), "username": "anna", "password": PASSWORD, "next": "//evil.example/"},
            follow_redirects=False,
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/", "no open redirect"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie


def test_repeated_failed_logins_are_slowed_down(kafka_bootstrap: str) -> None:
    with client_for(kafka_bootstrap, None) as c:
        token = csrf(c.get("/login").text)
        codes = [c.post("/login", data={"csrf": token, "username": "lea", "password": f"x{i}"}).status_code for i in range(6)]
        assert codes == [401] * 5 + [429]


def test_users_file_hashes_roles_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "users"
    db = _users(path)
    assert db.authenticate("anna", PASSWORD) and not db.authenticate("anna", "nope") and not db.authenticate("nobody", PASSWORD)
    assert PASSWORD not in path.read_text()
    # lowering a role in the file takes effect without a restart
    text = path.read_text().replace("anna:admin:", "anna:read-only:")
    path.write_text(text)
    import os

    os.utime(path, (time.time() + 5, time.time() + 5))
    assert db.get("anna").role == READ_ONLY
    for bad in ("anna:admin", "anna:root:pbkdf2_sha256$1$a$b", "anna:admin:plaintext", "a b:admin:pbkdf2_sha256$1$a$b"):
        with pytest.raises(UsersError):
            parse_users(bad)
    with pytest.raises(UsersError):
        hash_password("kort")


# --- with dead letters ----------------------------------------------------------------------


def test_read_only_sees_but_cannot_change_anything(kafka_bootstrap: str, dead: dict[str, tuple[FeedItem, str]]) -> None:
    item, dl = dead["readonly"]
    with client_for(kafka_bootstrap, "lea") as c:
        page = c.get(f"/deadletters/{dl}")
        assert page.status_code == 200
        assert "titel" in page.text and "statusdatum" in page.text
        assert 'id="document"' not in page.text and 'id="replay-original"' not in page.text, "no editor, no buttons"
        _no_reporter(page.text, item)
        token = csrf(page.text)
        for action, data in (
            ("replay", {}),
            ("validate", {"document": "{}"}),
            ("discard", {"reason": "test"}),
            ("reveal", {"reason": "nieuwsgierig"}),
        ):
            r = c.post(f"/deadletters/{dl}/{action}", data={"csrf": token, **data})
            assert r.status_code == 403, action
            assert "Geen toegang" in r.text
        assert c.post("/deadletters/bulk-replay", data={"csrf": token, "ids": dl, "scope": "ids"}).status_code == 403
        listed = c.get("/deadletters", params={"melding_id": item.melding_id})
        assert listed.status_code == 200 and 'name="ids"' not in listed.text
        assert ">open<" in listed.text, "nothing changed"
        assert c.get("/audit").status_code == 200


def test_admin_edits_revalidates_and_replays(kafka_bootstrap: str, dead: dict[str, tuple[FeedItem, str]]) -> None:
    item, dl = dead["edit"]
    with client_for(kafka_bootstrap, "anna") as c:
        listed = c.get("/deadletters", params={"melding_id": item.melding_id, "state": "open"})
        assert f'href="/deadletters/{dl}"' in listed.text
        page = c.get(f"/deadletters/{dl}")
        _no_reporter(page.text, item)
        m = re.search(r'<textarea name="document" id="document"[^>]*>(.*?)</textarea>', page.text, re.S)
        assert m
        import html

        doc = json.loads(html.unescape(m.group(1)))
        assert doc["melder"] == REDACTED
        token = csrf(page.text)

        doc["titel"] = "Zwerfvuil langs de Leie"
        still_bad = c.post(f"/deadletters/{dl}/validate", data={"csrf": token, "document": json.dumps(doc)})
        assert still_bad.status_code == 422 and 'id="check-failed"' in still_bad.text and "statusdatum" in still_bad.text

        doc["heeftStatus"][0]["statusdatum"] = "2026-11-20T08:15:00+01:00"
        good = c.post(f"/deadletters/{dl}/validate", data={"csrf": token, "document": json.dumps(doc)})
        assert good.status_code == 200 and 'id="check-ok"' in good.text
        _no_reporter(good.text, item)

        done = c.post(f"/deadletters/{dl}/replay", data={"csrf": token, "document": json.dumps(doc), "use_edit": "1"})
        assert done.status_code == 200 and "Opnieuw aangeboden als nieuw bericht meldingen.inbound/" in done.text
        assert "opnieuw aangeboden" in done.text and 'id="replay-edited"' not in done.text
        twice = c.post(f"/deadletters/{dl}/replay", data={"csrf": token})
        assert "Was al opnieuw aangeboden door anna" in twice.text

    replayed = [
        m for m in asyncio.run(collect(kafka_bootstrap, [INBOUND], {item.melding_id}, timeout=20, settle=0.5))
        if m.headers.get(Header.REPLAYED_FROM) == f"{DEADLETTER}/{dl}"
    ]  # fmt: skip
    assert len(replayed) == 1
    body = json.loads(replayed[0].value)
    assert body["titel"] == "Zwerfvuil langs de Leie" and body["melder"] == json.loads(item.value)["melder"]
    assert replayed[0].headers[Header.REPLAYED_BY] == "anna"


def test_discard_needs_a_reason(kafka_bootstrap: str, dead: dict[str, tuple[FeedItem, str]]) -> None:
    item, dl = dead["discard"]
    with client_for(kafka_bootstrap, "anna") as c:
        token = csrf(c.get(f"/deadletters/{dl}").text)
        r = c.post(f"/deadletters/{dl}/discard", data={"csrf": token, "reason": "  "})
        assert "Geef een reden" in r.text and ">open" in r.text
        r = c.post(f"/deadletters/{dl}/discard", data={"csrf": token, "reason": "test van de melder"})
        assert "Afgevoerd." in r.text and re.search(r'id="state">afgevoerd\s+— anna', r.text)
        r = c.post(f"/deadletters/{dl}/replay", data={"csrf": token})
        assert "Niet opnieuw aangeboden" in r.text and "discarded by anna" in r.text
        log = c.get("/audit").text
        assert "test van de melder" in log and f"{DEADLETTER}/{dl}" in log


def test_revealing_personal_data_is_audited_first(kafka_bootstrap: str, dead: dict[str, tuple[FeedItem, str]]) -> None:
    item, dl = dead["reveal"]
    with client_for(kafka_bootstrap, "anna") as c:
        page = c.get(f"/deadletters/{dl}")
        _no_reporter(page.text, item)
        shown = c.post(f"/deadletters/{dl}/reveal", data={"csrf": csrf(page.text), "reason": "melder belde"})
        assert shown.status_code == 200 and 'id="revealed"' in shown.text
        assert item.reporter and item.reporter[0] in shown.text
        assert item.reporter[0] not in c.get(f"/deadletters/{dl}").text, "only that one response"
    events = [
        e for e in asyncio.run(audit.read(kafka_bootstrap, limit=None))
        if e.action == AuditAction.REVEALED and e.target == f"{DEADLETTER}/{dl}"
    ]  # fmt: skip
    assert len(events) == 1 and events[0].by == "anna" and events[0].channel == "console" and events[0].reason == "melder belde"


def test_bulk_replay_runs_as_a_job_and_the_overview_pages_render(kafka_bootstrap: str, dead: dict[str, tuple[FeedItem, str]]) -> None:
    ids = [dead["bulk-1"][1], dead["bulk-2"][1]]
    with client_for(kafka_bootstrap, "anna") as c:
        token = csrf(c.get("/deadletters").text)
        r = c.post("/deadletters/bulk-replay", data={"csrf": token, "scope": "ids", "ids": ids, "rate": "10"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
        deadline = time.monotonic() + 30
        while True:
            job = c.get(r.headers["location"])
            if "Klaar" in job.text or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert "Klaar" in job.text and "2 opnieuw aangeboden" in job.text, job.text
        overview = c.get("/")
        assert overview.status_code == 200 and "Open per foutsoort" in overview.text
        health = c.get("/destinations")
        assert health.status_code == 200 and "meldingen.authority.kortrijk" in health.text
        log = c.get("/audit")
        assert all(f"{DEADLETTER}/{i}" in log.text for i in ids)
