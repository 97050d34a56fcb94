"""A vendor outage on a real broker: TOPdesk answers 503 for 20 s, is then slower than the
adapter's client timeout for a while, then healthy — with 200 meldingen queued on its authority
topic. The TOPdesk adapter runs as a user starts it (``meldhub adapters run``). After recovery
every melding is filed exactly once (by externalNumber), every one has one Toegewezen aan, and
nothing is dead-lettered: the adapter paused the destination instead of giving up on meldingen.
Also a 401 variant (the tenant rotated the application password): few requests while paused,
then everything filed once."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.demo import DemoFeed
from hub.demo_run import meldhub_executable
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.registry import Registry
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters.topdesk_standin import TopdeskStandIn
from tests.integration.test_open311_topdesk import Service

pytestmark = pytest.mark.kafka

USER, PASSWORD = "hub-operator", "outage-app-password"
KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"


def _adapters_yaml(path: Path, adapter_id: str, url: str) -> Path:
    doc: dict[str, Any] = {
        "version": "test",
        "adapters": [{
            "id": adapter_id,
            "vendor": "topdesk",
            "authority": "kortrijk",
            "base_url": url,
            "username_env": "OUTAGE_TOPDESK_USER",
            "password_env": "OUTAGE_TOPDESK_PASSWORD",
            "start_from": "latest",  # the shared test broker holds other tests' Kortrijk meldingen
            "timeout_s": 1,
            "retry": {"max_attempts": 3, "base_delay_s": 0.2, "max_delay_s": 1},
            "pause": {"pause_for_s": 2, "max_pause_s": 5},
            "poll_interval_s": 30,
            "categories": {"wegdefect": {"category": {"name": "Openbaar domein"}, "subcategory": {"name": "Wegen"}}},
        }],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _meldingen(n: int, seed: int) -> list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]]:
    feed = DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=seed)
    out = []
    for _ in range(n):
        item = feed.valid(category="wegdefect", nis="34022")
        doc = json.loads(item.value)
        doc["behandelaar"] = KORTRIJK
        headers = ((Header.SOURCE, b"open311-zwvl"), (Header.MELDING_ID, item.key), (Header.AUTHORITY, b"kortrijk"))
        out.append((item.key, json.dumps(doc).encode(), headers))
    return out


class Adapter:
    """The stand-in over HTTP and ``meldhub adapters run`` against it."""

    def __init__(self, bootstrap: str, tmp_path: Path, standin: TopdeskStandIn) -> None:
        self.standin = standin
        url, self.server = standin.serve()
        adapter_id = f"topdesk-outage-{uuid.uuid4().hex[:8]}"
        config = _adapters_yaml(tmp_path / "adapters.yaml", adapter_id, url)
        env = {**os.environ, "OUTAGE_TOPDESK_USER": USER, "OUTAGE_TOPDESK_PASSWORD": PASSWORD,
               "MELDHUB_STATE_DIR": str(tmp_path / "state")}
        self.service = Service("topdesk adapter", [*meldhub_executable(), "adapters", "run", adapter_id, "--config",
                                                   str(config), "--bootstrap-servers", bootstrap],
                               tmp_path / "topdesk.log", env)

    def __enter__(self) -> Adapter:
        self.service.start()
        self.service.wait_for(lambda: '"topdesk.ready"' in self.service.text())
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop()
        self.server.shutdown()
        self.server.server_close()

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.service.text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == name:
                out.append(doc)
        return out


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def _assert_filed_exactly_once(bootstrap: str, adapter: Adapter, ids: set[str]) -> None:
    standin = adapter.standin
    _wait(lambda: len([m for m in ids if standin.creates.get(m)]) == len(ids), 180, f"all {len(ids)} meldingen filed")
    time.sleep(1.0)  # room for a wrongful second create
    doubled = {m: standin.creates[m] for m in ids if standin.creates[m] != 1 or len(standin.by_external(m)) != 1}
    assert not doubled, f"filed more than once: {list(doubled.items())[:3]}"
    statuses = asyncio.run(collect(bootstrap, [STATUS], ids, timeout=60, settle=2.0))
    counts = Counter(d.melding_id for d in statuses)
    assert set(counts) == ids and set(counts.values()) == {1}, "one Toegewezen aan per melding"
    dead = asyncio.run(collect(bootstrap, [DEADLETTER], ids, timeout=3, settle=0))
    assert dead == [], f"{len(dead)} meldingen dead-lettered during an outage"
    assert adapter.service.proc is not None and adapter.service.proc.poll() is None, "the adapter died"


def test_an_outage_then_slowness_files_every_melding_once_and_dead_letters_none(kafka_bootstrap: str, tmp_path: Path) -> None:
    standin = TopdeskStandIn(USER, PASSWORD)
    with Adapter(kafka_bootstrap, tmp_path, standin) as adapter:
        standin.down = 503
        records = _meldingen(200, seed=503)
        ids = {k.decode() for k, _, _ in records}
        asyncio.run(produce(kafka_bootstrap, authority_topic("kortrijk"), records))
        outage_started = time.monotonic()
        _wait(lambda: adapter.events("destination.paused"), 30, "the destination paused")
        time.sleep(max(0.0, 20 - (time.monotonic() - outage_started)))
        requests_in_outage = standin.requests
        assert requests_in_outage < 40, f"{requests_in_outage} requests in a 20 s outage: hammered"
        standin.down = None
        standin.slow_s = 1.6  # answers after the client's 1 s timeout (and still creates what it was asked)
        time.sleep(12)
        assert not standin.creates or all(v == 1 for v in standin.creates.values())
        standin.slow_s = 0.0
        _assert_filed_exactly_once(kafka_bootstrap, adapter, ids)
        paused = adapter.events("destination.paused")
        assert {e["error_class"] for e in paused} <= {"vendor-unavailable", "vendor-timeout"}
        assert "vendor-timeout" in {e["error_class"] for e in paused}, "the slow phase paused on timeouts"
        assert adapter.events("destination.resumed")
        assert USER not in adapter.service.text() and PASSWORD not in adapter.service.text()


def test_a_rotated_password_pauses_without_hammering_and_then_files_every_melding_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    standin = TopdeskStandIn(USER, "the-tenants-new-password")
    with Adapter(kafka_bootstrap, tmp_path, standin) as adapter:
        records = _meldingen(50, seed=401)
        ids = {k.decode() for k, _, _ in records}
        asyncio.run(produce(kafka_bootstrap, authority_topic("kortrijk"), records))
        _wait(lambda: adapter.events("destination.paused"), 30, "the destination paused")
        time.sleep(10)
        assert standin.requests <= 6, f"{standin.requests} requests in 10 s of 401s"  # first try + probes at 2, 4, 5 s …
        assert standin.incidents == {}
        (first, *_) = adapter.events("destination.paused")
        assert first["error_class"] == "vendor-auth" and first["destination"] == "kortrijk"
        standin.password = PASSWORD  # the admin sets the new password (here: the tenant restores ours)
        _assert_filed_exactly_once(kafka_bootstrap, adapter, ids)
