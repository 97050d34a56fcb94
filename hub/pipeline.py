"""The hub's stages as pure functions: decode → validate → route → forward.

Nothing in this module does I/O. :meth:`Pipeline.process` turns one consumed Kafka record
into the records to produce — either the melding for its owner's topic or a dead letter —
so the Kafka loop in :mod:`hub.service` stays a thin shell that only moves bytes and
commits offsets, and every decision here is testable without a broker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub import __version__, jsontext, privacy, refusal
from hub.errors import (
    BugError,
    ErrorClass,
    HubError,
    NoOwner,
    NotARefusal,
    NotJson,
    NotJsonLd,
    NotUtf8,
    ShapeViolation,
    TooLarge,
    UnknownCategory,
)
from hub.melding import Melding
from hub.routing import RouteDecision, RouterLike
from hub.topics import DEADLETTER, JSONLD_CONTENT_TYPE, REFUSALS, STATUS, TRIAGE, Header
from hub.validation import ShaclValidator

MAX_MESSAGE_BYTES = 1024 * 1024
"""Meldingen over 1 MiB are refused: attachments travel as links (``bijlage``), never inline."""

MAX_DETAILS_BYTES = 32 * 1024
"""Cap on the ``error-details`` header so a dead letter always fits in the dead-letter topic."""

# Headers the hub itself sets; a copy arriving on an inbound record is replaced, never trusted.
_HUB_HEADERS = frozenset(
    {
        Header.AUTHORITY,
        Header.RULE_ID,
        Header.RULESET_VERSION,
        Header.MUNICIPALITY_NIS,
        Header.ERROR_CLASS,
        Header.ERROR_REASON,
        Header.ERROR_DETAILS,
        Header.ORIGINAL_TOPIC,
        Header.ORIGINAL_PARTITION,
        Header.ORIGINAL_OFFSET,
        Header.HUB_VERSION,
        Header.MELDING_ID,
        Header.CONTENT_TYPE,
        Header.ROUTE_HISTORY,
        Header.REFUSED_BY,
        Header.REFUSAL_REASON,
        Header.REFUSED_AT,
        Header.MELDING_KEY,
    }
)
# ... except on a dead letter, where an admin needs to see what an owner's refusal said.
_KEPT_ON_DEAD_LETTERS = frozenset({Header.ROUTE_HISTORY, Header.REFUSED_BY, Header.REFUSAL_REASON, Header.REFUSED_AT})

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record, as far as the stages need it."""

    value: bytes | None
    key: bytes | None = None
    headers: Headers = ()
    topic: str = ""
    partition: int = 0
    offset: int = 0

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", errors="replace")
        return None


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the pipeline decided for one record: the output and a log-safe summary."""

    output: Output
    melding_id: str | None
    decision: RouteDecision | None = None
    extra: tuple[Output, ...] = ()
    """Records that must become visible together with ``output`` (the melding's key record, the
    citizen's status event after a refusal)."""
    refusal: refusal.Refusal | None = None
    """Set when the record was an owner's refusal (re-routed, or sent to triage)."""
    error_class: ErrorClass | None = None
    reason: str | None = None
    details: Any = field(default=None, repr=False)

    @property
    def dead_lettered(self) -> bool:
        return self.error_class is not None

    @property
    def triaged(self) -> bool:
        """No candidate owner left (or too many hops): on the region's triage topic."""
        return self.error_class is None and self.output.topic == TRIAGE


# --- stages ---------------------------------------------------------------------------


def decode(value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Bytes → JSON object. Refuses oversized, empty, non-UTF-8 and non-object input."""
    if value is None or len(value) == 0:
        raise NotJson("empty message: no JSON-LD melding in the record value")
    if len(value) > max_bytes:
        raise TooLarge(f"message is {len(value):,} bytes, over the limit of {max_bytes:,} bytes")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(f"message is not UTF-8 text (invalid byte at position {exc.start})") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise NotJson(f"message is not valid JSON: {msg}") from None
    if not isinstance(doc, dict):
        raise NotJsonLd(f"message is JSON but a {type(doc).__name__}, not a JSON-LD object")
    return doc


def validate(doc: dict[str, Any], validator: ShaclValidator) -> Melding:
    """JSON-LD → RDF → SHACL. An unknown category gets its own class: it is the commonest
    adapter mistake and the fix (map the vendor's category) differs from other violations."""
    # The validator parses the dict itself (the compiled one with its own fast JSON-LD expander;
    # both raise NotJsonLd with the same reasons), saving an rdflib graph per melding.
    result = validator.validate(doc)
    if not result.conforms:
        violations = result.as_json()
        if result.is_unknown_category:
            raise UnknownCategory(
                "category is not a concept of the hub's category scheme: " + _summary(result.violations),
                violations,
            )
        raise ShapeViolation(
            f"melding breaks {len(result.violations)} rule(s) of the hub's shapes: " + _summary(result.violations),
            violations,
        )
    return Melding.from_jsonld(doc)  # raises ShapeViolation / NotJsonLd, never echoing values


def _summary(violations: list[Any], limit: int = 3) -> str:
    parts = []
    for v in violations[:limit]:
        where = v.field or v.path or "melding"
        parts.append(f"{where}: {v.message}")
    more = f" (+{len(violations) - limit} more)" if len(violations) > limit else ""
    return "; ".join(parts) + more


def route(melding: Melding, router: RouterLike) -> RouteDecision:
    """Who owns it: category × municipality (point in polygon) → authority."""
    return router.route(melding.category_iris, melding.points())


def forward(
    record: Record,
    melding: Melding,
    decision: RouteDecision,
    keyring: privacy.KeyRing | None = None,
    history: tuple[refusal.RouteHop, ...] = (),
) -> tuple[Output, tuple[Output, ...]]:
    """The melding with ``behandelaar`` set, for the owner's topic, with routing headers.

    With a keyring the reporter's contact details are encrypted for the owner and the hub; the
    data key goes to ``meldingen.keys`` in the same transaction (returned as the second part), so
    ``meldhub gdpr erase`` can later make them unrecoverable everywhere (crypto-shredding).
    ``history``: the owners that refused it before (header ``route-history``)."""
    doc = melding.with_behandelaar(decision.authority_iri)
    doc, extra = _protected(doc, melding.melding_id, decision.authority_id, keyring)
    value = jsontext.dumps(doc)
    headers = _passthrough(record.headers) + (
        (Header.MELDING_ID, melding.melding_id.encode()),
        (Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),
        (Header.AUTHORITY, decision.authority_id.encode()),
        (Header.RULE_ID, decision.rule_id.encode()),
        (Header.RULESET_VERSION, decision.ruleset_version.encode()),
        (Header.MUNICIPALITY_NIS, decision.municipality_nis.encode()),
        (Header.HUB_VERSION, __version__.encode()),
    )
    if history:
        headers += ((Header.ROUTE_HISTORY, refusal.history_header(history)),)
    return Output(decision.topic, melding.melding_id.encode(), value, headers), extra


def triage(
    record: Record,
    melding: Melding,
    rfs: refusal.Refusal,
    why: str,
    keyring: privacy.KeyRing | None = None,
) -> tuple[Output, tuple[Output, ...]]:
    """The melding for the region's triage topic: no ``behandelaar``, the whole route history
    and why no candidate was left (header ``error-reason`` is not used: this is no error)."""
    doc = melding.to_jsonld()
    doc.pop("behandelaar", None)
    doc, extra = _protected(doc, melding.melding_id, refusal.TRIAGE_RECIPIENT, keyring)
    value = jsontext.dumps(doc)
    headers = _passthrough(record.headers) + (
        (Header.MELDING_ID, melding.melding_id.encode()),
        (Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),
        (Header.ROUTE_HISTORY, refusal.history_header(rfs.history)),
        (Header.TRIAGE_REASON, _one_line(why).encode("utf-8")),
        (Header.HUB_VERSION, __version__.encode()),
    )
    return Output(TRIAGE, melding.melding_id.encode(), value, headers), extra


def _protected(
    doc: dict[str, Any], melding_id: str, owner: str, keyring: privacy.KeyRing | None
) -> tuple[dict[str, Any], tuple[Output, ...]]:
    if keyring is None:
        return doc, ()
    protected = privacy.protect(doc, melding_id, owner, keyring)
    if protected["key"] is None:
        return protected["melding"], ()
    return protected["melding"], (Output(*privacy.key_output(melding_id, protected["key"])),)


def dead_letter(record: Record, error: HubError, melding_id: str | None, now: datetime | None = None) -> Output:
    """The original bytes, untouched, with headers that say why and where they came from."""
    first_seen = record.header(Header.FIRST_SEEN) or (now or datetime.now(UTC)).isoformat()
    kept = tuple((k, v) for k, v in record.headers if k in _KEPT_ON_DEAD_LETTERS)
    headers = _passthrough(record.headers, drop={Header.FIRST_SEEN}) + kept + (
        (Header.ERROR_CLASS, error.error_class.value.encode()),
        (Header.ERROR_REASON, _one_line(error.reason).encode()),
        (Header.ORIGINAL_TOPIC, record.topic.encode()),
        (Header.ORIGINAL_PARTITION, str(record.partition).encode()),
        (Header.ORIGINAL_OFFSET, str(record.offset).encode()),
        (Header.FIRST_SEEN, first_seen.encode()),
        (Header.HUB_VERSION, __version__.encode()),
    )
    if melding_id:
        headers += ((Header.MELDING_ID, melding_id.encode()),)
    if error.details is not None:
        details = json.dumps(error.details, ensure_ascii=False).encode("utf-8")
        if len(details) > MAX_DETAILS_BYTES:
            details = json.dumps({"truncated": True, "size": len(details)}).encode()
        headers += ((Header.ERROR_DETAILS, details),)
    return Output(DEADLETTER, record.key, record.value, headers)


def _passthrough(headers: Headers, drop: frozenset[str] | set[str] = frozenset()) -> Headers:
    return tuple((k, v) for k, v in headers if k not in _HUB_HEADERS and k not in drop)


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _melding_id_hint(record: Record, doc: dict[str, Any] | None) -> str | None:
    """Best-effort id for a message that failed before the model was built (for admins)."""
    if doc is not None:
        ident = doc.get("identificator")
        if isinstance(ident, dict) and isinstance(ident.get("notatie"), str):
            return ident["notatie"][:100]
    if record.key:
        try:
            return record.key.decode("utf-8")[:100]
        except UnicodeDecodeError:
            return None
    return None


# --- the whole pipeline ----------------------------------------------------------------


class Pipeline:
    """validate → route → forward for one record; every failure becomes a dead letter."""

    def __init__(
        self,
        validator: ShaclValidator,
        router: RouterLike,
        max_bytes: int = MAX_MESSAGE_BYTES,
        keyring: privacy.KeyRing | None = None,
        max_route_hops: int = refusal.DEFAULT_MAX_HOPS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.validator = validator
        self.router = router
        self.max_bytes = max_bytes
        self.keyring = keyring
        self.max_route_hops = max_route_hops
        self.clock = clock

    def process(self, record: Record) -> Outcome:
        if record.topic == REFUSALS:
            return self.reroute(record)
        doc: dict[str, Any] | None = None
        try:
            doc = decode(record.value, self.max_bytes)
            melding = validate(doc, self.validator)
            decision = route(melding, self.router)
            output, extra = forward(record, melding, decision, self.keyring)
            return Outcome(output, melding.melding_id, decision, extra)
        except HubError as error:
            return self._dead(record, error, doc)
        except Exception as exc:  # noqa: BLE001 - a bug must never stop the hub
            return self._dead(record, BugError.from_exception(exc), doc)

    def reroute(self, record: Record) -> Outcome:
        """An owner's "not ours" (:mod:`hub.refusal`): the next candidate, or triage; and the
        citizen's channel is told, in the same transaction."""
        doc: dict[str, Any] | None = None
        try:
            rfs = refusal.read_refusal(record.headers)
            doc = self._readable(decode(record.value, self.max_bytes), record)
            melding = validate(doc, self.validator)
            decision: RouteDecision | None = None
            why = ""
            if rfs.hops >= self.max_route_hops:
                why = f"{rfs.hops} behandelaars weigerden deze melding (maximum {self.max_route_hops})"
            else:
                try:
                    decision = self.router.route(melding.category_iris, melding.points(), rfs.refused)
                except NoOwner:
                    why = "geen andere kandidaat-behandelaar volgens de routeringsregels"
            if decision is not None:
                output, extra = forward(record, melding, decision, self.keyring, rfs.history)
            else:
                output, extra = triage(record, melding, rfs, why, self.keyring)
            # the hand-over happens now: never dated before a status the owner reported earlier
            when = max(rfs.refused_at, self.clock())
            status = _handover_status(record, melding.melding_id, when, decision)
            return Outcome(output, melding.melding_id, decision, extra + status, refusal=rfs, reason=why or None)
        except HubError as error:
            return self._dead(record, error, doc)
        except Exception as exc:  # noqa: BLE001 - a bug must never stop the hub
            return self._dead(record, BugError.from_exception(exc), doc)

    def _readable(self, doc: dict[str, Any], record: Record) -> dict[str, Any]:
        """A refused melding with encrypted contact details, decrypted with the hub's wrap of its
        key (header ``melding-key``) so they can be encrypted anew for the next owner only. Without
        a key record (the contact details were erased; ``meldhub gdpr erase``) or with a key
        tombstoned for the hub, it goes on without them: they are unrecoverable anyway."""
        if not privacy.is_protected(doc):
            return doc
        raw = record.header(Header.MELDING_KEY)
        if not raw:  # erased (the owner's adapter found no key record): on without them
            return privacy.reveal(doc, {})
        if self.keyring is None:
            raise NotARefusal(
                "the refused melding has encrypted contact details and a key record, but this hub has no "
                "key to re-encrypt them (MELDHUB_PROTECT_CONTACT_DETAILS is off)"
            )
        try:
            key_record = json.loads(raw)
            melding_id = privacy.melding_id_of(doc)
            data_key = privacy.unwrap(key_record, privacy.Identity.hub(self.keyring.hub_key), melding_id)
        except (ValueError, privacy.PrivacyError) as exc:
            raise NotARefusal(f"header {Header.MELDING_KEY}: {exc}") from None
        if data_key is None:  # erased meanwhile, or never wrapped for the hub: route without them
            return privacy.reveal(doc, {})
        return privacy.reveal(doc, {melding_id: data_key})

    def _dead(self, record: Record, error: HubError, doc: dict[str, Any] | None) -> Outcome:
        melding_id = _melding_id_hint(record, doc)
        return Outcome(
            dead_letter(record, error, melding_id),
            melding_id,
            error_class=error.error_class,
            reason=_one_line(error.reason),
            details=error.details,
        )


def _handover_status(
    record: Record, melding_id: str, when: datetime, decision: RouteDecision | None
) -> tuple[Output, ...]:
    """``Toegewezen aan`` for the citizen's channel: who has the melding now (never the owner's
    free-text reason, which is written for civil servants). No ``source`` header: no channel to tell."""
    from hub.status import TOEGEWEZEN, StatusChange  # hub.status builds on this module

    source = record.header(Header.SOURCE)
    if not source:
        return ()
    if decision is not None:
        door = decision.authority_iri
        text = f"Uw melding werd doorgestuurd naar {decision.authority_name}, die ze verder behandelt."
    else:
        door = refusal.TRIAGE_AGENT
        text = "Uw melding wordt door de regionale triagedienst bekeken om de juiste behandelaar te vinden."
    change = StatusChange.create(melding_id, TOEGEWEZEN, door, text, statusdatum=when)
    headers = change.kafka_headers(source=source, reported_by="hub")
    return (Output(STATUS, melding_id.encode(), change.to_bytes(), headers),)
