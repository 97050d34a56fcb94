"""The hub's stages as pure functions: decode → validate → route → forward.

Nothing in this module does I/O. :meth:`Pipeline.process` turns one consumed Kafka record
into the records to produce — either the melding for its owner's topic or a dead letter —
so the Kafka loop in :mod:`hub.service` stays a thin shell that only moves bytes and
commits offsets, and every decision here is testable without a broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub import __version__, privacy
from hub.errors import (
    BugError,
    ErrorClass,
    HubError,
    NotJson,
    NotJsonLd,
    NotUtf8,
    ShapeViolation,
    TooLarge,
    UnknownCategory,
)
from hub.melding import Melding
from hub.routing import RouteDecision, RouterLike
from hub.topics import DEADLETTER, JSONLD_CONTENT_TYPE, Header
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
    }
)

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
    """Records that must become visible together with ``output`` (the melding's key record)."""
    error_class: ErrorClass | None = None
    reason: str | None = None
    details: Any = field(default=None, repr=False)

    @property
    def dead_lettered(self) -> bool:
        return self.error_class is not None


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
    record: Record, melding: Melding, decision: RouteDecision, keyring: privacy.KeyRing | None = None
) -> tuple[Output, tuple[Output, ...]]:
    """The melding with ``behandelaar`` set, for the owner's topic, with routing headers.

    With a keyring the reporter's contact details are encrypted for the owner and the hub; the
    data key goes to ``meldingen.keys`` in the same transaction (returned as the second part), so
    ``meldhub gdpr erase`` can later make them unrecoverable everywhere (crypto-shredding)."""
    doc = melding.with_behandelaar(decision.authority_iri)
    extra: tuple[Output, ...] = ()
    if keyring is not None:
        protected = privacy.protect(doc, melding.melding_id, decision.authority_id, keyring)
        doc = protected["melding"]
        if protected["key"] is not None:
            extra = (Output(*privacy.key_output(melding.melding_id, protected["key"])),)
    value = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    headers = _passthrough(record.headers) + (
        (Header.MELDING_ID, melding.melding_id.encode()),
        (Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),
        (Header.AUTHORITY, decision.authority_id.encode()),
        (Header.RULE_ID, decision.rule_id.encode()),
        (Header.RULESET_VERSION, decision.ruleset_version.encode()),
        (Header.MUNICIPALITY_NIS, decision.municipality_nis.encode()),
        (Header.HUB_VERSION, __version__.encode()),
    )
    return Output(decision.topic, melding.melding_id.encode(), value, headers), extra


def dead_letter(record: Record, error: HubError, melding_id: str | None, now: datetime | None = None) -> Output:
    """The original bytes, untouched, with headers that say why and where they came from."""
    first_seen = record.header(Header.FIRST_SEEN) or (now or datetime.now(UTC)).isoformat()
    headers = _passthrough(record.headers, drop={Header.FIRST_SEEN}) + (
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
    ) -> None:
        self.validator = validator
        self.router = router
        self.max_bytes = max_bytes
        self.keyring = keyring

    def process(self, record: Record) -> Outcome:
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

    def _dead(self, record: Record, error: HubError, doc: dict[str, Any] | None) -> Outcome:
        melding_id = _melding_id_hint(record, doc)
        return Outcome(
            dead_letter(record, error, melding_id),
            melding_id,
            error_class=error.error_class,
            reason=_one_line(error.reason),
            details=error.details,
        )
