"""Open311 outbound on a real broker: ``meldhub adapters run open311-out-…`` as a subprocess, the
authority's Open311 server a real HTTP server (the hub's own GeoReport endpoint, in a thread).

A melding routed to Kortrijk becomes one service request and one ``Toegewezen aan``; the same
record delivered again makes nothing new; the server closing the request comes back as
``Afgerond``; the reporter's name and e-mail reach the server and never the adapter's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from adapters.open311.config import Config as ServerConfig
from adapters.open311.server import Open311App
from adapters.open311.store import Store as ServerStore
from hub.demo import DemoFeed
from hub.demo_run import meldhub_executable
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.kafka_local import free_port
from hub.registry import Registry
from hub.status import StatusChange
from hub.topics import STATUS, authority_topic
from tests.integration.test_open311_topdesk import Service, _eventually

pytestmark = pytest.mark.kafka

KEY = "e2e-open311-out-key-0123456789"
KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"


class Published(list):
    async def __call__(self, key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        self.append((key, value, dict(headers)))


def _statuses(bootstrap: str, mid: str, count: int) -> list[Any]:
    found = asyncio.run(collect(bootstrap, [STATUS], {mid}, timeout=2, settle=0, by_key=True))
    return found if len(found) >= count else []


def test_meldhub_adapters_run_files_once_and_brings_the_status_back(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = free_port()
    server_store = ServerStore(tmp_path / "server.sqlite3")
    published = Published()
    server_config = ServerConfig(id="open311-kortrijk", indiener=KORTRIJK, base_path="/v2",
                                 clients=[{"name": "meldingen-hub", "api_key_env": "UNUSED"}],
                                 reference_attributes=["meldingen_hub_id"])
    app = Open311App(server_config, server_store, published, {KEY: "meldingen-hub"}).app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    config = tmp_path / "adapters.yaml"
    config.write_text(yaml.safe_dump({"version": "test", "adapters": [{
        "id": "open311-out-e2e", "vendor": "open311-out", "authority": "kortrijk",
        "base_url": f"http://127.0.0.1:{port}/v2", "api_key_env": "E2E_OPEN311_OUT_KEY",
        "service_codes": {"wegdefect": "wegdefect"},
        "start_from": "latest",  # the shared test broker holds other tests' Kortrijk meldingen
        "poll_interval_s": 0.5, "timeout_s": 5,
        "retry": {"max_attempts": 3, "base_delay_s": 0.2, "max_delay_s": 1},
    }]}, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "E2E_OPEN311_OUT_KEY": KEY, "MELDHUB_STATE_DIR": str(tmp_path / "state")}
    adapter = Service("open311-out adapter", [*meldhub_executable(), "adapters", "run", "open311-out-e2e",
                                              "--config", str(config), "--bootstrap-servers", kafka_bootstrap],
                      tmp_path / "adapter.log", env)
    feed = DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=4301)  # unique per test: one shared broker
    item = feed.valid(category="wegdefect", nis="34022", anonymous=False)
    doc = json.loads(item.value)
    mid = item.key.decode()
    headers = (("melding-id", item.key), ("source", b"open311-zwvl"), ("authority", b"kortrijk"),
               ("route-rule", b"r-e2e"), ("content-type", b"application/ld+json"))
    record = (item.key, item.value, headers)
    try:
        adapter.start()
        adapter.wait_for(lambda: '"open311_out.ready"' in adapter.text())
        asyncio.run(produce(kafka_bootstrap, authority_topic("kortrijk"), [record]))

        (assigned,) = _eventually(lambda: _statuses(kafka_bootstrap, mid, 1), 60, "Toegewezen aan")
        change = StatusChange.from_jsonld(json.loads(assigned.value))
        assert change.status.notation == "557" and assigned.headers["source"] == "open311-zwvl"
        ((_, value, _),) = published
        made = json.loads(value)
        rid = made["identificator"]["notatie"]
        assert made["melder"]["naam"] == doc["melder"]["naam"], "the owner's server gets the reporter"

        # delivered again (at least once): recognised by the adapter's store, nothing new anywhere
        asyncio.run(produce(kafka_bootstrap, authority_topic("kortrijk"), [record]))
        _eventually(lambda: adapter.text().count('"open311_out.request_known"') >= 1, 30, "the redelivery handled")
        assert len(published) == 1

        # the authority closes it; the adapter's poll reports it
        assert server_store.apply(StatusChange.create(rid, "133", KORTRIJK, "De put werd hersteld."), "Stad Kortrijk")
        found = _eventually(lambda: _statuses(kafka_bootstrap, mid, 2), 30, "Afgerond")
        notations = [StatusChange.from_jsonld(json.loads(r.value)).status.notation for r in found]
        assert notations == ["557", "956"]
        time.sleep(1.5)  # a few more polls: nothing reported twice
        assert len(_statuses(kafka_bootstrap, mid, 2)) == 2
        assert adapter.proc is not None and adapter.proc.poll() is None, "the adapter died"
        for secret in (doc["melder"]["naam"], doc["melder"]["contactpunt"]["email"], KEY):
            assert secret not in adapter.text(), f"{secret!r} in the adapter's log"
    finally:
        adapter.stop()
        server.should_exit = True
        thread.join(10)
        server_store.close()
