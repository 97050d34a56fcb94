"""A home-grown system's webhook receiver, and its status sender — written from the documented
scheme (docs/adapters.md), independently of the adapter's own code, so the tests check the
adapter against the documentation and not against itself.

The receiver verifies ``X-Meldingen-Signature`` (``t=…,v1=<hex HMAC-SHA256(key, "<t>.<body>")>``,
5 minutes' tolerance), keeps one melding per ``Idempotency-Key`` (a repeat gets 200 with the first
answer), counts deliveries and acceptances, and can inject faults. Usable as an
``httpx.MockTransport`` and as a real loopback server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


def sign(key: bytes, body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def status_body(melding_id: str, status: str, text: str | None = None, when: str | None = None) -> bytes:
    doc: dict[str, Any] = {"melding_id": melding_id, "status": status}
    if text is not None:
        doc["beschrijving"] = text
    if when is not None:
        doc["statusdatum"] = when
    return json.dumps(doc).encode()


class WebhookReceiver:
    def __init__(self, key: bytes, tolerance_s: int = 300) -> None:
        self.key = key
        self.tolerance_s = tolerance_s
        self.accepted: dict[str, dict[str, Any]] = {}
        """Idempotency key → the melding (JSON-LD) accepted under it."""
        self.deliveries: dict[str, int] = defaultdict(int)
        self.rejections: list[str] = []
        self.faults: list[int | str] = []
        """Consumed one per request: an HTTP status, "timeout", or "lose" (accept, then answer 502)."""
        self._lock = threading.Lock()

    def handle(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
            if fault == "timeout":
                return -1, b""
            if isinstance(fault, int):
                return fault, b'{"error": "injected"}'
            if method != "POST":
                return 405, b""
            problem = self._check(headers, body)
            if problem:
                self.rejections.append(problem)
                return 401, json.dumps({"error": problem}).encode()
            key = headers.get("idempotency-key", "")
            self.deliveries[key] += 1
            if key not in self.accepted:
                self.accepted[key] = json.loads(body)
            answer = json.dumps({"reference": f"REF-{list(self.accepted).index(key) + 1}"}).encode()
            return (502, b"bad gateway") if fault == "lose" else (200, answer)

    def _check(self, headers: dict[str, str], body: bytes) -> str | None:
        if headers.get("content-type") != "application/ld+json":
            return f"content-type {headers.get('content-type')!r}"
        if not headers.get("idempotency-key"):
            return "no Idempotency-Key"
        fields = dict(p.split("=", 1) for p in headers.get("x-meldingen-signature", "").split(",") if "=" in p)
        if "t" not in fields or "v1" not in fields:
            return "no signature"
        if abs(time.time() - int(fields["t"])) > self.tolerance_s:
            return "stale signature"
        expected = hmac.new(self.key, f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["v1"]):
            return "bad signature"
        doc = json.loads(body)
        if doc.get("identificator", {}).get("notatie") != headers["idempotency-key"]:
            return "the Idempotency-Key is not the melding id"
        return None

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            status, body = self.handle(request.method, {k.lower(): v for k, v in request.headers.items()}, request.content)
            if status == -1:
                raise httpx.ReadTimeout("injected timeout", request=request)
            return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

        return httpx.MockTransport(handler)

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = receiver.handle("POST", {k.lower(): v for k, v in self.headers.items()}, body)
                if status == -1:
                    status, payload = 504, b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/meldingen", server
