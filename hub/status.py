"""The status life cycle of a melding, status events, and the pure status stage.

Three things live here, all without I/O:

1. **The life cycle** — an explicit state machine over the 11 concepts of the OSLO codelist
   ``MeldingStatuswaarde`` (:data:`STATUSES`, :data:`TRANSITIONS`), written as an
   allowed-transitions table in the manner of Signalen's ``workflow.py``. Every status also
   carries the generic Flemish phase and code (``StatusVlaamseFase`` / ``StatusVlaamseCode``).
   No OSLO document links MeldingStatuswaarde to those; the mapping below is **the hub's own
   documented choice** (``docs/adapters.md``, ``/shared/design/oslo-model.md``).

2. **Status events** — a ``melding:Meldingstatus`` as JSON-LD in the hub's context, with the
   same terms a melding's ``heeftStatus`` uses (``statuswaarde``, ``statusdatum``,
   ``statuswijzigingDoor``, ``beschrijving``) and the melding it belongs to as the reverse of
   ``heeftStatus`` (``"@reverse": {"heeftStatus": {"@id": <melding IRI>}}``): the RDF is exactly
   the triple a melding would carry, so no new vocabulary is needed. :class:`StatusChange`
   builds and parses it; its ``@id`` is derived from (melding, status, date) so a status
   reported twice (at-least-once delivery) has the same id and consumers can drop the copy.

3. **The status stage** (:class:`StatusStage`) — ``meldingen.status`` → validate →
   ``meldingen.status.<source>``, where ``source`` is the channel adapter the melding came
   from (the ``source`` header travels inbound → owner topic → status event). Every record
   yields exactly one output: the forwarded event or a dead letter (``hub.pipeline.dead_letter``).
   The Kafka loop around it is :mod:`hub.status_service` (the hub's transactional loop).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from hub import __version__
from hub.errors import BugError, ErrorClass, HubError, NotJsonLd, ShapeViolation
from hub.jsonld import HUB_CONTEXT_IRI
from hub.pipeline import Output, Record, decode, dead_letter
from hub.topics import JSONLD_CONTENT_TYPE, STATUS, Header, status_topic

STATUS_NS = "https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/"
STATUS_SCHEME = "https://data.vlaanderen.be/id/conceptscheme/MeldingStatuswaarde"
FASE_NS = "https://data.vlaanderen.be/id/concept/StatusVlaamseFase/"
CODE_NS = "https://data.vlaanderen.be/id/concept/StatusVlaamseCode/"
MELDING_BASE = "https://w3id.org/meldingen-hub/id/melding/"
STATUS_EVENT_BASE = "https://w3id.org/meldingen-hub/id/meldingstatus/"
_EVENT_NAMESPACE = uuid.UUID("6f1c3b8e-2f4a-5d7e-9a61-0c2b7e5d4f10")

MAX_STATUS_BYTES = 64 * 1024
"""A status event is a few hundred bytes; anything near this is not a status event."""


class StatusHeader:
    """Kafka headers of status events (names defined in :class:`hub.topics.Header`)."""

    PREVIOUS = Header.STATUS_PREVIOUS
    REPORTED_BY = Header.REPORTED_BY


StatusErrorClass = ErrorClass
"""The status stage's dead-letter classes are members of :class:`hub.errors.ErrorClass`."""


class StatusError(HubError):
    error_class = StatusErrorClass.NOT_A_STATUS  # type: ignore[assignment]


class NotAStatus(StatusError):
    error_class = StatusErrorClass.NOT_A_STATUS  # type: ignore[assignment]


class IllegalTransition(StatusError):
    error_class = StatusErrorClass.ILLEGAL_TRANSITION  # type: ignore[assignment]


class NoSource(StatusError):
    error_class = StatusErrorClass.NO_SOURCE  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# the 11 statuses
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """One concept of MeldingStatuswaarde with the hub's phase/code mapping."""

    notation: str
    label: str
    definition: str
    fase: str  # StatusVlaamseFase notation
    code: str  # StatusVlaamseCode notation
    open: bool
    """True while the authority still has work to do (Open311 ``open``); False once decided."""
    final: bool = False
    """No transition leaves a final status."""

    @property
    def iri(self) -> str:
        return STATUS_NS + self.notation

    @property
    def fase_iri(self) -> str:
        return FASE_NS + self.fase

    @property
    def code_iri(self) -> str:
        return CODE_NS + self.code

    def __str__(self) -> str:
        return f"{self.notation} {self.label}"


INGEDIEND = "511"
TOEGEWEZEN = "557"
IN_ONDERZOEK = "496"
OPGELOST = "133"
AFGEWEZEN = "475"
GESLOTEN = "250"
INGETROKKEN = "733"
HERINGEDIEND = "647"
ONONTVANKELIJK = "751"
DEFINITIEF_GESLOTEN = "138"
AFGEROND = "956"

_S = Status
STATUSES: dict[str, Status] = {
    s.notation: s
    for s in (
        _S(INGEDIEND, "Ingediend", "De melding werd succesvol geregistreerd.", "Samenstelling", "Ingediend", True),
        _S(TOEGEWEZEN, "Toegewezen aan", "De melding werd toegewezen aan een behandelaar.", "Behandeling", "Ontvangen", True),
        _S(IN_ONDERZOEK, "In onderzoek", "De melding werd door de behandelaar in onderzoek geplaatst.", "Behandeling", "InVerwerking", True),
        _S(OPGELOST, "Opgelost", "De melding werd na onderzoek door onze behandelaar opgelost.", "Uitvoering", "Uitgevoerd", False),
        _S(AFGEWEZEN, "Afgewezen", "De melding werd na onderzoek door onze behandelaar afgewezen.", "Beslissing", "Geweigerd", False),
        _S(GESLOTEN, "Gesloten", "De melding kon niet behandeld worden en is gesloten.", "Afgerond", "Afgehandeld", False),
        _S(INGETROKKEN, "Ingetrokken", "De melding werd ingetrokken door de indiener.", "Afgerond", "Stopgezet", False),
        _S(HERINGEDIEND, "Heringediend", "De melding werd opnieuw ingediend door de indiener.", "Samenstelling", "Ingediend", True),
        _S(ONONTVANKELIJK, "Onontvankelijk", "De melding is onontvankelijk.", "Beslissing", "Onontvankelijk", False),
        _S(DEFINITIEF_GESLOTEN, "Definitief gesloten", "De melding werd definitief gesloten en kan niet meer heringediend worden.", "Afgerond", "Afgehandeld", False, final=True),
        _S(AFGEROND, "Afgerond", "De eindstatus van een melding.", "Afgerond", "Afgehandeld", False, final=True),
    )
}
"""The 11 MeldingStatuswaarde concepts by notation. Phase/code: the hub's choice (see module doc)."""

_DECISIONS = (OPGELOST, AFGEWEZEN, GESLOTEN, ONONTVANKELIJK, INGETROKKEN)
_IN_HANDLING = (TOEGEWEZEN, IN_ONDERZOEK)

TRANSITIONS: dict[str, frozenset[str]] = {
    # submitted (or re-submitted): the authority takes it on, or decides at once; the citizen
    # may withdraw it.
    INGEDIEND: frozenset({*_IN_HANDLING, *_DECISIONS, AFGEROND}),
    HERINGEDIEND: frozenset({*_IN_HANDLING, *_DECISIONS, AFGEROND}),
    # in handling: (re)assigned, investigated, decided. A repeated status is a progress note.
    TOEGEWEZEN: frozenset({TOEGEWEZEN, IN_ONDERZOEK, *_DECISIONS, AFGEROND}),
    IN_ONDERZOEK: frozenset({TOEGEWEZEN, IN_ONDERZOEK, *_DECISIONS, AFGEROND}),
    # decided: the citizen may re-submit (not fixed after all, new facts) until it is closed for good.
    OPGELOST: frozenset({HERINGEDIEND, AFGEROND, DEFINITIEF_GESLOTEN}),
    AFGEWEZEN: frozenset({HERINGEDIEND, AFGEROND, DEFINITIEF_GESLOTEN}),
    GESLOTEN: frozenset({HERINGEDIEND, AFGEROND, DEFINITIEF_GESLOTEN}),
    INGETROKKEN: frozenset({HERINGEDIEND, AFGEROND, DEFINITIEF_GESLOTEN}),
    # inadmissible: the definition leaves no way to complete it; only closing remains.
    ONONTVANKELIJK: frozenset({AFGEROND, DEFINITIEF_GESLOTEN}),
    # final
    DEFINITIEF_GESLOTEN: frozenset(),
    AFGEROND: frozenset(),
}
"""Allowed status changes (from → to). Anything not listed is illegal."""

INITIAL = INGEDIEND
"""Every melding starts as Ingediend (the channel sets it with the submission time)."""


def status(value: str) -> Status:
    """The status for a notation (``"133"``) or a concept IRI; KeyError names the allowed ones."""
    notation = value[len(STATUS_NS):] if value.startswith(STATUS_NS) else value
    try:
        return STATUSES[notation]
    except KeyError:
        allowed = ", ".join(str(s) for s in STATUSES.values())
        raise KeyError(f"{value!r} is not a MeldingStatuswaarde concept; allowed: {allowed}") from None


def is_legal(previous: str | None, new: str) -> bool:
    """True when ``previous → new`` is allowed (``previous`` None: the first status, must be Ingediend)."""
    new_n = status(new).notation
    if previous is None:
        return new_n == INITIAL
    return new_n in TRANSITIONS[status(previous).notation]


def check_transition(previous: str | None, new: str) -> None:
    """Raise IllegalTransition with a readable reason unless ``previous → new`` is allowed."""
    if is_legal(previous, new):
        return
    new_s = status(new)
    if previous is None:
        raise IllegalTransition(f"a melding starts as {STATUSES[INITIAL]}, not {new_s}")
    prev_s = status(previous)
    allowed = ", ".join(str(STATUSES[n]) for n in sorted(TRANSITIONS[prev_s.notation])) or "none (final status)"
    raise IllegalTransition(f"status change {prev_s} → {new_s} is not allowed; from {prev_s}: {allowed}")


def check_table() -> list[str]:
    """Consistency problems of the table itself (empty when sound): every status has a row,
    every status is reachable from Ingediend, every non-final status can reach a final one."""
    problems = [f"no row for {s}" for s in STATUSES if s not in TRANSITIONS]
    problems += [f"{s} is final but has transitions" for s, st in STATUSES.items() if st.final and TRANSITIONS.get(s)]

    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = reach(INITIAL)
    problems += [f"{STATUSES[s]} cannot be reached from {STATUSES[INITIAL]}" for s in STATUSES if s not in reachable]
    finals = {s for s, st in STATUSES.items() if st.final}
    problems += [f"{STATUSES[s]} can never reach a final status" for s in STATUSES if not (reach(s) & finals)]
    return problems


# ---------------------------------------------------------------------------------------------
# status events
# ---------------------------------------------------------------------------------------------
def melding_iri(melding_id: str) -> str:
    return MELDING_BASE + melding_id


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("a statusdatum needs a time zone")
    return value.isoformat()


@dataclass(frozen=True)
class StatusChange:
    """One status change of one melding (a ``melding:Meldingstatus``)."""

    melding_id: str
    status: Status
    statusdatum: datetime
    door: str
    """``statuswijzigingDoor``: the agent (organisation IRI) that changed the status."""
    beschrijving: str
    event_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.statusdatum.tzinfo is None:
            raise ValueError("a statusdatum needs a time zone")
        uuid.UUID(self.melding_id)  # ValueError unless the melding id is a UUID
        if not self.event_id:
            object.__setattr__(self, "event_id", self.derived_id(self.melding_id, self.status, self.statusdatum))

    @staticmethod
    def derived_id(melding_id: str, st: Status, when: datetime) -> str:
        """Same melding, status and time → same id: a re-delivered event is recognisable."""
        name = f"{melding_id}|{st.notation}|{when.astimezone(UTC).isoformat()}"
        return STATUS_EVENT_BASE + str(uuid.uuid5(_EVENT_NAMESPACE, name))

    @classmethod
    def create(
        cls,
        melding_id: str,
        new_status: str | Status,
        door: str,
        beschrijving: str | None = None,
        statusdatum: datetime | None = None,
    ) -> StatusChange:
        st = new_status if isinstance(new_status, Status) else status(new_status)
        return cls(
            melding_id=melding_id,
            status=st,
            statusdatum=statusdatum or datetime.now(UTC),
            door=door,
            beschrijving=beschrijving or default_description(st),
        )

    def to_jsonld(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@context": HUB_CONTEXT_IRI,
            "@id": self.event_id,
            "@type": "Meldingstatus",
            "statuswaarde": self.status.iri,
            "statusdatum": _iso(self.statusdatum),
            "statuswijzigingDoor": self.door,
            "beschrijving": self.beschrijving,
            "@reverse": {"heeftStatus": {"@id": melding_iri(self.melding_id)}},
        }
        doc.update(self.extra)
        return doc

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_jsonld(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def kafka_headers(
        self, source: str | None, previous: str | None = None, reported_by: str | None = None
    ) -> tuple[tuple[str, bytes], ...]:
        headers = [
            (Header.MELDING_ID, self.melding_id.encode()),
            (Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),
            (Header.SCHEMA, HUB_CONTEXT_IRI.encode()),
        ]
        if source:
            headers.append((Header.SOURCE, source.encode()))
        if previous:
            headers.append((StatusHeader.PREVIOUS, status(previous).notation.encode()))
        if reported_by:
            headers.append((StatusHeader.REPORTED_BY, reported_by.encode()))
        return tuple(headers)

    @classmethod
    def from_jsonld(cls, doc: Any) -> StatusChange:
        """Parse the compact form :meth:`to_jsonld` writes; NotAStatus / ShapeViolation say why not."""
        if not isinstance(doc, dict):
            raise NotAStatus(f"a status event is a JSON object, not a {type(doc).__name__}")
        if doc.get("@context") != HUB_CONTEXT_IRI:
            raise NotJsonLd(f"a status event needs \"@context\": {HUB_CONTEXT_IRI!r}")
        if doc.get("@type") != "Meldingstatus":
            raise NotAStatus("a status event is a node with \"@type\": \"Meldingstatus\"")
        reverse = doc.get("@reverse")
        ref = reverse.get("heeftStatus") if isinstance(reverse, dict) else None
        if isinstance(ref, list) and len(ref) == 1:
            ref = ref[0]
        ref_iri = ref.get("@id") if isinstance(ref, dict) else ref
        if not isinstance(ref_iri, str) or not ref_iri.startswith(MELDING_BASE):
            raise NotAStatus(
                "a status event names its melding as \"@reverse\": {\"heeftStatus\": {\"@id\": \"" + MELDING_BASE + "<id>\"}}"
            )
        melding_id = ref_iri[len(MELDING_BASE):]
        problems = []
        for term in ("statuswaarde", "statusdatum", "statuswijzigingDoor", "beschrijving"):
            if not isinstance(doc.get(term), str) or not doc[term]:
                problems.append(f"{term}: is required (a string)")
        if problems:
            raise ShapeViolation("status event: " + "; ".join(problems))
        try:
            st = status(doc["statuswaarde"])
        except KeyError as e:
            raise ShapeViolation(f"statuswaarde: {e.args[0]}") from None
        try:
            when = datetime.fromisoformat(doc["statusdatum"])
        except ValueError:
            raise ShapeViolation("statusdatum: must be an xsd:dateTime with time zone") from None
        if when.tzinfo is None:
            raise ShapeViolation("statusdatum: must carry a time zone offset")
        extra = {
            k: v
            for k, v in doc.items()
            if k not in {"@context", "@id", "@type", "@reverse", "statuswaarde", "statusdatum", "statuswijzigingDoor", "beschrijving"}
        }
        try:
            return cls(
                melding_id=melding_id,
                status=st,
                statusdatum=when,
                door=doc["statuswijzigingDoor"],
                beschrijving=doc["beschrijving"],
                event_id=doc.get("@id") or "",
                extra=extra,
            )
        except ValueError as e:
            raise NotAStatus(f"the melding reference is not a melding id (UUID): {e}") from None


DEFAULT_DESCRIPTIONS: dict[str, str] = {
    INGEDIEND: "Uw melding werd goed ontvangen.",
    TOEGEWEZEN: "Uw melding werd toegewezen aan de bevoegde dienst.",
    IN_ONDERZOEK: "De bevoegde dienst onderzoekt uw melding.",
    OPGELOST: "Uw melding werd opgelost.",
    AFGEWEZEN: "Uw melding werd na onderzoek afgewezen.",
    GESLOTEN: "Uw melding kon niet behandeld worden en werd gesloten.",
    INGETROKKEN: "Uw melding werd ingetrokken.",
    HERINGEDIEND: "Uw melding werd opnieuw ingediend.",
    ONONTVANKELIJK: "Uw melding is onontvankelijk.",
    DEFINITIEF_GESLOTEN: "Uw melding werd definitief gesloten.",
    AFGEROND: "De behandeling van uw melding is afgerond.",
}
"""The citizen-facing sentence per status when the authority's system gives no text of its own."""


def default_description(st: Status | str) -> str:
    return DEFAULT_DESCRIPTIONS[(st if isinstance(st, Status) else status(st)).notation]


# ---------------------------------------------------------------------------------------------
# SHACL over a status event (the Meldingstatus shape of the hub's shapes)
# ---------------------------------------------------------------------------------------------
def status_graph(doc: dict[str, Any]) -> Any:
    """The RDF graph of a status event, contexts inlined from local files (nothing fetched)."""
    import pyoxigraph as ox
    from rdflib import Graph

    from hub.jsonld import _ox_term, inline_contexts

    try:
        text = json.dumps(inline_contexts(doc), ensure_ascii=False)
        graph = Graph()
        for quad in ox.parse(text, format=ox.RdfFormat.JSON_LD, base_iri="https://relative-iri.invalid/"):
            graph.add((_ox_term(quad.subject), _ox_term(quad.predicate), _ox_term(quad.object)))
    except HubError:
        raise
    except Exception as e:  # noqa: BLE001 - the parser raises assorted types
        raise NotJsonLd(f"JSON-LD parse error: {' '.join(str(e).split())[:240]}") from e
    return graph


# ---------------------------------------------------------------------------------------------
# the status stage (pure)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusOutcome:
    output: Output
    melding_id: str | None
    change: StatusChange | None = None
    error_class: str | None = None
    reason: str | None = None
    extra: tuple[Output, ...] = ()
    """Nothing goes along with a status event (the loop's outcome protocol asks for it)."""

    @property
    def dead_lettered(self) -> bool:
        return self.error_class is not None


class StatusStage:
    """``meldingen.status`` record → the channel's status topic, or a dead letter.

    Checks, in order: size/UTF-8/JSON (as the hub), the compact status-event form, the
    ``Meldingstatus`` SHACL shape (when a validator is given), the transition against the life
    cycle when the reporter said what it knew before (header ``status-previous``), and the
    ``source`` header naming the channel to send it back to.
    """

    def __init__(self, validator: Any | None = None, max_bytes: int = MAX_STATUS_BYTES) -> None:
        self.validator = validator
        self.max_bytes = max_bytes

    def process(self, record: Record) -> StatusOutcome:
        doc: Any = None
        try:
            doc = decode(record.value, self.max_bytes)
            change = StatusChange.from_jsonld(doc)
            if self.validator is not None:
                result = self.validator.validate(status_graph(doc))
                result.raise_if_invalid()
            previous = record.header(StatusHeader.PREVIOUS)
            if previous:
                try:
                    check_transition(previous, change.status.notation)
                except KeyError as e:
                    raise IllegalTransition(f"header {StatusHeader.PREVIOUS}: {e.args[0]}") from None
            source = record.header(Header.SOURCE)
            if not source:
                raise NoSource("no 'source' header: the channel this melding came from is unknown")
            try:
                topic = status_topic(source)
            except ValueError as e:
                raise NoSource(str(e)) from None
            return StatusOutcome(self._forward(record, change, topic), change.melding_id, change)
        except HubError as error:
            return self._dead(record, error, doc)
        except Exception as exc:  # noqa: BLE001 - a bug must never stop the stage
            return self._dead(record, BugError.from_exception(exc), doc)

    @staticmethod
    def _forward(record: Record, change: StatusChange, topic: str) -> Output:
        keep = {Header.MELDING_ID, Header.CONTENT_TYPE, Header.HUB_VERSION}
        headers = tuple((k, v) for k, v in record.headers if k not in keep) + (
            (Header.MELDING_ID, change.melding_id.encode()),
            (Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),
            (Header.HUB_VERSION, __version__.encode()),
        )
        return Output(topic, change.melding_id.encode(), record.value, headers)

    @staticmethod
    def _dead(record: Record, error: HubError, doc: Any) -> StatusOutcome:
        melding_id = _melding_id_hint(record, doc)
        return StatusOutcome(
            dead_letter(record, error, melding_id),
            melding_id,
            error_class=str(error.error_class.value),
            reason=" ".join(error.reason.split())[:500],
        )


def _melding_id_hint(record: Record, doc: Any) -> str | None:
    if isinstance(doc, dict):
        reverse = doc.get("@reverse")
        ref = reverse.get("heeftStatus") if isinstance(reverse, dict) else None
        iri = ref.get("@id") if isinstance(ref, dict) else ref
        if isinstance(iri, str) and iri.startswith(MELDING_BASE):
            return iri[len(MELDING_BASE):][:100]
    header = record.header(Header.MELDING_ID)
    if header:
        return header[:100]
    if record.key:
        return record.key.decode("utf-8", errors="replace")[:100]
    return None


@lru_cache(maxsize=1)
def lifecycle_rows() -> tuple[tuple[str, str, str, str, str], ...]:
    """(status, phase, code, open/closed, allowed next) per status, for docs and the CLI."""
    return tuple(
        (
            str(s),
            s.fase,
            s.code,
            "final" if s.final else ("open" if s.open else "closed"),
            ", ".join(sorted(TRANSITIONS[s.notation])) or "—",
        )
        for s in STATUSES.values()
    )


__all__ = [
    "STATUS",
    "STATUSES",
    "TRANSITIONS",
    "Status",
    "StatusChange",
    "StatusStage",
    "StatusHeader",
    "check_transition",
    "is_legal",
    "status",
]
