"""``meldhub dlq`` as an admin runs it, on a real broker with a real hub (``meldhub hub run``).

Broken meldingen go through the hub and become dead letters; the CLI lists, shows, replays,
discards and exports them as subprocesses. Personal data never shows unless asked for, and
asking leaves an audit record. Everything is scoped with ``--since`` / ``--melding-id`` to this
module's own meldingen: the broker is shared with the other tests.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub import audit
from hub.audit import AuditAction
from hub.demo import DemoFeed, FeedItem
from hub.demo_run import HubProcess, meldhub_executable
from hub.geo import MunicipalityIndex
from hub.kafka_io import Delivered, collect, produce
from hub.logs import REDACTED
from hub.registry import Registry
from hub.topics import DEADLETTER, INBOUND, Header, authority_topic
from tests.oracle import expected_owner

pytestmark = pytest.mark.kafka

# the registry tests/oracle.py is written for (no geographic layers), as in tests/integration
REGISTRY = Path(__file__).parent / "data" / "registry-no-layers.yaml"
HUB_ENV = {"MELDHUB_REGISTRY": str(REGISTRY)}


@dataclass(frozen=True)
class Dead:
    item: FeedItem
    letter: Delivered

    @property
    def id(self) -> str:
        return f"{self.letter.partition}/{self.letter.offset}"

    @property
    def ref(self) -> str:
        return f"{DEADLETTER}/{self.id}"


@dataclass(frozen=True)
class World:
    bootstrap: str
    since: str
    dead: dict[str, Dead]
    hub: HubProcess


def _with_reporter(feed: DemoFeed, kind: str) -> FeedItem:
    while True:
        item = feed.broken(kind)
        if item.reporter:
            return item


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    feed = DemoFeed(Registry.load(REGISTRY), MunicipalityIndex.load(), seed=time.time_ns())
    items = {
        "sv-show": _with_reporter(feed, "shape-violation"),
        "sv-fix": _with_reporter(feed, "shape-violation"),
        "sv-bad-edit": _with_reporter(feed, "shape-violation"),
        "sv-discard": feed.broken("shape-violation"),
        "nu-twice": _with_reporter(feed, "not-utf8"),
        "nj-race": feed.broken("not-json"),
        "or-1": feed.broken("outside-region"),
        "or-2": feed.broken("outside-region"),
    }
    hub = HubProcess(kafka_bootstrap, tmp_path_factory.mktemp("dlq-hub") / "hub.log", env=HUB_ENV).start()
    try:
        asyncio.run(produce(kafka_bootstrap, INBOUND, ((i.key, i.value, i.headers) for i in items.values())))
        got = asyncio.run(collect(kafka_bootstrap, [DEADLETTER], {i.melding_id for i in items.values()}, timeout=120, settle=0.5))
        by_id = {d.melding_id: d for d in got}
        assert set(by_id) == {i.melding_id for i in items.values()}, "every broken melding was dead-lettered"
        yield World(kafka_bootstrap, since, {name: Dead(i, by_id[i.melding_id]) for name, i in items.items()}, hub)
    finally:
        hub.stop()


def meldhub(world: World, *args: str, ok: bool = True, admin: str = "tester") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MELDHUB_ADMIN": admin, "COLUMNS": "250"}
    proc = subprocess.run(
        [*meldhub_executable(), "dlq", *args, "--bootstrap-servers", world.bootstrap],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, f"meldhub dlq {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _no_personal_data(text: str, *items: FeedItem) -> None:
    for item in items:
        for secret in item.reporter or ():
            assert secret not in text, f"personal data {secret!r} in the output"


def _audit_events(world: World, action: str, by: str) -> list[audit.AuditEvent]:
    """This module's audit events (the broker may be shared and long-lived)."""
    since = datetime.fromisoformat(world.since)
    return [
        e
        for e in asyncio.run(audit.read(world.bootstrap, limit=None))
        if e.action == action and e.by == by and e.timestamp is not None and e.timestamp >= since
    ]


def test_list_shows_this_runs_dead_letters_without_personal_data(world: World) -> None:
    out = meldhub(world, "list", "--since", world.since, "--limit", "0").stdout
    for d in world.dead.values():
        assert d.item.melding_id in out
        assert d.id in out
    assert "shape-violation" in out and "not-utf8" in out and "outside-region" in out
    _no_personal_data(out, *(d.item for d in world.dead.values()))

    one = meldhub(world, "list", "--melding-id", world.dead["nu-twice"].item.melding_id).stdout
    assert world.dead["nu-twice"].item.melding_id in one
    assert world.dead["sv-show"].item.melding_id not in one
    only = meldhub(world, "list", "--since", world.since, "--error-class", "outside-region").stdout
    assert world.dead["or-1"].item.melding_id in only and world.dead["sv-show"].item.melding_id not in only


def test_show_prints_headers_violations_and_the_redacted_payload_and_reveal_is_audited(world: World) -> None:
    d = world.dead["sv-show"]
    out = meldhub(world, "show", d.id).stdout
    assert d.ref in out and "open" in out
    for text in ("error-class", "first-seen", "source", "original-topic", Header.MELDING_ID):
        assert text in out
    assert "SHACL violations" in out and "titel" in out and "statusdatum" in out and "is required but missing" in out
    assert REDACTED in out
    _no_personal_data(out, d.item)

    assert not _audit_events(world, AuditAction.REVEALED, "auditor-show")
    revealed = meldhub(world, "show", d.id, "--reveal-personal-data", "--as", "auditor-show", "--reason", "vraag melder").stdout
    assert "PERSONAL DATA SHOWN" in revealed
    assert d.item.reporter and d.item.reporter[0] in revealed
    (event,) = _audit_events(world, AuditAction.REVEALED, "auditor-show")
    assert event.target == d.ref and event.melding_id == d.item.melding_id and event.reason == "vraag melder"


def test_replaying_twice_produces_one_new_inbound_message_and_a_refailure_keeps_first_seen(world: World) -> None:
    d = world.dead["nu-twice"]
    first = meldhub(world, "replay", d.id, "--as", "anna").stdout
    assert f"replayed {d.id} → {INBOUND}/" in first
    second = meldhub(world, "replay", d.id, "--as", "bert").stdout
    assert "already-replayed" in second and "by anna" in second

    wanted = {d.item.melding_id}
    inbound = [m for m in asyncio.run(collect(world.bootstrap, [INBOUND], wanted, timeout=30, settle=1)) if m.headers.get(Header.REPLAYED_FROM)]
    assert len(inbound) == 1, "a dead letter is replayed at most once"
    (m,) = inbound
    assert m.headers[Header.REPLAYED_FROM] == d.ref
    assert m.headers[Header.REPLAYED_BY] == "anna"
    assert m.headers[Header.SOURCE] == d.letter.headers[Header.SOURCE]
    assert m.headers[Header.FIRST_SEEN] == d.letter.headers[Header.FIRST_SEEN]
    assert m.key == d.item.melding_id.encode()
    assert m.value == d.item.value, "the original bytes, untouched"

    # the hub fails it again (still not UTF-8): a NEW dead letter, the old one unchanged
    deadline = time.monotonic() + 60
    again: list[Delivered] = []
    while not again and time.monotonic() < deadline:
        letters = asyncio.run(collect(world.bootstrap, [DEADLETTER], wanted, timeout=10, settle=0.5))
        again = [x for x in letters if x.headers.get(Header.REPLAYED_FROM) == d.ref]
    assert len(again) == 1
    assert again[0].headers[Header.FIRST_SEEN] == d.letter.headers[Header.FIRST_SEEN]
    assert again[0].value == d.item.value
    listed = meldhub(world, "list", "--melding-id", d.item.melding_id, "--state", "replayed").stdout
    assert d.id in listed and "anna" in listed


def test_two_admins_replaying_at_once_produce_one_message(world: World) -> None:
    d = world.dead["nj-race"]
    env = {**os.environ, "COLUMNS": "250"}
    procs = [
        subprocess.Popen(
            [*meldhub_executable(), "dlq", "replay", d.id, "--as", who, "--bootstrap-servers", world.bootstrap],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for who in ("racer-1", "racer-2")
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("1 replayed" in o for o in outputs) == 1, outputs
    assert sum("1 already replayed" in o for o in outputs) == 1, outputs
    inbound = [
        m for m in asyncio.run(collect(world.bootstrap, [INBOUND], {d.item.melding_id}, timeout=20, settle=1))
        if m.headers.get(Header.REPLAYED_FROM) == d.ref
    ]  # fmt: skip
    assert len(inbound) == 1, "the transaction fences the other admin: one replay"


def test_an_edited_melding_is_validated_first_and_then_reaches_its_owner(world: World, tmp_path: Path) -> None:
    bad, fix = world.dead["sv-bad-edit"], world.dead["sv-fix"]

    doc = json.loads(meldhub(world, "show", bad.id, "--payload-only").stdout)
    assert doc["melder"] == REDACTED, "the payload to edit is redacted too"
    doc["titel"] = "Zwerfvuil aan de bushalte"  # statusdatum still "gisteren"
    path = tmp_path / "still-bad.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    refused = meldhub(world, "replay", bad.id, "--edited", str(path), ok=False)
    assert refused.returncode == 1
    assert "statusdatum" in refused.stdout and "refused" in refused.stdout
    _no_personal_data(refused.stdout + refused.stderr, bad.item)

    doc = json.loads(meldhub(world, "show", fix.id, "--payload-only").stdout)
    doc["titel"] = "Zwerfvuil aan de bushalte"
    doc["heeftStatus"][0]["statusdatum"] = "2026-11-20T08:15:00+01:00"
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    done = meldhub(world, "replay", fix.id, "--edited", str(path), "--as", "anna", "--reason", "titel aangevuld").stdout
    assert f"replayed {fix.id}" in done and "(edited)" in done

    slug = doc["type"][0].rsplit("/", 1)[-1]
    owner = authority_topic(expected_owner(slug, fix.item.municipality_nis))
    routed = asyncio.run(collect(world.bootstrap, [owner], {fix.item.melding_id}, timeout=60, settle=1))
    assert len(routed) == 1, "the fixed melding reaches its owner once"
    (m,) = routed
    body = json.loads(m.value)
    assert body["titel"] == "Zwerfvuil aan de bushalte"
    assert body["melder"] == json.loads(fix.item.value)["melder"], "the owner gets the reporter back"
    assert m.headers[Header.REPLAYED_FROM] == fix.ref and m.headers[Header.REPLAYED_BY] == "anna"
    assert m.headers[Header.FIRST_SEEN] == fix.letter.headers[Header.FIRST_SEEN]

    nothing = [x for x in asyncio.run(collect(world.bootstrap, [INBOUND], {bad.item.melding_id}, timeout=5, settle=0.5)) if x.headers.get(Header.REPLAYED_FROM)]
    assert not nothing, "a refused edit produces nothing"


def test_discard_needs_a_reason_and_a_discarded_dead_letter_is_not_replayed(world: World) -> None:
    d = world.dead["sv-discard"]
    missing = meldhub(world, "discard", d.id, ok=False)
    assert missing.returncode != 0 and "reason" in missing.stderr
    out = meldhub(world, "discard", d.id, "--reason", "dubbele melding", "--as", "anna").stdout
    assert f"discarded {d.id}" in out
    listed = meldhub(world, "list", "--since", world.since, "--state", "discarded").stdout
    assert d.item.melding_id in listed
    refused = meldhub(world, "replay", d.id, ok=False)
    assert refused.returncode == 1 and "discarded by anna" in refused.stdout
    events = [e for e in _audit_events(world, AuditAction.DISCARDED, "anna") if e.target == d.ref]
    assert len(events) == 1 and events[0].reason == "dubbele melding"


def test_bulk_replay_by_filter_keeps_to_the_rate(world: World) -> None:
    ors = [world.dead["or-1"], world.dead["or-2"]]
    dry = meldhub(world, "replay", "--error-class", "outside-region", "--since", world.since, "--dry-run").stdout
    assert "2 dead letter(s) selected (dry run)" in dry
    out = meldhub(world, "replay", "--error-class", "outside-region", "--since", world.since, "--rate", "2", "--as", "bulk-anna").stdout
    assert "2 replayed, 0 already replayed, 0 refused" in out
    events = sorted((e for e in _audit_events(world, AuditAction.REPLAYED, "bulk-anna")), key=lambda e: e.at)
    assert {e.target for e in events} == {d.ref for d in ors}
    gap = (datetime.fromisoformat(events[1].at) - datetime.fromisoformat(events[0].at)).total_seconds()
    assert gap >= 0.4, f"--rate 2 means at least 0.5 s apart, got {gap:.2f}"
    # the hub fails them again (new dead letters, which a bulk replay would pick up), but the
    # replayed ones are no longer open and are never selected again
    again = meldhub(world, "replay", "--error-class", "outside-region", "--since", world.since, "--dry-run").stdout
    for d in ors:
        assert f"would replay {d.id} " not in again


def test_export_is_redacted_unless_revealed_and_revealing_is_audited(world: World, tmp_path: Path) -> None:
    items = [d.item for d in world.dead.values()]
    jsonl = meldhub(world, "export", "--format", "jsonl", "--since", world.since).stdout
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert {r["melding_id"] for r in rows} >= {i.melding_id for i in items}
    _no_personal_data(jsonl, *items)
    show = next(r for r in rows if r["melding_id"] == world.dead["sv-show"].item.melding_id)
    assert show["document"]["melder"] == REDACTED and {v["field"] for v in show["violations"]} >= {"titel"}
    assert show["state"] == "open"

    out = tmp_path / "dl.csv"
    meldhub(world, "export", "--format", "csv", "--since", world.since, "-o", str(out))
    text = out.read_text(encoding="utf-8")
    _no_personal_data(text, *items)
    table = list(csv.DictReader(io.StringIO(text)))
    assert {r["melding_id"] for r in table} >= {i.melding_id for i in items}
    assert any("titel: is required but missing" in r["violations"] for r in table)

    assert not _audit_events(world, AuditAction.REVEALED, "exporter")
    full = meldhub(world, "export", "--since", world.since, "--reveal-personal-data", "--as", "exporter", "--reason", "GDPR-inzage").stdout
    assert world.dead["sv-show"].item.reporter[0] in full
    (event,) = _audit_events(world, AuditAction.REVEALED, "exporter")
    assert event.details["format"] == "jsonl" and event.details["revealed"] is True and event.reason == "GDPR-inzage"
    assert _audit_events(world, AuditAction.EXPORTED, "tester"), "redacted exports are audited too"
