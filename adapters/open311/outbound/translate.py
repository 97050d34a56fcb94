"""OSLO melding → GeoReport v2 ``POST requests`` fields, and the server's answers → MeldingStatuswaarde.
PURE: no I/O, no clock.

- :func:`request_form`: the form fields of ``POST requests.json`` (the spec's names). The melding
  id travels twice: as ``attribute[<reference_attribute>]`` (what a deduplicating server keys
  on) and as the last line of ``description`` (:func:`marker`), the only field the spec's
  ``GET requests`` gives back — so a create whose answer was lost can be found again.
- :func:`created_ref`: ``service_request_id`` or ``token`` of the ``POST`` answer.
- :func:`parse_requests` / :func:`parse_updates`: ``GET requests`` and FixMyStreet's
  ``GET servicerequestupdates`` answers, read leniently (the spec's own examples write ids as
  bare numbers with leading zeros).
- :func:`decide`: a vendor status against the status the citizen last got → the change to
  report, or None. GeoReport's coarse ``open``/``closed`` counts only when it contradicts
  whether the citizen's status is open (``closed`` after ``Opgelost`` is not news).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.base import StatusMapping, UnknownVendorStatus, VendorMalformed
from adapters.open311.outbound.config import GEOREPORT_STATUSES, Config
from hub.categories import by_iri
from hub.errors import MissingLocation, UnknownCategory
from hub.melding import Melding, text_of
from hub.status import STATUSES, TOEGEWEZEN, Status, StatusChange, default_description

MARKER = "Melding-id (Meldingen Hub): "


def marker(melding_id: str) -> str:
    """The description's last line: how a request is recognised in ``GET requests`` answers."""
    return MARKER + melding_id


# ---------------------------------------------------------------------------------------------
# melding → POST requests
# ---------------------------------------------------------------------------------------------
def service_code_for(melding: Melding, config: Config) -> str:
    """The server's service_code for the melding's category (first mapped one), else the default."""
    for iri in melding.category_iris:
        category = by_iri(iri)
        if category is not None and category.slug in config.service_codes:
            return config.service_codes[category.slug]
    if config.default_service_code is not None:
        return config.default_service_code
    slugs = [c.slug for c in (by_iri(i) for i in melding.category_iris) if c is not None]
    raise UnknownCategory(
        f"no Open311 service_code for category {', '.join(slugs) or '(none)'} of adapter {config.id}: "
        "add it to service_codes (or set default_service_code) and replay the dead letter"
    )


def _address(melding: Melding) -> str | None:
    for a in melding.addresses:
        full = text_of(a.volledigAdres)
        if full:
            return full
        street = " ".join(p for p in (text_of(a.straatnaam), text_of(a.huisnummer)) if p)
        place = " ".join(p for p in (text_of(a.postcode), text_of(a.gemeentenaam)) if p)
        joined = ", ".join(p for p in (street, place) if p)
        if joined:
            return joined
    return None


def description(melding: Melding, config: Config) -> str:
    """Title, the reporter's text, the follow-up page, and the marker line (always kept whole)."""
    parts: list[str] = []
    title = text_of(melding.titel)
    if title:
        parts.append(title)
    parts += [d for d in (text_of(b.beschrijving) for b in melding.bodies) if d]
    page = text_of(melding.webpagina)
    if page:
        parts.append(f"Opvolging: {page}")
    text = "\n\n".join(parts)
    tail = "\n\n" + marker(melding.melding_id)
    room = config.max_description_chars - len(tail)
    if len(text) > room:
        text = text[: room - 1].rstrip() + "…"
    return text + tail


def _person(melding: Melding) -> dict[str, str]:
    """email, first_name, last_name, phone of the reporter (as far as the melding has them)."""
    person = melding.melder
    out: dict[str, str] = {}
    if person is None or isinstance(person, str):
        return out
    name = " ".join((text_of(person.naam) or "").split())
    if name:
        first, _, last = name.partition(" ")
        out["first_name"] = first[:100]
        if last:
            out["last_name"] = last[:100]
    contacts = person.contactpunt if isinstance(person.contactpunt, list) else [person.contactpunt]
    for c in contacts:
        if c is None or isinstance(c, str):
            continue
        email, phone = text_of(c.email), text_of(c.telefoon)
        if email and "email" not in out:
            out["email"] = email.strip()[:320]
        if phone and "phone" not in out:
            out["phone"] = phone.strip()[:40]
    return out


def request_form(melding: Melding, config: Config, api_key: str) -> dict[str, str]:
    """The ``POST requests`` fields (url-encoded by the client). Location: the first point as
    lat/long (WGS84) and the address as ``address_string``; one of them is required."""
    form: dict[str, str] = {"api_key": api_key}
    if config.jurisdiction_id:
        form["jurisdiction_id"] = config.jurisdiction_id
    form["service_code"] = service_code_for(melding, config)
    points = [(lon, lat) for lon, lat in melding.points() if math.isfinite(lon) and math.isfinite(lat)]
    if points:
        lon, lat = points[0]
        form["lat"], form["long"] = f"{lat:.7f}", f"{lon:.7f}"
    address = _address(melding)
    if address:
        form["address_string"] = address[:500]
    if not points and not address:
        raise MissingLocation("the melding has neither a point nor an address; Open311 needs one of them")
    form["description"] = description(melding, config)
    if config.send_contact_details:
        form.update(_person(melding))
    media = [u for u in (text_of(b.bijlage) for b in melding.bodies) if u and u.startswith(("http://", "https://"))]
    if media:
        form["media_url"] = media[0]  # the spec has one media_url per request
    form[f"attribute[{config.reference_attribute}]"] = melding.melding_id
    return form


# ---------------------------------------------------------------------------------------------
# answers
# ---------------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _when(value: Any, name: str) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise VendorMalformed(f"Open311: {name} {text[:40]!r} is not a date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _items(answer: Any, *keys: str) -> list[dict[str, Any]]:
    """A list of objects, also wrapped as ``{"service_requests": [...]}``."""
    if isinstance(answer, dict):
        for key in keys:
            if key in answer:
                answer = answer[key]
                break
        else:
            answer = [answer]
    if not isinstance(answer, list) or not all(isinstance(i, dict) for i in answer):
        raise VendorMalformed("Open311: expected a JSON list of objects")
    return answer


@dataclass(frozen=True)
class Created:
    service_request_id: str | None
    token: str | None


def created_ref(answer: Any) -> Created:
    """The ``POST requests`` answer: ``[{service_request_id | token, service_notice, account_id}]``."""
    items = _items(answer, "service_requests")
    if not items:
        raise VendorMalformed("Open311 POST requests: an empty answer")
    rid, token = _text(items[0].get("service_request_id")), _text(items[0].get("token"))
    if rid is None and token is None:
        raise VendorMalformed("Open311 POST requests: the answer has neither service_request_id nor token")
    return Created(rid, token)


def token_ref(answer: Any) -> str | None:
    """``GET tokens/{token}``: the service_request_id once the server made the request, else None."""
    items = _items(answer, "service_requests")
    return _text(items[0].get("service_request_id")) if items else None


@dataclass(frozen=True)
class RequestState:
    """One service request as ``GET requests`` reports it (the fields the adapter reads)."""

    service_request_id: str
    status: str
    """``open`` or ``closed``."""
    extended: str | None = None
    """A FixMyStreet extended status, when the server adds one (``extended_status``)."""
    status_notes: str | None = None
    updated: datetime | None = None
    description: str | None = None

    @property
    def vendor_status(self) -> str:
        return self.extended or self.status

    @property
    def coarse(self) -> bool:
        """Only GeoReport's open/closed: no more precise status given."""
        return self.extended is None


def request_items(answer: Any) -> list[dict[str, Any]]:
    """The objects of a ``GET requests`` answer; VendorMalformed when it is not a list of them."""
    return _items(answer, "service_requests", "requests")


def item_id(item: dict[str, Any]) -> str | None:
    return _text(item.get("service_request_id"))


def parse_request(item: dict[str, Any]) -> RequestState:
    """One request of a ``GET requests`` answer; VendorMalformed / UnknownVendorStatus when unreadable."""
    rid, st = item_id(item), _text(item.get("status"))
    if rid is None or st is None:
        raise VendorMalformed("Open311 GET requests: a request without service_request_id or status")
    if st.lower() not in GEOREPORT_STATUSES:
        raise UnknownVendorStatus(f"Open311 request {rid[:60]}: status {st[:40]!r} is neither open nor closed",
                                  {"service_request_id": rid[:60], "status": st[:40]})
    extended = _text(item.get("extended_status"))
    return RequestState(rid, st.lower(), extended.lower() if extended else None, _text(item.get("status_notes")),
                        _when(item.get("updated_datetime"), "updated_datetime"), _text(item.get("description")))


def parse_requests(answer: Any) -> list[RequestState]:
    """``GET requests`` → every request; raises on the first one that cannot be read."""
    return [parse_request(i) for i in request_items(answer)]


def find_marked(answer: Any, melding_id: str) -> str | None:
    """The service_request_id of the request whose description carries the melding's marker."""
    wanted = marker(melding_id)
    for item in request_items(answer):
        text = _text(item.get("description"))
        if text and wanted in " ".join(text.split()):
            return item_id(item)
    return None


@dataclass(frozen=True)
class Update:
    """One FixMyStreet ``service_request_updates`` item."""

    update_id: str
    service_request_id: str
    status: str
    updated: datetime
    description: str | None = None


def update_items(answer: Any) -> list[dict[str, Any]]:
    return _items(answer, "service_request_updates")


def parse_update(item: dict[str, Any]) -> Update:
    """One FixMyStreet ``service_request_updates`` item; VendorMalformed when a required field is missing."""
    uid, rid, st = (_text(item.get(k)) for k in ("update_id", "service_request_id", "status"))
    when = _when(item.get("updated_datetime"), "updated_datetime")
    if uid is None or rid is None or st is None or when is None:
        raise VendorMalformed("Open311 servicerequestupdates: an update without update_id, service_request_id, "
                              "status or updated_datetime")
    return Update(uid, rid, st.lower(), when, _text(item.get("description")))


def parse_updates(answer: Any) -> list[Update]:
    """``GET servicerequestupdates`` → the updates, oldest first; raises on one that cannot be read."""
    return sorted((parse_update(i) for i in update_items(answer)), key=lambda u: u.updated)


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------
def decide(vendor_status: str, coarse: bool, known: str, config: Config) -> Status | None:
    """The MeldingStatuswaarde to report for ``vendor_status`` when the citizen knows ``known``,
    or None (no change). UnknownVendorStatus when the tenant's map lacks the status."""
    key = vendor_status.lower()
    if key not in config.statuses:
        raise UnknownVendorStatus(
            f"Open311 status {vendor_status[:40]!r} is not in the tenant's map; known: {', '.join(sorted(config.statuses))}",
            {"status": vendor_status[:40]},
        )
    notation = config.statuses[key]
    if notation is None or notation == known:
        return None
    if coarse and key in GEOREPORT_STATUSES and STATUSES[known].open == (key == "open"):
        return None  # open/closed agrees with what the citizen was told: not news
    return STATUSES[notation]


def _clean(text: str | None) -> str | None:
    from hub.deadletters import scrub_text

    if not text:
        return None
    line = " ".join(scrub_text(text).split())
    return line[:1000] or None


def status_text(st: Status, notes: str | None, config: Config) -> str:
    if config.use_status_notes and _clean(notes):
        return _clean(notes) or ""
    return config.status_texts.get(st.notation) or default_description(st)


def created_change(melding_id: str, door: str, authority_name: str, reference: str, when: datetime,
                   config: Config) -> StatusChange:
    """Toegewezen aan once the server has the request, dated by its first filing (a repeat is the
    same event)."""
    st = STATUSES[TOEGEWEZEN]
    text = config.status_texts.get(st.notation) or f"Uw melding werd toegewezen aan {authority_name} (Open311 {reference})."
    return StatusChange.create(melding_id, st, door, text, when)


def status_change(melding_id: str, st: Status, door: str, notes: str | None, when: datetime, config: Config) -> StatusChange:
    return StatusChange.create(melding_id, st, door, status_text(st, notes, config), when)


# ---------------------------------------------------------------------------------------------
# adapters check
# ---------------------------------------------------------------------------------------------
def status_mapping(config: Config) -> StatusMapping:
    return StatusMapping(
        vendor="Open311",
        to_oslo=config.statuses,
        vendor_statuses=config.vendor_statuses(),
        start=TOEGEWEZEN,  # reported once the server has the request
        entry=["open"],
        refusals=config.refusal_statuses,
    )


def check(config: Config) -> list[str]:
    """Every status mapped, refusals map to null, and each mapped status agrees with open/closed."""
    from adapters.open311.config import OPEN_EXTENDED

    problems = status_mapping(config).problems()
    for key, notation in config.statuses.items():
        if notation is None or notation not in STATUSES:
            continue
        is_open = key == "open" or key in OPEN_EXTENDED
        if key in GEOREPORT_STATUSES or key in OPEN_EXTENDED or key in _CLOSED_EXTENDED:
            if is_open != STATUSES[notation].open:
                problems.append(f"Open311 {key!r} ({'open' if is_open else 'closed'}) maps to {STATUSES[notation]}, "
                                f"which is {'open' if STATUSES[notation].open else 'closed'}")
    return problems


def _closed_extended() -> frozenset[str]:
    from adapters.open311.config import EXTENDED_STATUSES, OPEN_EXTENDED

    return frozenset(EXTENDED_STATUSES) - OPEN_EXTENDED - {"unchanged"}


_CLOSED_EXTENDED = _closed_extended()
