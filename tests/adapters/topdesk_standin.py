"""A TOPdesk stand-in that ENFORCES the request contract the adapter is held to.

Used two ways: as an ``httpx.MockTransport`` (unit tests of the worker, no network) and as a real
HTTP server on loopback (the end-to-end test). It checks Basic auth, the JSON body against
:data:`adapters.topdesk.schema.INCIDENT_CREATE`, answers like TOPdesk (201 on create; 200/206/204
on lists; incidents shaped like TOPdesk's own test data), records every create per
``externalNumber`` (a real TOPdesk would happily create duplicates — the stand-in counts them
so tests can prove there are none), and can inject faults.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema

from adapters.topdesk.schema import INCIDENT_CREATE

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EXAMPLE = SHARED / "vendor-specs" / "topdesk" / "example-incident-response.json"


def topdesk_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


class TopdeskStandIn:
    def __init__(self, username: str = "hub-operator", password: str = "app-password", initial_status: str = "Logged") -> None:
        self.username = username
        self.password = password
        self.initial_status = initial_status
        self.incidents: dict[str, dict[str, Any]] = {}
        self.creates: dict[str, int] = defaultdict(int)
        self.lookups: dict[str, int] = defaultdict(int)
        self.faults: list[str | int] = []
        """Consumed one per request: an HTTP status, "timeout" or "malformed"."""
        self.lose_create_responses = 0
        """Creates whose answer is lost (the incident exists, the client sees a 502)."""
        self.rejections: list[str] = []
        self.requests = 0
        """Every request received (also those answered with a fault)."""
        self.down: int | None = None
        """While set: every request is answered with this HTTP status (an outage)."""
        self.slow_s = 0.0
        """While > 0: every request is handled after this delay (a slow TOPdesk; real server only)."""
        self._lock = threading.Lock()
        self._last = datetime.now(UTC) - timedelta(seconds=1)
        self._template = json.loads(EXAMPLE.read_text(encoding="utf-8"))

    # -- admin (the authority's operator) ---------------------------------------------------------
    def _tick(self) -> datetime:
        now = max(datetime.now(UTC), self._last + timedelta(milliseconds=5))
        self._last = now
        return now

    def later(self, seconds: float) -> None:
        """Time passes at TOPdesk: the next change is dated at least ``seconds`` after the last
        (its queries compare whole seconds)."""
        with self._lock:
            self._last += timedelta(seconds=seconds)

    def set_status(self, external_number: str, name: str, closure: str | None = None) -> dict[str, Any]:
        with self._lock:
            incident = next(i for i in self.incidents.values() if i["externalNumber"] == external_number)
            incident["processingStatus"] = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "name": name}
            if closure:
                incident["closureCode"] = {"id": str(uuid.uuid4()), "name": closure}
            incident["modificationDate"] = topdesk_time(self._tick())
            return copy.deepcopy(incident)

    def by_external(self, external_number: str) -> list[dict[str, Any]]:
        return [i for i in self.incidents.values() if i["externalNumber"] == external_number]

    # -- the API ----------------------------------------------------------------------------------
    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
            down, slow = self.down, self.slow_s
        if down is not None:
            return down, {"Content-Type": "application/json"}, json.dumps([{"message": "outage"}]).encode()
        if slow > 0:
            time.sleep(slow)  # the request is still handled: a create may succeed after the client gave up
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
            if fault == "timeout":
                return -1, {}, b""  # the transport turns this into a timeout
            if isinstance(fault, int):
                return fault, {"Content-Type": "application/json"}, json.dumps([{"message": "injected"}]).encode()
            if fault == "malformed":
                return 200, {"Content-Type": "application/json"}, b"<html>proxy error</html>"
            status, out_headers, payload = self._route(method, url, headers, body)
            if status == 201 and self.lose_create_responses > 0:
                self.lose_create_responses -= 1
                return 502, {"Content-Type": "text/plain"}, b"Bad gateway"
            return status, out_headers, payload

    def _error(self, status: int, message: str) -> tuple[int, dict[str, str], bytes]:
        self.rejections.append(message)
        return status, {"Content-Type": "application/json"}, json.dumps([{"message": message}]).encode()

    def _route(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        auth = headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if auth != expected:
            return self._error(401, "Unauthorized: HTTP Basic with login name and application password required")
        parts = urlsplit(url)
        path = parts.path.rstrip("/")
        if path == "/tas/api/incidents" and method == "POST":
            return self._create(headers, body)
        if path == "/tas/api/incidents" and method == "GET":
            return self._list(parse_qs(parts.query))
        if path.startswith("/tas/api/incidents/id/") and method == "GET":
            incident = self.incidents.get(path.rsplit("/", 1)[-1])
            if incident is None:
                return self._error(404, "incident not found")
            return 200, {"Content-Type": "application/json"}, json.dumps(incident).encode()
        return self._error(404, f"no such resource {method} {path}")

    def _create(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if not headers.get("content-type", "").startswith("application/json"):
            return self._error(415, "Content-Type must be application/json")
        try:
            doc = json.loads(body)
        except ValueError:
            return self._error(400, "body is not JSON")
        errors = sorted(jsonschema.Draft202012Validator(INCIDENT_CREATE).iter_errors(doc), key=str)
        if errors:
            return self._error(400, "; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors)[:500])
        now = self._tick()
        incident = copy.deepcopy(self._template)
        iid = str(uuid.uuid4())
        number = f"I {now:%y%m} {len(self.incidents) + 1:03d}"
        incident.update(
            {
                "id": iid,
                "number": number,
                "requests": f"/tas/api/incidents/id/{iid}/requests",
                "action": f"/tas/api/incidents/id/{iid}/actions",
                "attachments": f"/tas/api/incidents/id/{iid}/attachments",
                "briefDescription": doc["briefDescription"],
                "request": doc["request"],
                "externalNumber": doc["externalNumber"],
                "caller": {"id": None, "dynamicName": doc.get("caller", {}).get("dynamicName"), "branch": None},
                "category": doc.get("category"),
                "subcategory": doc.get("subcategory"),
                "entryType": doc.get("entryType"),
                "processingStatus": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.initial_status)), "name": self.initial_status},
                "callDate": topdesk_time(now),
                "creationDate": topdesk_time(now),
                "modificationDate": topdesk_time(now),
            }
        )
        self.incidents[iid] = incident
        self.creates[doc["externalNumber"]] += 1
        return 201, {"Content-Type": "application/json"}, json.dumps(incident).encode()

    def _list(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        fiql = (query.get("query") or [""])[0]
        items = list(self.incidents.values())
        if fiql.startswith("externalNumber=="):
            wanted = fiql[len("externalNumber=="):]
            self.lookups[wanted] += 1
            items = [i for i in items if i["externalNumber"] == wanted]
        elif fiql.startswith("modificationDate=gt="):
            since = datetime.fromisoformat(fiql[len("modificationDate=gt="):].replace("Z", "+00:00"))
            items = [i for i in items if _parse(i["modificationDate"]) > since]
        elif fiql:
            return self._error(400, f"unsupported query {fiql!r}")
        if (query.get("sort") or [""])[0] == "modificationDate:asc":
            items.sort(key=lambda i: _parse(i["modificationDate"]))
        start = int((query.get("pageStart") or ["0"])[0])
        size = int((query.get("pageSize") or ["10"])[0])
        page = items[start : start + size]
        if not page:
            return 204, {}, b""
        status = 206 if start + size < len(items) else 200
        return status, {"Content-Type": "application/json"}, json.dumps(page).encode()

    # -- transports -------------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            status, headers, body = self.handle(
                request.method, str(request.url), {k.lower(): v for k, v in request.headers.items()}, request.content
            )
            if status == -1:
                raise httpx.ReadTimeout("injected timeout", request=request)
            return httpx.Response(status, headers=headers, content=body)

        return httpx.MockTransport(handler)

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        """Start on a free loopback port in a daemon thread; returns (base URL, server): call shutdown()."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = standin.handle(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                if status == -1:
                    status, payload = 504, b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _do

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text[:-2] + ":" + text[-2:] if text[-5] in "+-" else text)
