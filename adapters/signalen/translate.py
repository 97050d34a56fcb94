"""OSLO melding → Signalen signal, and Signalen signal → MeldingStatuswaarde. PURE: no I/O, no clock.

- :func:`signal_request`: the ``POST /signals/v1/private/signals/`` body (contract: Signalen's
  published ``V1PrivateSignalPost`` and ``extra_properties.json``).
- **The external reference.** Signalen has no external-id field. The melding id goes into
  ``extra_properties`` as one question/answer item (``{"id": "meldingen_hub_melding_id", "label":
  "Melding-id (Meldingen Hub)", "answer": "<uuid>", "category_url": …}``, the shape Signalen
  validates with its ``extra_properties.json``), and also as the first line of ``text_extra``
  (read-only after create, shown to the operator). :func:`reference_of` reads either, so a signal
  whose ``extra_properties`` were edited later is still recognised. Signalen's list endpoint has
  no filter on either field: the adapter narrows with ``source`` and ``created_after`` and matches
  here (see :mod:`adapters.signalen.client`).
- :func:`reading_of` / :func:`changes_for`: a signal's ``status`` (``state``, dated by
  ``status.created_at``) → the status events the adapter reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import StatusMapping, UnknownVendorStatus, VendorMalformed, VendorRejected
from adapters.signalen.config import CATEGORY_PATH, STATE_NAMES, Config
from hub.categories import Category, by_iri, categories
from hub.melding import Melding, text_of
from hub.status import (
    HERINGEDIEND,
    INGEDIEND,
    STATUSES,
    TOEGEWEZEN,
    Status,
    StatusChange,
    check_transition,
    default_description,
    is_legal,
    status,
)

TEXT_MAX = 3000
"""Signalen's ``Signal.text`` is a CharField(max_length=3000) [read in the model; the 2023 OpenAPI gives no limit]."""
TEXT_EXTRA_MAX = 10000

_HOUSE_NUMBER = re.compile(r"^\s*(\d{1,6})\s*([A-Za-z]?)\s*$")


# ---------------------------------------------------------------------------------------------
# categories
# ---------------------------------------------------------------------------------------------
def category_of(melding: Melding) -> Category | None:
    return next((c for c in (by_iri(i) for i in melding.category_iris) if c is not None), None)


def signalen_category(category: Category | None, config: Config) -> tuple[str, str] | None:
    """(hoofdcategorie, subcategorie) slugs: tenant override, else the scheme's match, else the default."""
    pair: str | None = None
    if category is not None:
        pair = config.categories.get(category.slug) or next(iter(category.signalen_slugs()), None)
    pair = pair or config.default_category
    if pair is None:
        return None
    main, sub = pair.split("/")
    return main, sub


def category_path(main: str, sub: str) -> str:
    """The sub-category reference Signalen expects (as in its own example requests: a path)."""
    return CATEGORY_PATH.format(main=main, sub=sub)


# ---------------------------------------------------------------------------------------------
# melding → signal
# ---------------------------------------------------------------------------------------------
def submitted_at(melding: Melding) -> datetime | None:
    """When the melding was submitted: its Ingediend status, else the identificator's date."""
    candidates: list[str] = []
    for s in melding.statuses:
        value = s.statuswaarde
        iri = value if isinstance(value, str) else (value.id if value is not None else None)
        try:
            if iri and status(iri).notation == INGEDIEND and text_of(s.statusdatum):
                candidates.append(text_of(s.statusdatum) or "")
        except KeyError:
            continue
    ident = melding.identificator
    if not candidates and ident is not None and not isinstance(ident, str) and text_of(ident.toegekendOp):
        candidates.append(text_of(ident.toegekendOp) or "")
    parsed = []
    for c in candidates:
        try:
            when = datetime.fromisoformat(c)
        except ValueError:
            continue
        parsed.append(when if when.tzinfo else when.replace(tzinfo=UTC))
    return min(parsed) if parsed else None


def _address(melding: Melding) -> tuple[dict[str, Any] | None, str | None]:
    """(Signalen ``location.address`` for what fits its Dutch BAG fields, the address as one line)."""
    for a in melding.addresses:
        street, number = text_of(a.straatnaam), text_of(a.huisnummer)
        postcode, place = text_of(a.postcode), text_of(a.gemeentenaam)
        line = text_of(a.volledigAdres) or ", ".join(
            p for p in (" ".join(x for x in (street, number, text_of(a.busnummer) and f"bus {text_of(a.busnummer)}") if x),
                        " ".join(x for x in (postcode, place) if x)) if p
        )
        address: dict[str, Any] = {}
        if street:
            address["openbare_ruimte"] = street
            m = _HOUSE_NUMBER.match(number or "")
            if m:
                address["huisnummer"] = int(m[1])
                if m[2]:
                    address["huisletter"] = m[2].upper()
            if postcode:
                address["postcode"] = postcode
            if place:
                address["woonplaats"] = place
        if address or line:
            return (address or None), (line or None)
    return None, None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def reference_line(melding_id: str, config: Config) -> str:
    return f"{config.reference_label}: {melding_id}"


def signal_request(melding: Melding, config: Config, received_at: datetime) -> dict[str, Any]:
    """The Signalen signal for a melding. ``received_at``: when the hub routed it (used only when the
    melding carries no submission date). VendorRejected when it cannot be a signal (no point, no category)."""
    melding_id = melding.melding_id
    points = melding.points()
    if not points:
        raise VendorRejected("the melding has no WGS84 point; Signalen requires location.geometrie")
    lon, lat = points[0]
    category = category_of(melding)
    pair = signalen_category(category, config)
    if pair is None:
        raise VendorRejected(
            f"no Signalen category for {category.slug if category else 'this melding'!r} and no default_category"
        )
    path = category_path(*pair)

    title = text_of(melding.titel) or ""
    descriptions = [text_of(b.beschrijving) or "" for b in melding.bodies if text_of(b.beschrijving)]
    text = "\n\n".join(p for p in [title, *descriptions] if p) or (category.label if category else "Melding")

    address, address_line = _address(melding)
    extra = [reference_line(melding_id, config)]
    if category is not None:
        extra.append(f"Categorie (Meldingen Hub): {category.label}")
    if address_line:
        extra.append(f"Adres: {address_line}")
    extra += [f"Bijlage: {text_of(b.bijlage)}" for b in melding.bodies if text_of(b.bijlage)]
    if text_of(melding.webpagina):
        extra.append(f"Opvolging: {text_of(melding.webpagina)}")

    location: dict[str, Any] = {"geometrie": {"type": "Point", "coordinates": [round(lon, 8), round(lat, 8)]}}
    if address:
        location["address"] = address

    started = submitted_at(melding) or received_at
    body: dict[str, Any] = {
        "text": _clip(text, TEXT_MAX),
        "text_extra": _clip("\n".join(extra), TEXT_EXTRA_MAX),
        "location": location,
        "category": {"sub_category": path},
        "reporter": _reporter(melding, config),
        "incident_date_start": started.astimezone(UTC).isoformat(),
        "source": config.source,
        "type": {"code": config.type_code},
        "extra_properties": [
            {"id": config.reference_id, "label": config.reference_label, "answer": melding_id, "category_url": path}
        ],
    }
    return body


def _reporter(melding: Melding, config: Config) -> dict[str, Any]:
    """Signalen requires ``reporter``; empty = anonymous. Personal data goes to the owner only."""
    reporter: dict[str, Any] = {"sharing_allowed": config.sharing_allowed}
    person = melding.melder
    if not config.send_contact_details or person is None or isinstance(person, str):
        return reporter
    contacts = person.contactpunt if isinstance(person.contactpunt, list) else [person.contactpunt]
    for c in contacts:
        if c is None or isinstance(c, str):
            continue
        email, phone = text_of(c.email), text_of(c.telefoon)
        if email and "email" not in reporter:
            reporter["email"] = email[:254]
        if phone and "phone" not in reporter:
            reporter["phone"] = phone[:17]
    return reporter


# ---------------------------------------------------------------------------------------------
# reading signals
# ---------------------------------------------------------------------------------------------
def parse_datetime(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise VendorMalformed(f"Signalen signal: {field} missing or not a string")
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise VendorMalformed(f"Signalen signal: {field} {value[:40]!r} is not a date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def signal_ref(signal: Any) -> tuple[int, str]:
    """(id, display number such as ``SIG-123``) of a signal answer; VendorMalformed if it has no id."""
    if not isinstance(signal, dict):
        raise VendorMalformed(f"Signalen answered a JSON {type(signal).__name__}, not a signal object")
    sid = signal.get("id")
    if not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0:
        raise VendorMalformed("Signalen signal without an integer id")
    display = signal.get("id_display")
    return sid, display if isinstance(display, str) and display else f"SIG-{sid}"


def reference_of(signal: Any, config: Config) -> str | None:
    """The melding id a signal carries (extra_properties item, else the text_extra line), or None."""
    if not isinstance(signal, dict):
        return None
    extra = signal.get("extra_properties")
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict) and item.get("id") == config.reference_id and isinstance(item.get("answer"), str):
                return item["answer"]
    text_extra = signal.get("text_extra")
    if isinstance(text_extra, str):
        prefix = f"{config.reference_label}: "
        for line in text_extra.splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].strip() or None
    return None


@dataclass(frozen=True)
class Reading:
    """The status part of one signal."""

    signal_id: int
    display: str
    state: str
    status: Status | None
    """None: the state maps to "no change for the citizen"."""
    changed: datetime
    """``status.created_at``: when Signalen set this state."""
    updated: datetime | None
    text: str | None
    sent_to_reporter: bool


def reading_of(signal: Any, config: Config) -> Reading:
    sid, display = signal_ref(signal)
    st = signal.get("status")
    if not isinstance(st, dict):
        raise VendorMalformed(f"Signalen signal {display} has no status object")
    state = st.get("state")
    if not isinstance(state, str):
        raise VendorMalformed(f"Signalen signal {display}: status.state is not a string")
    changed = parse_datetime(st.get("created_at"), "status.created_at")
    updated = parse_datetime(signal["updated_at"], "updated_at") if signal.get("updated_at") else None
    if state not in config.states:
        raise UnknownVendorStatus(
            f"Signalen state {state!r} (signal {display}) is not in the tenant's map; known: {', '.join(sorted(config.states))}",
            {"signal": display, "state": state},
        )
    notation = config.states[state]
    text = st.get("text")
    return Reading(
        signal_id=sid,
        display=display,
        state=state,
        status=STATUSES[notation] if notation else None,
        changed=changed,
        updated=updated,
        text=text.strip() if isinstance(text, str) and text.strip() else None,
        sent_to_reporter=st.get("send_email") is True,
    )


def _text(st: Status, config: Config, reading: Reading | None = None) -> str:
    if reading is not None and config.use_reporter_messages and reading.sent_to_reporter and reading.text:
        return reading.text[:2000]
    return config.status_texts.get(st.notation) or default_description(st)


def created_change(signal: Any, melding_id: str, door: str, authority_name: str, config: Config) -> StatusChange:
    """Toegewezen aan, once Signalen has the signal; dated by Signalen's ``created_at`` (a retry yields the same event)."""
    _, display = signal_ref(signal)
    when = signal.get("created_at") or (signal.get("status") or {}).get("created_at")
    st = STATUSES[TOEGEWEZEN]
    text = config.status_texts.get(st.notation) or f"Uw melding werd toegewezen aan {authority_name} (melding {display})."
    return StatusChange.create(melding_id, st, door, text, parse_datetime(when, "created_at"))


def changes_for(reading: Reading, known: str, melding_id: str, door: str, config: Config) -> list[StatusChange]:
    """The events for a changed state: one, or 647 Heringediend first when Signalen takes a decided
    melding back into handling (``reopen_via_heringediend``). IllegalTransition otherwise."""
    assert reading.status is not None
    new = reading.status
    change = StatusChange.create(melding_id, new, door, _text(new, config, reading), reading.changed)
    if is_legal(known, new.notation):
        return [change]
    if config.reopen_via_heringediend and bridges(known, new.notation):
        reopened = StatusChange.create(
            melding_id, STATUSES[HERINGEDIEND], door, _text(STATUSES[HERINGEDIEND], config),
            reading.changed - timedelta(milliseconds=1),
        )
        return [reopened, change]
    check_transition(known, new.notation)
    raise AssertionError("unreachable")  # pragma: no cover


def bridges(previous: str, new: str) -> bool:
    """True when ``previous → new`` is illegal but ``previous → 647 → new`` is legal."""
    return (
        previous != HERINGEDIEND and new != HERINGEDIEND
        and not is_legal(previous, new) and is_legal(previous, HERINGEDIEND) and is_legal(HERINGEDIEND, new)
    )


# ---------------------------------------------------------------------------------------------
# adapters check
# ---------------------------------------------------------------------------------------------
def bridged_edges(config: Config) -> list[tuple[str, str]]:
    """Workflow changes reported through 647 Heringediend (empty when reopen_via_heringediend is off)."""
    if not config.workflow or not config.reopen_via_heringediend:
        return []
    out = []
    for a, targets in config.workflow.items():
        for b in targets:
            na, nb = config.states.get(a), config.states.get(b)
            if na in STATUSES and nb in STATUSES and na != nb and bridges(na, nb):
                out.append((a, b))
    return out


def status_mapping(config: Config) -> StatusMapping:
    statuses = set(STATE_NAMES) | set(config.states)
    transitions = None
    if config.workflow is not None:
        statuses |= set(config.workflow) | {b for targets in config.workflow.values() for b in targets}
        bridged = set(bridged_edges(config))
        transitions = {a: [b for b in targets if (a, b) not in bridged] for a, targets in config.workflow.items()}
    return StatusMapping(
        vendor="Signalen",
        to_oslo=config.states,
        vendor_statuses=sorted(statuses),
        transitions=transitions,
        start=TOEGEWEZEN,  # the adapter reports Toegewezen aan once the signal exists
        entry=[config.new_signal_state],
        refusals=config.refusal_states,
    )


def check(config: Config) -> list[str]:
    problems = status_mapping(config).problems()
    for c in categories():
        if signalen_category(c, config) is None:
            problems.append(f"hub category {c.slug!r} has no Signalen category (map it, or set default_category)")
    return problems
