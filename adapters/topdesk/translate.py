"""OSLO melding → TOPdesk incident, and TOPdesk incident → MeldingStatuswaarde. PURE: no I/O.

- :func:`incident_request`: the ``POST /tas/api/incidents`` body. ``externalNumber`` is the
  melding id (a UUID, 36 ≤ 60 characters): the key the adapter looks an incident up by before
  creating one, so a retried delivery never makes a second incident.
- :func:`reading_of`: the status part of an incident (``processingStatus.name`` through the
  tenant's map, ``modificationDate`` as the status date).
- :func:`created_change` / :func:`status_change`: the status events the adapter reports.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.base import StatusMapping, UnknownVendorStatus, VendorMalformed
from adapters.topdesk.config import Config
from hub.categories import by_iri
from hub.melding import Melding, text_of
from hub.status import STATUSES, TOEGEWEZEN, Status, StatusChange, default_description

BRIEF_MAX = 80


def _brief(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= BRIEF_MAX else text[: BRIEF_MAX - 1].rstrip() + "…"


def _esc(text: str) -> str:
    """Plain text for TOPdesk's limited HTML: escaped, newlines as ``<br>``."""
    return "<br>".join(html.escape(line, quote=False) for line in text.splitlines())


def _address(melding: Melding) -> str | None:
    for a in melding.addresses:
        full = text_of(a.volledigAdres)
        if full:
            return full
        parts = [text_of(a.straatnaam), text_of(a.huisnummer)]
        street = " ".join(p for p in parts if p)
        place = " ".join(p for p in (text_of(a.postcode), text_of(a.gemeentenaam)) if p)
        joined = ", ".join(p for p in (street, place) if p)
        if joined:
            return joined
    return None


def incident_request(melding: Melding, config: Config) -> dict[str, Any]:
    """The TOPdesk incident for a melding (contract: :data:`adapters.topdesk.schema.INCIDENT_CREATE`)."""
    title = text_of(melding.titel) or "Melding"
    category = next((c for c in (by_iri(i) for i in melding.category_iris) if c is not None), None)
    lines: list[str] = []
    descriptions = [text_of(b.beschrijving) for b in melding.bodies if text_of(b.beschrijving)]
    for d in descriptions:
        lines.append(_esc(d or ""))
    details: list[tuple[str, str]] = []
    if category:
        details.append(("Categorie", category.label))
    address = _address(melding)
    if address:
        details.append(("Adres", address))
    for lon, lat in melding.points()[:1]:
        details.append(("Coördinaten (WGS84)", f"{lat:.6f}, {lon:.6f}"))
    for body in melding.bodies:
        if body.bijlage:
            details.append(("Bijlage", text_of(body.bijlage) or ""))
    webpagina = text_of(melding.webpagina)
    if webpagina:
        details.append(("Opvolging", webpagina))
    details.append(("Melding-id (Meldingen Hub)", melding.melding_id))
    block = "<br>".join(f"<b>{html.escape(k, quote=False)}:</b> {_esc(v)}" for k, v in details)
    request = "<br><br>".join(p for p in ("<br>".join(lines), block) if p)

    body: dict[str, Any] = {
        "briefDescription": _brief(title),
        "request": request,
        "externalNumber": melding.melding_id,
        "caller": _caller(melding, config),
    }
    target = config.categories.get(category.slug) if category else None
    if target is not None:
        if target.category:
            body["category"] = target.category.ref()
        if target.subcategory:
            body["subcategory"] = target.subcategory.ref()
    for key, lookup in (
        ("callType", config.call_type),
        ("entryType", config.entry_type),
        ("operatorGroup", config.operator_group),
    ):
        if lookup is not None:
            body[key] = lookup.ref()
    return body


def _caller(melding: Melding, config: Config) -> dict[str, Any]:
    caller: dict[str, Any] = {"dynamicName": config.anonymous_caller}
    person = melding.melder
    if config.send_contact_details and person is not None and not isinstance(person, str):
        name = text_of(person.naam)
        if name:
            caller["dynamicName"] = name[:109]
        contacts = person.contactpunt if isinstance(person.contactpunt, list) else [person.contactpunt]
        for c in contacts:
            if c is None or isinstance(c, str):
                continue
            email, phone = text_of(c.email), text_of(c.telefoon)
            if email and "email" not in caller:
                caller["email"] = email[:100]
            if phone and "phoneNumber" not in caller:
                caller["phoneNumber"] = phone[:25]
    if config.caller_branch is not None:
        caller["branch"] = config.caller_branch.ref()
    return caller


# ---------------------------------------------------------------------------------------------
# reading incidents
# ---------------------------------------------------------------------------------------------
_TOPDESK_ZONE = re.compile(r"([+-]\d{2})(\d{2})$")


def parse_datetime(text: Any, field: str = "date") -> datetime:
    """TOPdesk's ``2021-02-11T06:32:36.303+0000`` (also ISO 8601 with ``+00:00`` or ``Z``)."""
    if not isinstance(text, str) or not text:
        raise VendorMalformed(f"TOPdesk incident: {field} missing or not a string")
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    value = _TOPDESK_ZONE.sub(r"\1:\2", value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise VendorMalformed(f"TOPdesk incident: {field} {text[:40]!r} is not a date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def fiql_datetime(when: datetime) -> str:
    """A date-time for a FIQL query (``modificationDate=gt=…``), UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Reading:
    """The status part of one incident."""

    incident_id: str
    number: str
    external_number: str | None
    vendor_status: str | None
    status: Status | None
    """None: the processing status maps to "no change for the citizen"."""
    modified: datetime
    closure: str | None = None


def incident_ref(incident: Any) -> tuple[str, str]:
    """(id, number) of an incident answer; VendorMalformed if it has neither."""
    if not isinstance(incident, dict):
        raise VendorMalformed(f"TOPdesk answered a JSON {type(incident).__name__}, not an incident object")
    iid, number = incident.get("id"), incident.get("number")
    if not isinstance(iid, str) or not iid or not isinstance(number, str) or not number:
        raise VendorMalformed("TOPdesk incident without id or number")
    return iid, number


def reading_of(incident: Any, config: Config) -> Reading:
    iid, number = incident_ref(incident)
    processing = incident.get("processingStatus")
    name = processing.get("name") if isinstance(processing, dict) else None
    if name is not None and not isinstance(name, str):
        raise VendorMalformed("TOPdesk incident: processingStatus.name is not a string")
    modified = parse_datetime(incident.get("modificationDate"), "modificationDate")
    closure = incident.get("closureCode")
    closure_name = closure.get("name") if isinstance(closure, dict) else None
    if name is None:
        raise UnknownVendorStatus(f"TOPdesk incident {number} has no processingStatus", {"incident": number})
    if name not in config.processing_statuses:
        raise UnknownVendorStatus(
            f"TOPdesk processing status {name!r} (incident {number}) is not in the tenant's map; "
            f"known: {', '.join(sorted(config.processing_statuses))}",
            {"incident": number, "processingStatus": name},
        )
    notation = config.processing_statuses[name]
    external = incident.get("externalNumber")
    return Reading(
        incident_id=iid,
        number=number,
        external_number=external if isinstance(external, str) and external else None,
        vendor_status=name,
        status=STATUSES[notation] if notation else None,
        modified=modified,
        closure=closure_name if isinstance(closure_name, str) else None,
    )


def _text(st: Status, config: Config) -> str:
    return config.status_texts.get(st.notation) or default_description(st)


def created_change(incident: Any, melding_id: str, door: str, authority_name: str, config: Config) -> StatusChange:
    """Toegewezen aan, once TOPdesk has the incident; dated by TOPdesk (so a retry yields the same event)."""
    _, number = incident_ref(incident)
    when_text = incident.get("creationDate") or incident.get("callDate") or incident.get("modificationDate")
    st = STATUSES[TOEGEWEZEN]
    text = config.status_texts.get(st.notation) or f"Uw melding werd toegewezen aan {authority_name} (dossier {number})."
    return StatusChange.create(melding_id, st, door, text, parse_datetime(when_text, "creationDate"))


def status_change(reading: Reading, melding_id: str, door: str, config: Config) -> StatusChange:
    assert reading.status is not None
    text = _text(reading.status, config)
    if reading.closure and not reading.status.open:
        text = f"{text} ({reading.closure})"
    return StatusChange.create(melding_id, reading.status, door, text, reading.modified)


# ---------------------------------------------------------------------------------------------
# adapters check
# ---------------------------------------------------------------------------------------------
def status_mapping(config: Config) -> StatusMapping:
    statuses = set(config.processing_statuses)
    if config.workflow:
        statuses |= set(config.workflow) | {b for targets in config.workflow.values() for b in targets}
    if config.new_incident_status:
        statuses.add(config.new_incident_status)
    return StatusMapping(
        vendor="TOPdesk",
        to_oslo=config.processing_statuses,
        vendor_statuses=sorted(statuses),
        transitions=config.workflow,
        start=TOEGEWEZEN,  # the adapter reports Toegewezen aan once the incident exists
        entry=[config.new_incident_status] if config.new_incident_status else [],
        refusals=config.refusal_statuses,
    )


def check(config: Config) -> list[str]:
    return status_mapping(config).problems()
