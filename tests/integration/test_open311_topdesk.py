"""End to end on a real broker, every part started as a user starts it:

``meldhub hub run`` · ``meldhub hub status-run`` · ``meldhub adapters serve open311`` ·
``meldhub adapters run topdesk-kortrijk`` — and a TOPdesk stand-in (started here) that enforces
the TOPdesk request contract (Basic auth, the derived JSON schema, externalNumber).

A melding POSTed to the Open311 endpoint for a Kortrijk street (wegdefect → kortrijk, which this
test configures to use TOPdesk) becomes one incident; the stand-in's operator changes its status;
within seconds ``GET requests/{id}.json`` shows it. The same melding delivered twice — or a create
whose answer is lost — never makes a second incident.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hub.demo_run import HubProcess, meldhub_executable
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.kafka_local import free_port
from hub.refusal import parse_history
from hub.topics import TRIAGE, Header, authority_topic
from tests.adapters.topdesk_standin import TopdeskStandIn

pytestmark = pytest.mark.kafka

API_KEY = "e2e-fixmystreet-key"
USER, PASSWORD = "hub-operator", "e2e-app-password"


class Service:
    """A ``meldhub …`` child process with its output in a log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.args, self.log, self.env = name, args, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def wait_for(self, ready: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _status_run_command() -> list[str]:
    return [*meldhub_executable(), "hub", "status-run"]


def _adapters_yaml(path: Path, port: int, topdesk_url: str) -> Path:
    doc: dict[str, Any] = {
        "version": "test",
        "adapters": [
            {
                "id": "open311-e2e",
                "vendor": "open311",
                "indiener": "https://w3id.org/meldingen-hub/id/organisatie/meldingen-hub-zwvl",
                "port": port,
                "clients": [{"name": "fixmystreet", "api_key_env": "E2E_OPEN311_KEY"}],
            },
            {
                "id": "topdesk-kortrijk",
                "vendor": "topdesk",
                "authority": "kortrijk",
                "base_url": topdesk_url,
                "username_env": "E2E_TOPDESK_USER",
                "password_env": "E2E_TOPDESK_PASSWORD",
                "start_from": "latest",  # the shared test broker holds other tests' Kortrijk meldingen
                "poll_interval_s": 0.5,
                "poll_overlap_s": 5,
                "timeout_s": 5,
                "retry": {"max_attempts": 4, "base_delay_s": 0.2, "max_delay_s": 1},
                "processing_statuses": {
                    "Geregistreerd": "557", "In behandeling": "496", "Opgelost": "133", "Gesloten": "956",
                    "Niet bevoegd": None,
                },
                "refusal_statuses": {"Niet bevoegd": "Privéweg: niet voor de stad"},
                "new_incident_status": "Geregistreerd",
                "workflow": {
                    "Geregistreerd": ["In behandeling", "Opgelost", "Niet bevoegd", "Gesloten"],
                    "In behandeling": ["Opgelost", "Niet bevoegd", "Gesloten"],
                    "Opgelost": ["Gesloten"],
                    "Niet bevoegd": ["Gesloten"],
                    "Gesloten": [],
                },
                "categories": {"wegdefect": {"category": {"name": "Openbaar domein"}, "subcategory": {"name": "Wegen"}}},
            },
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _request(base: str, rid: str) -> dict[str, Any] | None:
    response = httpx.get(f"{base}/requests/{rid}.json", timeout=5)
    return response.json()[0] if response.status_code == 200 else None


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout:.0f}s (last: {last!r})")


def test_open311_to_topdesk_and_the_status_back_to_the_citizen(kafka_bootstrap: str, tmp_path: Path) -> None:
    standin = TopdeskStandIn(USER, PASSWORD, initial_status="Geregistreerd")
    topdesk_url, topdesk_server = standin.serve()
    port = free_port()
    config = _adapters_yaml(tmp_path / "adapters.yaml", port, topdesk_url)
    env = {
        **os.environ,
        "E2E_OPEN311_KEY": API_KEY,
        "E2E_TOPDESK_USER": USER,
        "E2E_TOPDESK_PASSWORD": PASSWORD,
        "MELDHUB_STATE_DIR": str(tmp_path / "state"),
    }
    common = ["--bootstrap-servers", kafka_bootstrap]
    adapters = [*meldhub_executable(), "adapters"]
    status = Service("status stage", [*_status_run_command(), *common], tmp_path / "status.log", env)
    topdesk = Service("topdesk adapter", [*adapters, "run", "topdesk-kortrijk", "--config", str(config), *common],
                      tmp_path / "topdesk.log", env)
    open311 = Service("open311 adapter", [*adapters, "serve", "open311", "--port", str(port), "--config", str(config), *common],
                      tmp_path / "open311.log", env)
    hub = HubProcess(kafka_bootstrap, tmp_path / "hub.log")
    base = f"http://127.0.0.1:{port}"
    try:
        for service in (status, topdesk, open311):
            service.start()
        hub.start()
        status.wait_for(lambda: '"status.ready"' in status.text())
        topdesk.wait_for(lambda: '"topdesk.ready"' in topdesk.text())

        def open311_up() -> bool:
            try:
                return httpx.get(f"{base}/services.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        open311.wait_for(open311_up)

        # a citizen reports a pothole on a Kortrijk street
        lon, lat = MunicipalityIndex.load().representative_point("34022")
        form = {
            "api_key": API_KEY,
            "service_code": "wegdefect",
            "lat": f"{lat:.6f}",
            "long": f"{lon:.6f}",
            "address_string": "Doorniksestraat 12, 8500 Kortrijk",
            "description": "Diepe put in de rijweg voor nummer 12.",
            "email": "an.vermeulen@example.be",
            "first_name": "An",
            "last_name": "Vermeulen",
            "attribute[fixmystreet_id]": "e2e-1",
        }
        response = httpx.post(f"{base}/requests.json", data=form, timeout=30)
        assert response.status_code == 200, response.text
        rid = response.json()[0]["service_request_id"]

        # it reaches TOPdesk as one incident, through the hub's routing
        (incident,) = _eventually(lambda: standin.by_external(rid), 60, "the incident in TOPdesk")
        assert incident["subcategory"] == {"name": "Wegen"} and incident["caller"]["dynamicName"] == "An Vermeulen"
        assert standin.rejections == [], "the adapter broke the TOPdesk contract"

        # Toegewezen aan flows back to the citizen's channel
        assigned = _eventually(lambda: (r := _request(base, rid)) and r["status_notes"] and r, 30, "Toegewezen aan")
        assert assigned["status"] == "open" and incident["number"] in assigned["status_notes"]
        assert assigned["agency_responsible"] == "Stad Kortrijk"

        # the operator solves it in TOPdesk; within seconds the citizen sees it
        standin.set_status(rid, "Opgelost")
        changed_at = time.monotonic()
        solved = _eventually(lambda: (r := _request(base, rid)) and r["status"] == "closed" and r, 30, "Opgelost")
        assert solved["status_notes"] == "Uw melding werd opgelost."
        assert time.monotonic() - changed_at < 15

        # the same melding delivered twice (at-least-once): still one incident
        lookups = standin.lookups[rid]
        (routed,) = asyncio.run(collect(kafka_bootstrap, [authority_topic("kortrijk")], {rid}, timeout=30, settle=0.5))
        asyncio.run(produce(kafka_bootstrap, authority_topic("kortrijk"), [(routed.key, routed.value, tuple(
            (k, v.encode()) for k, v in routed.headers.items()))]))
        _eventually(lambda: standin.lookups[rid] > lookups, 30, "the re-delivered melding looked up")
        # the same report POSTed again by the app: recognised at the door
        again = httpx.post(f"{base}/requests.json", data=form, timeout=30)
        assert again.json()[0]["service_request_id"] == rid

        # a create whose answer is lost: retried by looking up first, still one incident
        standin.lose_create_responses = 1
        second = httpx.post(f"{base}/requests.json", data={**form, "attribute[fixmystreet_id]": "e2e-2"}, timeout=30)
        rid2 = second.json()[0]["service_request_id"]
        _eventually(lambda: standin.by_external(rid2), 60, "the second incident")
        _eventually(lambda: (r := _request(base, rid2)) and r["status_notes"] and r, 30, "Toegewezen aan (2)")

        # "not ours": the operator hands the second melding back; Kortrijk was its only candidate, so
        # the hub sends it to the region's triage topic and the citizen is told so
        standin.set_status(rid2, "Niet bevoegd")
        triaged = _eventually(
            lambda: asyncio.run(collect(kafka_bootstrap, [TRIAGE], {rid2}, timeout=2, settle=0)), 60, "the triage record"
        )
        (record,) = triaged
        (hop,) = parse_history(record.headers[Header.ROUTE_HISTORY])
        assert (hop.authority, hop.reason) == ("kortrijk", "Privéweg: niet voor de stad")
        told = _eventually(
            lambda: (r := _request(base, rid2)) and "triagedienst" in (r["status_notes"] or "") and r, 30,
            "the citizen told about triage",
        )
        assert told["status"] == "open"

        time.sleep(1.0)  # give a wrongful second create the chance to happen
        assert standin.creates[rid] == 1 and len(standin.by_external(rid)) == 1
        assert standin.creates[rid2] == 1 and len(standin.by_external(rid2)) == 1
        assert standin.rejections == []
        for service in (status, topdesk, open311):
            assert service.proc is not None and service.proc.poll() is None, f"{service.name} died"
        for secret in ("Vermeulen", "an.vermeulen@example.be", PASSWORD, API_KEY):
            for service in (status, topdesk, open311):
                assert secret not in service.text(), f"{secret!r} in the {service.name} log"
    finally:
        for service in (open311, topdesk, status):
            service.stop()
        hub.stop()
        topdesk_server.shutdown()
        topdesk_server.server_close()
