"""End to end on a real broker, every part started as a user starts it:

``meldhub hub run`` · ``meldhub hub status-run`` · ``meldhub adapters serve open311`` ·
``meldhub adapters run signalen-menen|email-lendelede|webhook-wevelgem`` — with a Signalen stand-in
(bearer token, Signalen's published request schema), a real SMTP server (aiosmtpd) and a home-grown
system's webhook receiver (signature checked, one melding per Idempotency-Key), all started here.

The test's registry (``tests/data/registry-no-layers.yaml``: category × municipality only) sends a
pothole to the municipality it lies in; the test's adapters.yaml gives Menen Signalen, Lendelede
e-mail and Wevelgem a webhook. For each: the melding POSTed to Open311 reaches the authority's
system, the authority changes the status there (the Signalen operator; the e-mail's receiver
through the signed link; the system through a signed webhook), and Open311 ``GET
requests/{id}.json`` shows it. The same melding delivered twice makes no second signal, e-mail or
accepted webhook delivery.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hub.categories import iri_for
from hub.demo_run import HubProcess, meldhub_executable
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.kafka_local import free_port
from hub.registry import Registry
from hub.routing import Router
from hub.topics import authority_topic
from tests.adapters.email_standin import SmtpStandIn, status_link, text_of
from tests.adapters.signalen_standin import SignalenStandIn
from tests.adapters.webhook_standin import WebhookReceiver, sign, status_body
from tests.integration.test_open311_topdesk import Service, _eventually, _request

pytestmark = [pytest.mark.kafka, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

REGISTRY = Path(__file__).resolve().parents[1] / "data" / "registry-no-layers.yaml"
API_KEY = "e2e-fixmystreet-key"
TOKEN = "e2e-signalen-token"
LINK_KEY = "e2e-link-key-0123456789abcdef0123456789"
WEBHOOK_KEY = "e2e-webhook-key-0123456789abcdef012345"
PLACES = {"menen": "34027", "lendelede": "34025", "wevelgem": "34041"}
FAST = {"timeout_s": 5, "retry": {"max_attempts": 4, "base_delay_s": 0.2, "max_delay_s": 1}, "start_from": "latest"}


def _adapters_yaml(path: Path, ports: dict[str, int], signalen_url: str, smtp_port: int, webhook_url: str) -> Path:
    doc: dict[str, Any] = {
        "version": "test",
        "adapters": [
            {"id": "open311-e2e", "vendor": "open311", "port": ports["open311"],
             "indiener": "https://w3id.org/meldingen-hub/id/organisatie/meldingen-hub-zwvl",
             "clients": [{"name": "fixmystreet", "api_key_env": "E2E_OPEN311_KEY"}]},
            {"id": "signalen-menen", "vendor": "signalen", "authority": "menen", "base_url": signalen_url,
             "token_env": "E2E_SIGNALEN_TOKEN", "poll_interval_s": 0.5, "poll_overlap_s": 5, **FAST},
            {"id": "email-lendelede", "vendor": "email", "authority": "lendelede",
             "recipients": ["meldingen@lendelede.example"], "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
             "smtp_security": "none", "from_address": "noreply@hub.example", "reply_domain": "hub.example",
             "public_url": f"http://127.0.0.1:{ports['email']}", "port": ports["email"],
             "link_secret_env": "E2E_LINK_KEY", **FAST},
            {"id": "webhook-wevelgem", "vendor": "webhook", "authority": "wevelgem", "url": webhook_url,
             "secret_env": "E2E_WEBHOOK_KEY", "port": ports["webhook"], **FAST},
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _closed(base: str, rid: str) -> dict[str, Any] | None:
    r = _request(base, rid)
    return r if r and r["status"] == "closed" else None


def test_signalen_email_and_webhook_round_trips(kafka_bootstrap: str, tmp_path: Path) -> None:
    # the routing the test relies on: a pothole goes to the municipality it lies in
    index = MunicipalityIndex.load()
    router = Router(Registry.load(REGISTRY), index)
    points = {a: index.representative_point(nis) for a, nis in PLACES.items()}
    for authority, point in points.items():
        assert router.route([iri_for("wegdefect")], [point]).authority_id == authority

    signalen = SignalenStandIn(TOKEN)
    signalen_url, signalen_server = signalen.serve()
    receiver = WebhookReceiver(WEBHOOK_KEY.encode())
    webhook_url, webhook_server = receiver.serve()
    smtp = SmtpStandIn().start()
    ports = {name: free_port() for name in ("open311", "email", "webhook")}
    config = _adapters_yaml(tmp_path / "adapters.yaml", ports, signalen_url, smtp.port, webhook_url)
    env = {
        **os.environ,
        "E2E_OPEN311_KEY": API_KEY, "E2E_SIGNALEN_TOKEN": TOKEN, "E2E_LINK_KEY": LINK_KEY, "E2E_WEBHOOK_KEY": WEBHOOK_KEY,
        "MELDHUB_STATE_DIR": str(tmp_path / "state"), "MELDHUB_REGISTRY": str(REGISTRY),
    }
    common = ["--config", str(config), "--bootstrap-servers", kafka_bootstrap]
    adapters = [*meldhub_executable(), "adapters"]
    status = Service("status stage", [*meldhub_executable(), "hub", "status-run", "--bootstrap-servers", kafka_bootstrap],
                     tmp_path / "status.log", env)
    workers = {
        name: Service(f"{name} adapter", [*adapters, "run", aid, *common], tmp_path / f"{name}.log", env)
        for name, aid in (("signalen", "signalen-menen"), ("email", "email-lendelede"), ("webhook", "webhook-wevelgem"))
    }
    open311 = Service("open311 adapter", [*adapters, "serve", "open311", *common], tmp_path / "open311.log", env)
    hub = HubProcess(kafka_bootstrap, tmp_path / "hub.log", env={"MELDHUB_REGISTRY": str(REGISTRY)})
    everyone = [status, *workers.values(), open311]
    base = f"http://127.0.0.1:{ports['open311']}"
    try:
        for service in everyone:
            service.start()
        hub.start()
        status.wait_for(lambda: '"status.ready"' in status.text())
        for name, worker in workers.items():
            worker.wait_for(lambda w=worker, n=name: f'"{n}.ready"' in w.text())
        open311.wait_for(lambda: _up(f"{base}/services.json"))
        for port in (ports["email"], ports["webhook"]):
            assert _up(f"http://127.0.0.1:{port}/health")

        def report(authority: str, n: int) -> tuple[str, dict[str, str]]:
            lon, lat = points[authority]
            form = {
                "api_key": API_KEY, "service_code": "wegdefect", "lat": f"{lat:.6f}", "long": f"{lon:.6f}",
                "address_string": f"Kerkstraat {n}, {authority.capitalize()}",
                "description": f"Diepe put in de rijweg voor nummer {n}.",
                "email": "an.vermeulen@example.be", "first_name": "An", "last_name": "Vermeulen",
                "attribute[fixmystreet_id]": f"e2e-swe-{n}",
            }
            response = httpx.post(f"{base}/requests.json", data=form, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()[0]["service_request_id"], form

        rid1, _ = report("menen", 1)
        rid2, _ = report("lendelede", 2)
        rid3, _ = report("wevelgem", 3)

        # --- Signalen: one signal, Toegewezen aan back, the operator closes it --------------------------
        (signal,) = _eventually(lambda: signalen.by_reference(rid1), 60, "the signal in Signalen")
        assert signal["reporter"]["email"] == "an.vermeulen@example.be" and signal["source"] == "Meldingen Hub"
        assert signalen.rejections == [], "the adapter broke Signalen's request contract"
        assigned = _eventually(lambda: (r := _request(base, rid1)) and r["status_notes"] and r, 30, "Toegewezen aan (Signalen)")
        assert assigned["status"] == "open" and signal["id_display"] in assigned["status_notes"]
        assert assigned["agency_responsible"] == "Stad Menen"
        signalen.set_state(rid1, "o", text="De put is hersteld.", send_email=True)
        solved = _eventually(lambda: _closed(base, rid1), 30, "Opgelost (Signalen)")
        assert solved["status_notes"] == "De put is hersteld."

        # --- e-mail: one message, the receiver follows the signed link and sets Opgelost -----------------
        (mail,) = _eventually(lambda: smtp.for_melding(rid2), 60, "the e-mail")
        assert "An Vermeulen" in text_of(mail) and mail["Message-ID"] == f"<melding-{rid2}@hub.example>"
        _eventually(lambda: (r := _request(base, rid2)) and r["status_notes"] and r, 30, "Toegewezen aan (e-mail)")
        link = status_link(mail)
        page = httpx.get(link, timeout=10)
        assert page.status_code == 200 and "Status van een melding" in page.text and "Vermeulen" not in page.text
        assert re.search(r'value="133"(?! disabled)', page.text)
        done = httpx.post(link, data={"status": "133", "toelichting": "Put gedicht."}, timeout=20)
        assert done.status_code == 200 and "Opgelost" in done.text
        solved = _eventually(lambda: _closed(base, rid2), 30, "Opgelost (e-mail)")
        assert solved["status_notes"] == "Put gedicht." and solved["agency_responsible"] == "Gemeente Lendelede"

        # --- webhook: delivered signed, the system answers with a signed status ---------------------------
        _eventually(lambda: rid3 in receiver.accepted, 60, "the webhook delivery")
        assert receiver.rejections == [], "the adapter's signature was refused"
        _eventually(lambda: (r := _request(base, rid3)) and r["status_notes"] and r, 30, "Toegewezen aan (webhook)")
        inbound = f"http://127.0.0.1:{ports['webhook']}/webhook/status"
        body = status_body(rid3, "opgelost", "Hersteld door de technische dienst.")
        forged = httpx.post(inbound, content=body, headers={"X-Meldingen-Signature": sign(b"wrong key", body)}, timeout=10)
        assert forged.status_code == 401
        signature = sign(WEBHOOK_KEY.encode(), body)
        accepted = httpx.post(inbound, content=body, headers={"X-Meldingen-Signature": signature}, timeout=20)
        assert accepted.status_code == 202, accepted.text
        assert httpx.post(inbound, content=body, headers={"X-Meldingen-Signature": signature}, timeout=10).status_code == 409
        solved = _eventually(lambda: _closed(base, rid3), 30, "Opgelost (webhook)")
        assert solved["status_notes"] == "Hersteld door de technische dienst."

        # --- the same meldingen delivered twice (at least once): nothing made or accepted twice ----------
        routed = asyncio.run(collect(kafka_bootstrap, [authority_topic(a) for a in PLACES], {rid1, rid2, rid3},
                                     timeout=30, settle=0.5))
        assert len(routed) == 3
        reads = signalen.reads[signal["id"]]
        for r in routed:
            topic = authority_topic(r.headers["authority"])
            asyncio.run(produce(kafka_bootstrap, topic, [(r.key, r.value, tuple((k, v.encode()) for k, v in r.headers.items()))]))
        _eventually(lambda: signalen.reads[signal["id"]] > reads, 30, "the re-delivered melding re-read in Signalen")
        _eventually(lambda: '"email.already_sent"' in workers["email"].text(), 30, "the re-delivered e-mail skipped")
        _eventually(lambda: '"webhook.already_delivered"' in workers["webhook"].text(), 30, "the re-delivered webhook skipped")
        time.sleep(1.0)  # give a wrongful second delivery the chance to happen
        assert signalen.creates[rid1] == 1 and len(signalen.by_reference(rid1)) == 1
        assert len(smtp.for_melding(rid2)) == 1
        assert receiver.deliveries[rid3] == 1 and list(receiver.accepted).count(rid3) == 1
        for rid in (rid1, rid2, rid3):
            assert _request(base, rid)["status"] == "closed"  # type: ignore[index]

        for service in everyone:
            assert service.proc is not None and service.proc.poll() is None, f"{service.name} died"
        for secret in ("Vermeulen", "an.vermeulen@example.be", TOKEN, LINK_KEY, WEBHOOK_KEY, API_KEY):
            for service in everyone:
                assert secret not in service.text(), f"{secret!r} in the {service.name} log"
    finally:
        for service in (open311, *workers.values(), status):
            service.stop()
        hub.stop()
        smtp.stop()
        for server in (signalen_server, webhook_server):
            server.shutdown()
            server.server_close()
