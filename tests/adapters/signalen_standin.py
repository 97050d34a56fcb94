"""A Signalen stand-in that ENFORCES the request contract the adapter is held to.

Used as an ``httpx.MockTransport`` (unit tests, no network) and as a real HTTP server on loopback
(end to end). It checks the bearer token, validates every ``POST /signals/v1/private/signals/``
body against :func:`create_contract` — Signalen's published ``V1PrivateSignalPost`` (the OpenAPI
file in ``shared/vendor-specs/signalen/``) with its ``extra_properties`` validated by Signalen's own
``extra_properties.json`` — requires the sub-category to exist in Signalen's category tree
(``shared/data/signalen-categories/``) and the ``source`` to exist, and answers with signals that
validate against Signalen's test-suite schema ``jsonschema-get_signals_v1_private_signals_pk.json``.
Lists are HAL pages with ``source``, ``created_after``, ``updated_after`` and ``ordering``. A real
Signalen happily creates duplicates; the stand-in counts creates per melding id so tests can prove
there are none. Faults can be injected.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jsonschema
import yaml

from adapters.signalen.config import STATE_NAMES

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SPECS = SHARED / "vendor-specs" / "signalen"
OPENAPI = SPECS / "signals-v1-openapi-2023-08.yaml"
EXTRA_PROPERTIES = SPECS / "jsonschema-extra_properties.json"
DETAIL_SCHEMA = SPECS / "jsonschema-get_signals_v1_private_signals_pk.json"
CATEGORIES = SHARED / "data" / "signalen-categories" / "categories.fixture.json"
SIGNALS = "/signals/v1/private/signals/"


# ---------------------------------------------------------------------------------------------
# the contract, from Signalen's published files
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


def _to_jsonschema(node: Any, components: dict[str, Any], strict: bool) -> Any:
    """OpenAPI 3.0 schema object → JSON Schema: ``$ref`` inlined, ``nullable`` → a null type, and
    (strict) ``additionalProperties: false`` where properties are declared."""
    if isinstance(node, list):
        return [_to_jsonschema(n, components, strict) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _to_jsonschema(components[node["$ref"].rsplit("/", 1)[-1]], components, strict)
    out = {k: _to_jsonschema(v, components, strict) for k, v in node.items()
           if k not in ("nullable", "example", "examples", "description", "deprecated")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("nullable") and "enum" in out:
        out["enum"] = [*out["enum"], None]
    if strict and out.get("type") in ("object", ["object", "null"]) and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def extra_properties_schema() -> dict[str, Any]:
    schema = json.loads(EXTRA_PROPERTIES.read_text(encoding="utf-8"))
    schema.pop("$schema", None)
    return schema


@lru_cache(maxsize=1)
def create_contract() -> dict[str, Any]:
    """``V1PrivateSignalPost`` as JSON Schema, with two documented corrections of the 2023 OpenAPI:

    1. ``location.geometrie`` is declared ``type: string`` while its own ``properties``/``required``
       describe a GeoJSON Point object, and every Signalen example sends an object → object;
    2. ``extra_properties`` is declared ``type: object`` while Signalen's serializer validates it with
       ``extra_properties.json`` (an array of question/answer items) and its example requests send an
       array → that schema.
    """
    components = openapi()["components"]["schemas"]
    schema = _to_jsonschema(components["V1PrivateSignalPost"], components, strict=True)
    geometrie = schema["properties"]["location"]["properties"]["geometrie"]
    assert geometrie["type"] == "string" and "coordinates" in geometrie["properties"], "the spec changed: revisit patch 1"
    geometrie["type"] = "object"
    assert schema["properties"]["extra_properties"]["type"] == "object", "the spec changed: revisit patch 2"
    schema["properties"]["extra_properties"] = extra_properties_schema()
    return schema


@lru_cache(maxsize=1)
def detail_schema() -> dict[str, Any]:
    return json.loads(DETAIL_SCHEMA.read_text(encoding="utf-8"))


def validate_create(body: Any) -> None:
    jsonschema.Draft7Validator(create_contract()).validate(body)


def validate_signal(signal: Any) -> None:
    jsonschema.Draft4Validator(detail_schema()).validate(signal)


@lru_cache(maxsize=1)
def category_tree() -> dict[tuple[str, str], dict[str, Any]]:
    """(main slug, sub slug) → {name, main name} of Signalen's category fixture."""
    rows = {r["pk"]: r["fields"] for r in json.loads(CATEGORIES.read_text(encoding="utf-8"))}
    out = {}
    for f in rows.values():
        if f["parent"] is not None and f.get("is_active", True):
            parent = rows[f["parent"]]
            out[(parent["slug"], f["slug"])] = {"name": f["name"], "main": parent["name"]}
    return out


def example_signal(state: str = "m") -> dict[str, Any]:
    """A private signal detail answer assembled from the published OpenAPI's own ``example`` values
    (``V1PrivateSignalDetailGet`` and the nested schemas it references), with ``status.state`` set."""

    components = openapi()["components"]["schemas"]

    def build(node: Any) -> Any:
        if isinstance(node, dict) and "$ref" in node:
            return build(components[node["$ref"].rsplit("/", 1)[-1]])
        if not isinstance(node, dict):
            return None
        if "example" in node and node.get("type") != "array":
            return copy.deepcopy(node["example"])
        if node.get("type") == "object" or "properties" in node:
            return {k: build(v) for k, v in (node.get("properties") or {}).items()}
        if node.get("type") == "array":
            return copy.deepcopy(node.get("example", []))
        if "enum" in node:
            return node["enum"][0]
        return None

    signal = build(components["V1PrivateSignalDetailGet"])
    signal["status"]["state"] = state
    return signal


# ---------------------------------------------------------------------------------------------
# the stand-in
# ---------------------------------------------------------------------------------------------
def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


class SignalenStandIn:
    def __init__(self, token: str = "signalen-test-token", sources: tuple[str, ...] = ("Meldingen Hub",),
                 page_size: int = 100, reference_id: str = "meldingen_hub_melding_id") -> None:
        self.token = token
        self.sources = set(sources)
        self.page_size = page_size
        self.reference_id = reference_id
        self.signals: dict[int, dict[str, Any]] = {}
        self.creates: dict[str, int] = defaultdict(int)
        self.reads: dict[int, int] = defaultdict(int)
        self.lookups = 0
        """List requests with ``created_after`` (the adapter's look-ups)."""
        self.faults: list[str | int] = []
        """Consumed one per request: an HTTP status, "timeout" or "malformed"."""
        self.lose_create_responses = 0
        self.rejections: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._last = datetime.now(UTC) - timedelta(seconds=1)
        self._next_id = 1

    # -- admin (the authority's operator) ----------------------------------------------------------
    def _tick(self) -> datetime:
        now = max(datetime.now(UTC), self._last + timedelta(milliseconds=5))
        self._last = now
        return now

    def by_reference(self, melding_id: str) -> list[dict[str, Any]]:
        return [s for s in self.signals.values() if self._reference(s) == melding_id]

    def _reference(self, signal: dict[str, Any]) -> str | None:
        for item in signal.get("extra_properties") or []:
            if isinstance(item, dict) and item.get("id") == self.reference_id:
                return item.get("answer")
        return None

    def set_state(self, melding_id: str, state: str, text: str | None = None, send_email: bool = False) -> dict[str, Any]:
        with self._lock:
            (signal,) = self.by_reference(melding_id)
            now = _iso(self._tick())
            signal["status"] = {
                "text": text, "user": "behandelaar@example.org", "state": state,
                "state_display": STATE_NAMES.get(state, state), "target_api": None, "extra_properties": None,
                "send_email": send_email, "created_at": now,
            }
            signal["updated_at"] = now
            signal["_display"] = f"{signal['id']} - {state} - None - {signal['created_at']}"
            validate_signal(signal)
            return copy.deepcopy(signal)

    # -- the API ------------------------------------------------------------------------------------
    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append((method, url))
            fault = self.faults.pop(0) if self.faults else None
            if fault == "timeout":
                return -1, {}, b""
            if isinstance(fault, int):
                return fault, {"Content-Type": "application/json"}, b'{"detail": "injected"}'
            if fault == "malformed":
                return 200, {"Content-Type": "text/html"}, b"<html>gateway</html>"
            if headers.get("authorization") != f"Bearer {self.token}":
                return self._json(401, {"detail": "Authentication credentials were not provided."})
            status, out_headers, payload = self._route(method, url, body)
            if status == 201 and self.lose_create_responses > 0:
                self.lose_create_responses -= 1
                return 502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"
            return status, out_headers, payload

    @staticmethod
    def _json(status: int, doc: Any) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()

    def _reject(self, reason: str, doc: Any) -> tuple[int, dict[str, str], bytes]:
        self.rejections.append(reason)
        return self._json(400, doc)

    def _route(self, method: str, url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        path = parts.path
        origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://signalen.test"
        if path.rstrip("/") == SIGNALS.rstrip("/"):
            if method == "POST":
                return self._create(body, origin)
            if method == "GET":
                return self._list(parse_qs(parts.query), origin)
        if path.startswith(SIGNALS) and method == "GET":
            rest = path[len(SIGNALS):].strip("/")
            if rest.isdigit() and int(rest) in self.signals:
                self.reads[int(rest)] += 1
                return self._json(200, self.signals[int(rest)])
            return self._json(404, {"detail": "Niet gevonden."})
        return self._json(405 if path.startswith(SIGNALS) else 404, {"detail": "not here"})

    def _create(self, body: bytes, origin: str) -> tuple[int, dict[str, str], bytes]:
        try:
            doc = json.loads(body)
        except ValueError:
            return self._reject("not JSON", {"detail": "JSON parse error"})
        try:
            validate_create(doc)
        except jsonschema.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path)
            return self._reject(f"{where}: {e.message}", {where or "non_field_errors": [e.message[:200]]})
        path = doc["category"]["sub_category"]
        bits = path.strip("/").split("/")
        if len(bits) != 8 or bits[:5] != ["signals", "v1", "public", "terms", "categories"] or bits[6] != "sub_categories":
            return self._reject(f"bad category URL {path}", {"category": {"sub_category": ["Ongeldige hyperlink."]}})
        category = category_tree().get((bits[5], bits[7]))
        if category is None:
            return self._reject(f"unknown category {path}", {"category": {"sub_category": ["Object bestaat niet."]}})
        if doc.get("source") not in self.sources:
            return self._reject(f"unknown source {doc.get('source')!r}", {"source": ["Invalid source given"]})
        sid = self._next_id
        self._next_id += 1
        now = _iso(self._tick())
        loc = doc["location"]
        address = loc.get("address")
        full_address = None
        if isinstance(address, dict) and "huisnummer" in address:
            full_address = {"openbare_ruimte": "", "huisnummer": 0, "huisletter": "", "huisnummer_toevoeging": "",
                            "postcode": "", "woonplaats": ""} | address
        reporter = doc["reporter"]
        signal: dict[str, Any] = {
            "_links": {
                "curies": {"name": "sia", "href": f"{origin}/signals/v1/relations"},
                "self": {"href": f"{origin}{SIGNALS}{sid}"},
                "archives": {"href": f"{origin}{SIGNALS}{sid}/history"},
                "sia:attachments": {"href": f"{origin}{SIGNALS}{sid}/attachments"},
                "sia:pdf": {"href": f"{origin}{SIGNALS}{sid}/pdf"},
            },
            "_display": f"{sid} - m - None - {now}",
            "id": sid,
            "id_display": f"SIG-{sid}",
            "signal_id": str(uuid.uuid4()),
            "source": doc["source"],
            "text": doc["text"],
            "text_extra": doc.get("text_extra") or "",
            "status": {"text": None, "user": None, "state": "m", "state_display": "Gemeld", "target_api": None,
                       "extra_properties": None, "send_email": False, "created_at": now},
            "location": {
                "id": sid, "stadsdeel": None, "buurt_code": None, "area_type_code": None, "area_code": None,
                "area_name": None, "address": full_address, "address_text": "",
                "geometrie": loc["geometrie"], "extra_properties": None, "created_by": None, "bag_validated": False,
            },
            "category": {
                "sub": category["name"], "sub_slug": bits[7], "main": category["main"], "main_slug": bits[5],
                "category_url": f"{origin}{path}", "departments": "ASC", "created_by": None, "text": None,
                "deadline": None, "deadline_factor_3": None,
            },
            "reporter": {"email": reporter.get("email", ""), "phone": reporter.get("phone", ""),
                         "sharing_allowed": bool(reporter.get("sharing_allowed")), "allows_contact": True},
            "priority": {"priority": (doc.get("priority") or {}).get("priority", "normal"), "created_by": None},
            "type": {"code": (doc.get("type") or {}).get("code", "SIG"), "created_at": now, "created_by": None},
            "created_at": now,
            "updated_at": now,
            "incident_date_start": doc["incident_date_start"],
            "incident_date_end": doc.get("incident_date_end"),
            "operational_date": None,
            "has_attachments": False,
            "extra_properties": doc.get("extra_properties"),
            "notes": [],
            "directing_departments": [],
            "routing_departments": None,
            "attachments": [],
            "has_parent": False,
            "has_children": False,
            "assigned_user_email": None,
        }
        validate_signal(signal)
        self.signals[sid] = signal
        self.creates[self._reference(signal) or "?"] += 1
        return self._json(201, signal)

    def _list(self, query: dict[str, list[str]], origin: str) -> tuple[int, dict[str, str], bytes]:
        def one(name: str) -> str | None:
            return (query.get(name) or [None])[0]

        items = list(self.signals.values())
        try:
            if one("source"):
                items = [s for s in items if s["source"] in query["source"]]
            if one("created_after"):
                self.lookups += 1
                since = datetime.fromisoformat(one("created_after").replace("Z", "+00:00"))  # type: ignore[union-attr]
                items = [s for s in items if datetime.fromisoformat(s["created_at"]) >= since]
            if one("updated_after"):
                since = datetime.fromisoformat(one("updated_after").replace("Z", "+00:00"))  # type: ignore[union-attr]
                items = [s for s in items if datetime.fromisoformat(s["updated_at"]) >= since]
        except ValueError:
            return self._json(400, {"created_after": ["Voer een geldige datum/tijd in."]})
        ordering = one("ordering") or "-created_at"
        key = ordering.lstrip("-")
        if key not in ("id", "created_at", "updated_at"):
            return self._json(400, {"ordering": [f"unsupported in the stand-in: {ordering}"]})
        items.sort(key=lambda s: (s[key], s["id"]), reverse=ordering.startswith("-"))
        page = int(one("page") or "1")
        start = (page - 1) * self.page_size
        chunk = items[start : start + self.page_size]

        def link(p: int) -> dict[str, str | None]:
            q = {k: v[0] for k, v in query.items() if k != "page"} | {"page": str(p)}
            return {"href": f"{origin}{SIGNALS}?{urlencode(q)}"}

        doc = {
            "_links": {
                "self": link(page),
                "next": link(page + 1) if start + self.page_size < len(items) else {"href": None},
                "previous": link(page - 1) if page > 1 else {"href": None},
            },
            "count": len(items),
            "results": chunk,
        }
        return self._json(200, doc)

    # -- transports ---------------------------------------------------------------------------------
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
                host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
                status, headers, payload = standin.handle(
                    self.command, f"http://{host}{self.path}", {k.lower(): v for k, v in self.headers.items()}, body
                )
                if status == -1:
                    status, payload = 504, b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _do

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server
