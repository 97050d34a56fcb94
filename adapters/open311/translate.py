"""Open311 GeoReport v2 ↔ OSLO melding and status. PURE: no I/O, no clock (``now`` is passed in).

Inbound (an app submits): ``POST requests`` form fields → :class:`NewRequest` →
:func:`to_melding`, the hub's canonical JSON-LD (the shape of ``hub/demo.py``).
Outbound (the app reads back): a stored request and its MeldingStatuswaarde →
:func:`request_view` (GeoReport ``status`` open/closed + ``status_notes``) and, for
FixMyStreet, :func:`update_view` (``servicerequestupdates`` with the extended status).
Client side (reading another Open311 server): :func:`parse_service_requests` reads the
spec's JSON (leniently: the spec's own examples are not strict JSON) and XML, and
:func:`oslo_status_of` maps a request's status to MeldingStatuswaarde.
"""

from __future__ import annotations

import json
import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from adapters.base import StatusMapping
from adapters.open311.config import EXTENDED_STATUSES, OPEN_EXTENDED, Config
from hub.categories import Category, by_slug, categories
from hub.jsonld import HUB_CONTEXT_IRI
from hub.status import INGEDIEND, STATUSES, Status, melding_iri, status

FORMATS = ("json", "xml")
PERSON_NS = uuid.UUID("0b8f1d52-7a43-5c1e-9f2d-3a6e4c8b1d70")


class Open311Error(Exception):
    """An error the endpoint answers with: HTTP status and the spec's ``[{code, description}]``."""

    def __init__(
        self, http_status: int, description: str, code: int | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(description)
        self.http_status = http_status
        self.code = code if code is not None else http_status
        self.description = description
        self.retry_after = retry_after
        """Seconds, for a 429 (sent as the ``Retry-After`` header)."""

    def body(self) -> list[dict[str, Any]]:
        return [{"code": self.code, "description": self.description}]


# ---------------------------------------------------------------------------------------------
# services
# ---------------------------------------------------------------------------------------------
ATTRIBUTES: tuple[dict[str, Any], ...] = (
    {
        "variable": False,
        "code": "fixmystreet_id",
        "datatype": "string",
        "required": False,
        "datatype_description": "",
        "order": 1,
        "description": "Het nummer van de melding in de app (FixMyStreet vult dit zelf in); een herhaalde indiening wordt zo herkend.",
    },
    {
        "variable": True,
        "code": "client_reference",
        "datatype": "string",
        "required": False,
        "datatype_description": "Uw eigen referentie, hoogstens 100 tekens.",
        "order": 2,
        "description": "Eigen referentie van de app voor deze melding (optioneel).",
    },
)


def service(category: Category, config: Config) -> dict[str, Any]:
    keywords = ", ".join(s.split("/")[-1].replace("-", " ") for s in category.signalen_slugs())
    return {
        "service_code": category.slug,
        "service_name": category.label,
        "description": category.definition,
        "metadata": True,
        "type": config.service_type,
        "keywords": keywords,
        "group": config.groups.get(category.slug, "Andere"),
    }


def services(config: Config) -> list[dict[str, Any]]:
    """``GET services``: one service per concept of the hub's category scheme."""
    return [service(c, config) for c in categories()]


def service_definition(code: str) -> dict[str, Any]:
    if by_slug(code) is None:
        raise Open311Error(404, f"service_code {code!r} not found; GET services.json lists the codes")
    return {"service_code": code, "attributes": [dict(a) for a in ATTRIBUTES]}


# ---------------------------------------------------------------------------------------------
# POST requests → melding
# ---------------------------------------------------------------------------------------------
def parse_form(body: bytes) -> dict[str, list[str]]:
    """``application/x-www-form-urlencoded`` bytes → field → values (400 if not UTF-8)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Open311Error(400, "the request body is not UTF-8 form data") from None
    return parse_qs(text, keep_blank_values=True, max_num_fields=200)


_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]{1,100})\](\[\])?$")
_EMAIL = re.compile(r"^[^@\s<>]{1,64}@[^@\s<>]{1,255}\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{6,25}$")
_TAG = re.compile(r"<[^>]{0,200}>")


@dataclass(frozen=True)
class NewRequest:
    """A validated ``POST requests`` (field names as the spec's)."""

    service_code: str
    lat: float
    long: float
    description: str = ""
    address_string: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    media_urls: tuple[str, ...] = ()
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    account_id: str | None = None

    def reference(self, config: Config) -> str | None:
        """The client's own id of this report (``attribute[fixmystreet_id]`` …), if it sent one."""
        for code in config.reference_attributes:
            values = self.attributes.get(code)
            if values and values[0].strip():
                return f"{code}:{values[0].strip()[:100]}"
        return None


def _one(form: Mapping[str, Sequence[str]], name: str, limit: int = 500) -> str | None:
    values = form.get(name)
    if not values:
        return None
    value = values[0].strip()
    if len(value) > limit:
        raise Open311Error(400, f"{name} is longer than {limit} characters")
    return value or None


def _float(form: Mapping[str, Sequence[str]], name: str) -> float | None:
    text = _one(form, name, 40)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, f"{name} is not a number") from None
    if not math.isfinite(value):
        raise Open311Error(400, f"{name} is not a finite number")
    return value


def parse_new_request(form: Mapping[str, Sequence[str]], config: Config) -> NewRequest:
    """Validate the fields of ``POST requests``; Open311Error (400/404) says what is wrong.

    The hub routes on a point, so ``lat``/``long`` are required here (the spec also allows
    ``address_string`` or ``address_id`` alone; without a geocoder the hub cannot place those).
    """
    jurisdiction = _one(form, "jurisdiction_id", 100)
    if jurisdiction is not None and config.jurisdiction_id is not None and jurisdiction != config.jurisdiction_id:
        raise Open311Error(404, f"jurisdiction_id {jurisdiction!r} not found")
    code = _one(form, "service_code", 100)
    if code is None:
        raise Open311Error(400, "service_code is required")
    if by_slug(code) is None:
        raise Open311Error(404, f"service_code {code!r} not found; GET services.json lists the codes")
    lat, lon = _float(form, "lat"), _float(form, "long")
    if lat is None or lon is None:
        raise Open311Error(
            400, "a location as lat and long (WGS84) is required: this endpoint routes meldingen on coordinates"
        )
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Open311Error(400, "lat/long out of range (lat in [-90, 90], long in [-180, 180])")
    description = _one(form, "description", config.max_description_chars) or ""
    if _TAG.search(description):
        description = " ".join(_TAG.sub(" ", description).split())  # the spec says no HTML
    email = _one(form, "email", 320)
    if email is not None and not _EMAIL.match(email):
        raise Open311Error(400, "email is not an e-mail address")
    phone = _one(form, "phone", 40)
    if phone is not None and not _PHONE.match(phone):
        raise Open311Error(400, "phone is not a phone number")
    media = tuple(v.strip() for v in form.get("media_url", []) + form.get("media_url[]", []) if v.strip())
    for url in media:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
            raise Open311Error(400, "media_url must be an http(s) URL (uploads are not accepted; send a link)")
    attributes: dict[str, tuple[str, ...]] = {}
    for name, values in form.items():
        m = _ATTRIBUTE.match(name)
        if m:
            attributes[m.group(1)] = tuple(v[:1000] for v in values)
    return NewRequest(
        service_code=code,
        lat=lat,
        long=lon,
        description=description,
        address_string=_one(form, "address_string", 500),
        address_id=_one(form, "address_id", 100),
        zipcode=_one(form, "zipcode", 20),
        email=email,
        first_name=_one(form, "first_name", 100),
        last_name=_one(form, "last_name", 100),
        phone=phone,
        media_urls=media[:10],
        attributes=attributes,
        account_id=_one(form, "account_id", 100),
    )


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def to_melding(req: NewRequest, config: Config, melding_id: str, now: datetime, client: str) -> dict[str, Any]:
    """The canonical OSLO melding (hub context, compact JSON-LD) for a submitted request."""
    category = by_slug(req.service_code)
    assert category is not None  # parse_new_request checked it
    submitted = _iso(now)
    where = req.address_string or ""
    title = f"{category.label}: {where}" if where else category.label
    body: dict[str, Any] = {
        "@type": "MeldingBody",
        "geometrie": {"@type": "Geometrie", "wkt": f"POINT ({req.long} {req.lat})"},
    }
    if req.description:
        body["beschrijving"] = req.description
    doc: dict[str, Any] = {
        "@context": HUB_CONTEXT_IRI,
        "@id": melding_iri(melding_id),
        "@type": "Melding",
        "identificator": {
            "@type": "Identificator",
            "notatie": melding_id,
            "toegekendDoor": config.indiener,
            "toegekendOp": submitted,
        },
        "titel": _shorten(title, 200),
        "meldingstype": [category.iri],
        "type": [category.iri],
        "heeftBody": [body] + [{"@type": "MeldingBody", "bijlage": url} for url in req.media_urls],
        "heeftStatus": [
            {
                "@type": "Meldingstatus",
                "statuswaarde": STATUSES[INGEDIEND].iri,
                "statusdatum": submitted,
                "statuswijzigingDoor": config.indiener,
                "beschrijving": f"Melding ingediend via Open311 ({client}).",
            }
        ],
        "indiener": config.indiener,
        "meldingsapplicatie": config.application,
    }
    if req.description:
        doc["samenvatting"] = _shorten(req.description, 200)
    if req.address_string or req.zipcode:
        target: dict[str, Any] = {"@type": "Adresvoorstelling"}
        if req.address_string:
            target["volledigAdres"] = req.address_string
        if req.zipcode:
            target["postcode"] = req.zipcode
        doc["heeftTarget"] = [target]
    if config.public_url:
        doc["webpagina"] = f"{config.public_url.rstrip('/')}/requests/{melding_id}.json"
    if req.first_name or req.last_name or req.email or req.phone:
        person: dict[str, Any] = {
            "@id": f"urn:uuid:{uuid.uuid5(PERSON_NS, melding_id)}",
            "@type": "Persoon",
        }
        name = " ".join(p for p in (req.first_name, req.last_name) if p)
        if name:
            person["naam"] = name
        if req.email or req.phone:
            contact: dict[str, Any] = {"@type": "Contactpunt"}
            if req.email:
                contact["email"] = req.email
            if req.phone:
                contact["telefoon"] = req.phone
            person["contactpunt"] = contact
        doc["melder"] = person
    return doc


# ---------------------------------------------------------------------------------------------
# read-back: requests and updates
# ---------------------------------------------------------------------------------------------
def open311_status(notation: str, config: Config) -> tuple[str, str]:
    """(GeoReport status, FixMyStreet extended status) for a MeldingStatuswaarde."""
    shown = config.status_map.get(status(notation).notation)
    if shown is None:  # `adapters check` refuses such a config; be safe at run time
        return ("open" if STATUSES[status(notation).notation].open else "closed", "open")
    return shown.status, shown.extended


def request_view(row: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """A stored request as the spec's ``Request`` (``GET requests``, ``GET requests/{id}``)."""
    geo_status, _ = open311_status(row["status"], config)
    category = by_slug(row["service_code"])
    return {
        "service_request_id": row["id"],
        "status": geo_status,
        "status_notes": row.get("status_notes"),
        "service_name": category.label if category else row["service_code"],
        "service_code": row["service_code"],
        "description": row.get("description") or None,
        "agency_responsible": row.get("agency_responsible"),
        "service_notice": config.service_notice,
        "requested_datetime": row["requested_datetime"],
        "updated_datetime": row["updated_datetime"],
        "expected_datetime": None,
        "address": row.get("address"),
        "address_id": row.get("address_id"),
        "zipcode": row.get("zipcode"),
        "lat": row["lat"],
        "long": row["long"],
        "media_url": row.get("media_url"),
    }


def update_view(row: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """A status change as FixMyStreet's ``service_request_updates`` item."""
    _, extended = open311_status(row["status"], config)
    return {
        "update_id": row["update_id"],
        "service_request_id": row["request_id"],
        "status": extended,
        "updated_datetime": row["updated_datetime"],
        "description": row.get("description") or "",
        "media_url": "",
        "external_status_code": row["status"],
    }


def parse_datetime(text: str, name: str) -> datetime:
    """A W3C date-time (no zone = UTC); Open311Error 400 otherwise."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Open311Error(400, f"{name} is not a W3C date-time (e.g. 2026-11-20T08:15:00+01:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------
_SINGULAR = {"attributes": "attribute", "values": "value", "keywords": "keyword", "media_url": "media_url"}


def _xml_value(parent: ET.Element, key: str, value: Any) -> None:
    element = ET.SubElement(parent, key)
    if value is None:
        return
    if isinstance(value, bool):
        element.text = "true" if value else "false"
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _xml_value(element, k, v)
    elif isinstance(value, list):
        for item in value:
            _xml_value(element, _SINGULAR.get(key, "item"), item)
    else:
        element.text = str(value)


def to_xml(root: str, item: str | None, payload: Any) -> bytes:
    """``<root><item>…</item>…</root>`` for a list, ``<root>…</root>`` for one object."""
    top = ET.Element(root)
    if isinstance(payload, list):
        for entry in payload:
            _xml_value(top, item or "item", entry)
    else:
        for k, v in payload.items():
            _xml_value(top, k, v)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="unicode").encode("utf-8")


XML_ROOTS = {
    "services": ("services", "service"),
    "service_definition": ("service_definition", None),
    "requests": ("service_requests", "request"),
    "tokens": ("service_requests", "request"),
    "updates": ("service_request_updates", "request_update"),
    "errors": ("errors", "error"),
}


def render(kind: str, payload: Any, fmt: str) -> tuple[bytes, str]:
    """Body and media type of a response in ``fmt`` (json or xml)."""
    if fmt == "xml":
        root, item = XML_ROOTS[kind]
        return to_xml(root, item, payload), "text/xml; charset=utf-8"
    return json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8"


# -- client side: reading an Open311 server's answers ----------------------------------------
_LEADING_ZERO_NUMBER = re.compile(r'(:\s*)(-?0\d+(?:\.\d+)?)(\s*[,}\]])')


def loads_lenient(text: str) -> Any:
    """JSON, also the spec's own examples, which write ids as ``"service_code":001`` (not JSON):
    such numbers are read as strings, keeping their leading zeros."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(_LEADING_ZERO_NUMBER.sub(r'\1"\2"\3', text))


@dataclass(frozen=True)
class ServiceRequest:
    """One request as an Open311 server reports it (the fields the hub reads)."""

    service_request_id: str
    status: str
    status_notes: str | None = None
    service_code: str | None = None
    service_name: str | None = None
    requested_datetime: datetime | None = None
    updated_datetime: datetime | None = None
    lat: float | None = None
    long: float | None = None
    address: str | None = None
    media_url: str | None = None
    extended_status: str | None = None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _request_from(fields: Mapping[str, Any]) -> ServiceRequest:
    rid = _text(fields.get("service_request_id"))
    st = _text(fields.get("status"))
    if rid is None or st is None:
        raise ValueError("a request needs service_request_id and status")
    st = st.lower()
    if st not in ("open", "closed"):
        raise ValueError(f"status {st!r} is neither open nor closed")

    def when(key: str) -> datetime | None:
        text = _text(fields.get(key))
        return parse_datetime(text, key) if text else None

    def number(key: str) -> float | None:
        text = _text(fields.get(key))
        return float(text) if text else None

    return ServiceRequest(
        service_request_id=rid,
        status=st,
        status_notes=_text(fields.get("status_notes")),
        service_code=_text(fields.get("service_code")),
        service_name=_text(fields.get("service_name")),
        requested_datetime=when("requested_datetime"),
        updated_datetime=when("updated_datetime"),
        lat=number("lat"),
        long=number("long"),
        address=_text(fields.get("address")),
        media_url=_text(fields.get("media_url")),
        extended_status=_text(fields.get("extended_status") or fields.get("external_status_code")),
    )


def parse_service_requests(text: str, fmt: str) -> list[ServiceRequest]:
    """``GET requests`` / ``GET requests/{id}`` / ``POST requests`` answers of an Open311 server."""
    if fmt == "xml":
        root = ET.fromstring(text.strip())
        return [_request_from({child.tag: child.text for child in req}) for req in root.iter("request")]
    data = loads_lenient(text)
    if isinstance(data, dict):
        data = data.get("service_requests", data.get("requests", [data]))
    if not isinstance(data, list):
        raise ValueError("expected a list of requests")
    return [_request_from(item) for item in data]


def oslo_status_of(request: ServiceRequest, config: Config) -> Status:
    """MeldingStatuswaarde of an Open311 request: its extended status if known, else open/closed."""
    for key in (request.extended_status, request.status):
        if key and key.lower() in config.extended_to_oslo:
            notation = config.extended_to_oslo[key.lower()]
            if notation is not None:
                return STATUSES[notation]
    raise KeyError(f"Open311 status {request.status!r} is not mapped")


# ---------------------------------------------------------------------------------------------
# adapters check
# ---------------------------------------------------------------------------------------------
def status_mapping(config: Config) -> StatusMapping:
    return StatusMapping(
        vendor="Open311",
        to_oslo=config.extended_to_oslo,
        vendor_statuses=EXTENDED_STATUSES,
        from_oslo={n: s for n, s in config.status_map.items()},
    )


def check(config: Config) -> list[str]:
    """Every status mapped both ways, and open/closed consistent both ways."""
    problems = status_mapping(config).problems()
    for notation, shown in config.status_map.items():
        st = STATUSES[notation]
        if shown.extended not in EXTENDED_STATUSES:
            problems.append(f"{st} shows as extended status {shown.extended!r}, not a FixMyStreet status")
        elif shown.extended != "unchanged" and (shown.extended in OPEN_EXTENDED) != (shown.status == "open"):
            problems.append(f"{st} shows as {shown.status} but its extended status {shown.extended!r} says otherwise")
        if st.final and shown.status != "closed":
            problems.append(f"{st} is final but shows as {shown.status}")
    for ext, notation in config.extended_to_oslo.items():
        if notation is None or ext not in EXTENDED_STATUSES:
            continue
        st = STATUSES[notation]
        if (ext in OPEN_EXTENDED) != st.open:
            problems.append(f"Open311 {ext!r} ({'open' if ext in OPEN_EXTENDED else 'closed'}) maps to {st}, which is {'open' if st.open else 'closed'}")
    for slug in config.groups:
        if by_slug(slug) is None:
            problems.append(f"groups names {slug!r}, not a category of the hub's scheme")
    return problems
