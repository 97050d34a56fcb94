"""Dead letters an admin can work with: a read model over ``meldingen.deadletter``, redaction,
state from admin actions, and replay / discard that never change a dead letter.

Why this shape:

- **A dead letter is never changed.** It is the evidence of what a producer sent and why the
  hub refused it. Admin decisions are separate records on ``meldingen.deadletter.actions``
  (compacted, keyed ``"<partition>/<offset>"``: the latest action per dead letter is its state)
  and on the append-only audit trail ``meldingen.audit`` (:mod:`hub.audit`).
- **Replay makes a new message** on ``meldingen.inbound``: the original bytes, or an edited
  JSON-LD that passed the hub's SHACL shapes first, keyed by the melding id, with headers
  ``replayed-from`` / ``replayed-by`` / ``replayed-at``; ``source`` and ``first-seen`` are kept,
  so a melding that fails again is dead-lettered with its first failure time.
- **Replaying twice yields one melding.** The replayed message, the action and the audit event
  are written in one Kafka transaction by a producer with a fixed transactional id
  (:data:`TRANSACTIONAL_ID`). Starting that transaction fences every other admin process (their
  open transaction is aborted, their next commit fails) and only then is the action topic read
  (``read_committed``): a dead letter already replayed or discarded is seen, and skipped. The hub
  reads ``meldingen.inbound`` with ``read_committed`` too, so an aborted replay never reaches it.
- **No personal data on screens by default.** :meth:`DeadLetter.redacted` replaces the reporter
  (``melder``, ``naam``, ``contactpunt``, ``email``, ``telefoon`` …) by «redacted» and masks
  e-mail addresses and phone numbers in free text (:mod:`hub.logs`); a value that is not JSON
  (not UTF-8, truncated, plain text) gets a scrubbed text preview. Revealing is audited.

The last section holds the delivery policy for vendor adapters on top of their retries
(``adapters.base.with_retries``): pause a destination that keeps failing, dead-letter a refused
melding with the destination named. The classes and the policy API only; the adapter loops use them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from hub import audit
from hub.audit import AUDIT, AuditAction, AuditEvent, now_iso, parse_time
from hub.errors import ErrorClass, HubError, NotJson, NotUtf8
from hub.kafka_auth import client_kwargs
from hub.logs import PERSONAL_KEYS, REDACTED, scrub
from hub.topics import AUTHORITY_PREFIX, DEADLETTER, DEADLETTER_ACTIONS, INBOUND, JSONLD_CONTENT_TYPE, Header

T = TypeVar("T")

TRANSACTIONAL_ID = "meldhub-dlq-admin"
"""One transactional id for every process that replays or discards: starting a transaction
fences the others, so two admins can never both replay the same dead letter."""

MAX_RECORD_BYTES = 8 * 1024 * 1024
PREVIEW_CHARS = 4000
"""A non-JSON payload is shown as a scrubbed text preview of at most this many characters."""
SHORTEN_STRINGS = 2000
"""In displayed JSON, longer strings are cut (a 1 MiB ``beschrijving`` must not flood a screen)."""


# =============================================================================================
# redaction
# =============================================================================================

_EXTRA_PERSONAL = frozenset(
    {
        "contactpoint",
        "telephone",
        "e-mail",
        "emailadres",
        "e-mailadres",
        "telefoonnummer",
        "gsm",
        "voornaam",
        "achternaam",
        "familienaam",
        "givenname",
        "familyname",
        "rijksregisternummer",
    }
)
_PERSONAL_LOWER = frozenset(k.lower() for k in PERSONAL_KEYS) | _EXTRA_PERSONAL


def is_personal_key(key: str) -> bool:
    """``melder``, ``naam``, ``contactpunt``, ``email``, ``telefoon``… also as a full IRI or CURIE
    (``https://data.vlaanderen.be/ns/melding#melder``, ``schema:email``)."""
    local = re.split(r"[#/:]", key)[-1]
    return key in PERSONAL_KEYS or local.lower() in _PERSONAL_LOWER


_LONG_RUN = re.compile(r"[A-Za-z0-9._%+-]{256,}")


def scrub_text(text: str) -> str:
    """:func:`hub.logs.scrub` (e-mail addresses, phone numbers), safe for megabytes of text.

    ``scrub``'s e-mail pattern backtracks quadratically over a long run of word characters (a
    pasted photo, ``AAAA…``): 1 MiB would take many minutes. Runs of 256+ such characters hold no
    ``@`` and, having no word boundary inside, no phone number either; they are kept as they are
    and only the text between them is scrubbed."""
    if len(text) <= 4096 or not _LONG_RUN.search(text):
        return scrub(text)
    parts: list[str] = []
    pos = 0
    for m in _LONG_RUN.finditer(text):
        parts.append(scrub(text[pos : m.start()]))
        parts.append(m.group())
        pos = m.end()
    parts.append(scrub(text[pos:]))
    return "".join(parts)


def redact_json(value: Any) -> Any:
    """A copy of a JSON value with personal keys' values replaced and free text scrubbed."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if is_personal_key(str(k)) else redact_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value


_JSON_KEY = re.compile(r'"((?:[^"\\\n]|\\.){1,200})"\s*:\s*')


def redact_text(text: str) -> str:
    """Scrub text that is not (valid) JSON: a truncated or mis-encoded melding still has
    ``"naam": "…"`` pairs — their values are replaced — and e-mail addresses and phone numbers
    are masked anywhere."""
    out: list[str] = []
    pos = 0
    while (m := _JSON_KEY.search(text, pos)) is not None:
        if is_personal_key(m.group(1)):
            out.append(text[pos : m.end()])
            out.append(f'"{REDACTED}"')
            pos = _skip_json_value(text, m.end())
        else:
            out.append(text[pos : m.end()])
            pos = m.end()
    out.append(text[pos:])
    return scrub_text("".join(out))


def _skip_json_value(text: str, i: int) -> int:
    """Index just after the (possibly broken) JSON value starting at ``i``."""
    n = len(text)
    if i >= n:
        return n
    if text[i] == '"':
        return _skip_string(text, i)
    if text[i] in "{[":
        depth = 0
        while i < n:
            c = text[i]
            if c == '"':
                i = _skip_string(text, i)
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return n
    while i < n and text[i] not in ",}]\n":
        i += 1
    return i


def _skip_string(text: str, i: int) -> int:
    i += 1
    n = len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return n


def shorten_strings(value: Any, limit: int = SHORTEN_STRINGS) -> Any:
    """For display only: cut strings longer than ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… (+{len(value) - limit:,} tekens)"
    if isinstance(value, dict):
        return {k: shorten_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten_strings(v, limit) for v in value]
    return value


_MISSING = object()


def restore_redacted(edited: Any, original: Any = _MISSING) -> Any:
    """Put the original values back where an edited copy of the *redacted* document still says
    «redacted»: an admin fixes ``titel`` in the redacted view and the replayed melding keeps
    its reporter. A free text that was only scrubbed and not edited gets its original back."""
    if original is _MISSING:
        return edited
    if isinstance(edited, str):
        if edited == REDACTED:
            return original
        if REDACTED in edited and isinstance(original, str) and edited == scrub_text(original):
            return original
        return edited
    if isinstance(edited, dict) and isinstance(original, dict):
        return {k: restore_redacted(v, original.get(k, _MISSING)) for k, v in edited.items()}
    if isinstance(edited, list) and isinstance(original, list):
        return [restore_redacted(v, original[i] if i < len(original) else _MISSING) for i, v in enumerate(edited)]
    return edited


def contains_redacted(value: Any) -> bool:
    if isinstance(value, str):
        return REDACTED in value
    if isinstance(value, dict):
        return any(contains_redacted(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_redacted(v) for v in value)
    return False


def _parse_json(value: bytes | None) -> tuple[Any, bool]:
    """(JSON value, True) or (None, False) when the bytes are not UTF-8 JSON."""
    if not value:
        return None, False
    try:
        return json.loads(value.decode("utf-8")), True
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, False


# =============================================================================================
# the read model
# =============================================================================================


class State(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


STATE_LABELS_NL = {State.OPEN: "open", State.REPLAYED: "opnieuw aangeboden", State.DISCARDED: "afgevoerd"}

STAGE_OF: dict[str, str] = {
    ErrorClass.TOO_LARGE: "decode",
    ErrorClass.NOT_UTF8: "decode",
    ErrorClass.NOT_JSON: "decode",
    ErrorClass.NOT_JSONLD: "validate",
    ErrorClass.SHAPE_VIOLATION: "validate",
    ErrorClass.UNKNOWN_CATEGORY: "validate",
    ErrorClass.MISSING_LOCATION: "route",
    ErrorClass.OUTSIDE_REGION: "route",
    ErrorClass.NO_OWNER: "route",
    ErrorClass.NOT_A_REFUSAL: "route",
    ErrorClass.BUG: "hub",
}
"""The stage where a melding of each error class stopped (for metrics and overviews)."""

Headers = tuple[tuple[str, bytes], ...]


def dead_letter_id(partition: int, offset: int) -> str:
    """The id admins use and the key of the action topic: ``"<partition>/<offset>"``."""
    return f"{partition}/{offset}"


def parse_dead_letter_id(text: str) -> tuple[int, int]:
    """``"0/17"`` or ``"meldingen.deadletter/0/17"`` → ``(0, 17)``."""
    raw = text.strip()
    if raw.startswith(DEADLETTER + "/"):
        raw = raw[len(DEADLETTER) + 1 :]
    m = re.fullmatch(r"(\d{1,6})[/:](\d{1,19})", raw)
    if not m:
        raise ValueError(f"not a dead-letter id: {text!r} (expected <partition>/<offset>, e.g. 0/17)")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class DeadLetter:
    """One record of ``meldingen.deadletter``, as the hub wrote it."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    """When it was dead-lettered (the record's Kafka timestamp)."""
    key: bytes | None
    value: bytes | None = field(repr=False)
    headers: Headers = field(repr=False)

    # -- parsed from the headers ----------------------------------------------------------
    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return (v or b"").decode("utf-8", errors="replace")
        return None

    @property
    def id(self) -> str:
        return dead_letter_id(self.partition, self.offset)

    @property
    def ref(self) -> str:
        """``meldingen.deadletter/<partition>/<offset>``: the ``replayed-from`` header's value."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def melding_id(self) -> str | None:
        if (mid := self.header(Header.MELDING_ID)) is not None:
            return mid
        return self.key.decode("utf-8", errors="replace") if self.key else None

    @property
    def error_class(self) -> str:
        return self.header(Header.ERROR_CLASS) or "unknown"

    @property
    def reason(self) -> str:
        return self.header(Header.ERROR_REASON) or ""

    @property
    def details(self) -> Any:
        raw = self.header(Header.ERROR_DETAILS)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    @property
    def violations(self) -> list[dict[str, Any]]:
        """SHACL violations (``field``, ``component``, ``message``, ``value``, ``focus_node``)."""
        d = self.details
        if isinstance(d, list):
            return [v for v in d if isinstance(v, dict) and "message" in v]
        return []

    @property
    def source(self) -> str | None:
        return self.header(Header.SOURCE)

    @property
    def destination(self) -> str | None:
        """The authority it was routed to before it failed (delivery failures of an adapter):
        the ``authority`` header, else derived from an original topic ``meldingen.authority.<id>``."""
        if a := self.header(Header.AUTHORITY):
            return a
        original = self.original_topic or ""
        return original[len(AUTHORITY_PREFIX) :] if original.startswith(AUTHORITY_PREFIX) else None

    @property
    def original_topic(self) -> str | None:
        return self.header(Header.ORIGINAL_TOPIC)

    @property
    def original_partition(self) -> int | None:
        return _int(self.header(Header.ORIGINAL_PARTITION))

    @property
    def original_offset(self) -> int | None:
        return _int(self.header(Header.ORIGINAL_OFFSET))

    @property
    def first_seen(self) -> datetime | None:
        return parse_time(self.header(Header.FIRST_SEEN))

    @property
    def replayed_from(self) -> str | None:
        """Set when this dead letter is itself the failure of a replay."""
        return self.header(Header.REPLAYED_FROM)

    @property
    def stage(self) -> str:
        return STAGE_OF.get(self.error_class, "delivery" if self.destination else "hub")

    # -- views --------------------------------------------------------------------------------
    def redacted(self) -> DeadLetterView:
        """What admins see by default: no personal data in payload or headers."""
        return DeadLetterView.of(self, reveal=False)

    def revealed(self) -> DeadLetterView:
        """Everything, unredacted. Callers audit first (:meth:`DeadLetterStore.reveal`)."""
        return DeadLetterView.of(self, reveal=True)

    def document(self) -> Any:
        """The value as JSON, or None when it is not UTF-8 JSON."""
        doc, ok = _parse_json(self.value)
        return doc if ok else None

    @classmethod
    def from_record(cls, record: Any) -> DeadLetter:
        """From an aiokafka ``ConsumerRecord`` (or anything with the same attributes)."""
        ts = getattr(record, "timestamp", None)
        when = datetime.fromtimestamp(ts / 1000, UTC) if ts and ts > 0 else datetime.now(UTC)
        headers = tuple((k, v if v is not None else b"") for k, v in (record.headers or ()))
        return cls(record.topic, record.partition, record.offset, when, record.key, record.value, headers)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadLetterView:
    """A dead letter prepared for people: headers, violations and the payload, redacted unless
    ``revealed``. ``document`` is the JSON value (for the editor); ``payload`` the text to show."""

    id: str
    ref: str
    revealed: bool
    melding_id: str | None
    error_class: str
    reason: str
    stage: str
    source: str | None
    destination: str | None
    original: str | None
    first_seen: str | None
    dead_lettered_at: str
    replayed_from: str | None
    headers: dict[str, str]
    violations: list[dict[str, Any]]
    details: Any
    payload_kind: str  # "json", "text" or "empty"
    payload: str
    document: Any
    size: int

    @classmethod
    def of(cls, dl: DeadLetter, reveal: bool) -> DeadLetterView:
        clean: Callable[[Any], Any] = (lambda v: v) if reveal else redact_json
        doc, is_json = _parse_json(dl.value)
        kind, payload, document = "empty", "", None
        if is_json:
            try:
                document = clean(doc)
                payload = json.dumps(shorten_strings(document), ensure_ascii=False, indent=2)
                kind = "json"
            except RecursionError:
                is_json = False
        if not is_json and dl.value:
            text = dl.value.decode("utf-8", errors="replace")
            more = len(text) - PREVIEW_CHARS
            text = text[:PREVIEW_CHARS]  # cut first: redact_text copes with a cut JSON value
            if not reveal:
                text = redact_text(text)
            payload = text + (f"\n… (+{more:,} tekens)" if more > 0 else "")
            kind = "text"
        headers = {}
        for k, v in dl.headers:
            text = (v or b"").decode("utf-8", errors="replace")
            headers[k] = text if reveal else (REDACTED if is_personal_key(k) else scrub_text(text))
        original = None
        if dl.original_topic:
            original = f"{dl.original_topic}/{dl.original_partition}/{dl.original_offset}"
        first = dl.first_seen
        return cls(
            id=dl.id,
            ref=dl.ref,
            revealed=reveal,
            melding_id=dl.melding_id,
            error_class=dl.error_class,
            reason=dl.reason if reveal else scrub_text(dl.reason),
            stage=dl.stage,
            source=dl.source,
            destination=dl.destination,
            original=original,
            first_seen=first.isoformat() if first else dl.header(Header.FIRST_SEEN),
            dead_lettered_at=dl.timestamp.isoformat(timespec="milliseconds"),
            replayed_from=dl.replayed_from,
            headers=headers,
            violations=clean(dl.violations),
            details=clean(dl.details),
            payload_kind=kind,
            payload=payload,
            document=document,
            size=len(dl.value or b""),
        )

    def as_dict(self, full_document: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not full_document or self.payload_kind != "json":
            out.pop("document")
        return out


# =============================================================================================
# state: admin actions
# =============================================================================================


@dataclass(frozen=True)
class Action:
    """The latest admin decision on one dead letter (value on ``meldingen.deadletter.actions``)."""

    deadletter: str  # "<partition>/<offset>"
    action: str  # State.REPLAYED or State.DISCARDED
    by: str
    at: str
    reason: str | None = None
    channel: str = "cli"
    replay: dict[str, Any] | None = None
    """For a replay: ``topic``, ``partition``, ``offset`` of the new message, ``melding_id``, ``edited``."""

    @property
    def state(self) -> State:
        return State(self.action) if self.action in State._value2member_map_ else State.OPEN

    def to_value(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode("utf-8")

    @classmethod
    def from_value(cls, key: bytes | None, value: bytes | None) -> Action | None:
        try:
            data = json.loads(value or b"")
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or "action" not in data:
            return None
        data.setdefault("deadletter", (key or b"").decode("utf-8", errors="replace"))
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known.setdefault("by", "?")
        known.setdefault("at", "")
        return cls(**known)


class ActionState:
    """Folds the action topic: the latest action per dead letter (as compaction will keep)."""

    def __init__(self) -> None:
        self._latest: dict[str, Action] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode("utf-8", errors="replace")
        if value is None:  # tombstone: the action was withdrawn
            self._latest.pop(k, None)
            return
        action = Action.from_value(key, value)
        if action is not None:
            self._latest[k] = action

    def put(self, action: Action) -> None:
        self._latest[action.deadletter] = action

    def get(self, dl_id: str) -> Action | None:
        return self._latest.get(dl_id)

    def state(self, dl_id: str) -> State:
        a = self._latest.get(dl_id)
        return a.state if a else State.OPEN

    def __len__(self) -> int:
        return len(self._latest)


@dataclass(frozen=True)
class Entry:
    """A dead letter with its current state."""

    dead_letter: DeadLetter
    state: State
    action: Action | None = None

    @property
    def id(self) -> str:
        return self.dead_letter.id


# =============================================================================================
# filters
# =============================================================================================

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")


def parse_when(text: str | None, now: datetime | None = None) -> datetime | None:
    """``2026-11-20``, ``2026-11-20T08:00``, ``2026-11-20T08:00:00+01:00`` (UTC if no zone), or
    relative to now: ``30m``, ``6h``, ``2d``, ``1w``."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    if m := _RELATIVE.match(raw):
        n, unit = int(m.group(1)), m.group(2)
        seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use e.g. 2026-11-20, 2026-11-20T08:00+01:00, 6h, 2d)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters: every given criterion must hold. ``source`` and ``destination``
    accept shell patterns (``meldingsapp-*``); times compare with the dead-lettering time."""

    error_classes: frozenset[str] = frozenset()
    source: str | None = None
    destination: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    melding_id: str | None = None
    states: frozenset[State] = frozenset()
    ids: frozenset[str] = frozenset()

    def matches(self, dl: DeadLetter, state: State) -> bool:
        if self.ids and dl.id not in self.ids:
            return False
        if self.error_classes and dl.error_class not in self.error_classes:
            return False
        if self.source and not fnmatch.fnmatchcase((dl.source or "").lower(), self.source.lower()):
            return False
        if self.destination and not fnmatch.fnmatchcase((dl.destination or "").lower(), self.destination.lower()):
            return False
        if self.since and dl.timestamp < self.since:
            return False
        if self.until and dl.timestamp > self.until:
            return False
        if self.melding_id and (dl.melding_id or "").lower() != self.melding_id.strip().lower():
            return False
        if self.states and state not in self.states:
            return False
        return True

    def is_empty(self) -> bool:
        return not (
            self.error_classes or self.source or self.destination or self.since or self.until
            or self.melding_id or self.states or self.ids
        )

    def describe(self) -> str:
        """For the audit trail of a bulk action."""
        parts = []
        if self.ids:
            parts.append("ids=" + ",".join(sorted(self.ids)))
        if self.error_classes:
            parts.append("error-class=" + ",".join(sorted(self.error_classes)))
        for name in ("source", "destination", "melding_id"):
            if v := getattr(self, name):
                parts.append(f"{name.replace('_', '-')}={v}")
        if self.since:
            parts.append(f"since={self.since.isoformat()}")
        if self.until:
            parts.append(f"until={self.until.isoformat()}")
        if self.states:
            parts.append("state=" + ",".join(sorted(self.states)))
        return " ".join(parts) or "all"


def select(entries: Iterable[Entry], flt: DeadLetterFilter | None) -> list[Entry]:
    return [e for e in entries if flt is None or flt.matches(e.dead_letter, e.state)]


# =============================================================================================
# edited meldingen
# =============================================================================================


@dataclass(frozen=True)
class EditCheck:
    """The verdict on an edited melding before a replay."""

    ok: bool
    document: Any = None
    melding_id: str | None = None
    error_class: str | None = None
    reason: str | None = None
    violations: list[dict[str, Any]] = field(default_factory=list)
    route: str | None = None
    """The authority the hub would route it to now (a preview), if a router was given."""
    route_problem: str | None = None


def check_edited(edited: str | bytes | Mapping[str, Any], original: DeadLetter | None, validator: Any, router: Any = None) -> EditCheck:
    """Parse an edited melding (text, bytes or a dict), put back the values the admin saw as
    «redacted», and validate it as the hub will (SHACL, then the typed model). Violations are
    reported with the hub's redaction of personal values."""
    from hub.pipeline import validate  # rdflib/pyshacl only when an edit is checked

    try:
        if isinstance(edited, Mapping):
            doc: Any = dict(edited)
        else:
            raw = edited.encode("utf-8") if isinstance(edited, str) else edited
            if not raw.strip():
                raise NotJson("the edited melding is empty")
            try:
                doc = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise NotUtf8(f"the edited melding is not UTF-8 (byte {exc.start})") from None
            except ValueError as exc:
                raise NotJson(f"the edited melding is not JSON: {exc}") from None
    except HubError as e:
        return EditCheck(False, None, None, e.error_class.value, e.reason)
    if original is not None:
        base = original.document()
        if base is not None:
            doc = restore_redacted(doc, base)
    if contains_redacted(doc):
        return EditCheck(
            False,
            doc,
            None,
            ErrorClass.SHAPE_VIOLATION.value,
            f"the edited melding still contains {REDACTED} where the original has no value to put back: "
            "replace it, or remove the field",
        )
    if not isinstance(doc, dict):
        return EditCheck(False, doc, None, ErrorClass.NOT_JSONLD.value, "the edited melding is not a JSON object")
    ident = doc.get("identificator")
    melding_id = ident.get("notatie") if isinstance(ident, dict) and isinstance(ident.get("notatie"), str) else None
    try:
        melding = validate(doc, validator)
    except HubError as e:
        details = e.details if isinstance(e.details, list) else []
        return EditCheck(False, doc, melding_id, e.error_class.value, scrub(e.reason), redact_json(details))
    except Exception as e:  # noqa: BLE001 - whatever the hub would dead-letter as a bug
        return EditCheck(False, doc, melding_id, ErrorClass.BUG.value, f"{type(e).__name__} while validating")
    route, problem = None, None
    if router is not None:
        try:
            route = router.route(melding.category_iris, melding.points()).authority_id
        except HubError as e:
            problem = f"{e.error_class.value}: {scrub(e.reason)}"
        except Exception as e:  # noqa: BLE001
            problem = type(e).__name__
    return EditCheck(True, doc, melding.melding_id, route=route, route_problem=problem)


# =============================================================================================
# Kafka: the store
# =============================================================================================


class DeadLetterNotFound(LookupError):
    pass


class ReplayRefused(Exception):
    """A replay or discard that must not happen; the message says why (for the admin)."""


class EditedInvalid(ReplayRefused):
    def __init__(self, check: EditCheck) -> None:
        super().__init__(f"the edited melding is still invalid ({check.error_class}): {check.reason}")
        self.check = check


@dataclass(frozen=True)
class ReplayResult:
    entry: Entry
    status: str  # "replayed", "already-replayed"
    action: Action

    @property
    def new_ref(self) -> str | None:
        r = self.action.replay or {}
        return f"{r.get('topic')}/{r.get('partition')}/{r.get('offset')}" if r else None


@dataclass
class BulkOutcome:
    replayed: list[ReplayResult] = field(default_factory=list)
    skipped: list[ReplayResult] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (dead letter id, why)


_RETRYABLE_TXN = ("ProducerFenced", "InvalidProducerEpoch", "InvalidTxnState", "TransactionCoordinatorFenced",
                  "OutOfOrderSequenceNumber", "IllegalOperation")
_DROP_ON_REPLAY = frozenset(
    {
        Header.ERROR_CLASS,
        Header.ERROR_REASON,
        Header.ERROR_DETAILS,
        Header.ORIGINAL_TOPIC,
        Header.ORIGINAL_PARTITION,
        Header.ORIGINAL_OFFSET,
        Header.HUB_VERSION,
        Header.REPLAYED_FROM,
        Header.REPLAYED_BY,
        Header.REPLAYED_AT,
        Header.AUTHORITY,
        Header.RULE_ID,
        Header.RULESET_VERSION,
        Header.MUNICIPALITY_NIS,
        Header.MELDING_ID,
        Header.CONTENT_TYPE,
    }
)


def replay_headers(dl: DeadLetter, melding_id: str, by: str, at: str, edited: bool) -> Headers:
    """Headers of a replayed message: the producer's own headers (``source``, ``first-seen``,
    …) kept, the hub's verdict dropped, and where/who/when of the replay added."""
    kept = tuple((k, v) for k, v in dl.headers if k not in _DROP_ON_REPLAY)
    if dl.header(Header.FIRST_SEEN) is None:
        kept += ((Header.FIRST_SEEN, dl.timestamp.isoformat().encode()),)
    added: Headers = (
        (Header.MELDING_ID, melding_id.encode()),
        (Header.REPLAYED_FROM, dl.ref.encode()),
        (Header.REPLAYED_BY, by.encode()),
        (Header.REPLAYED_AT, at.encode()),
    )
    if edited:
        added += ((Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),)
    return kept + added


class _Tail:
    """Reads every partition of a topic from the start, then whatever was added (read_committed)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: Any = None
        self._tps: list[Any] = []

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from hub.kafka_io import partitions_of

        parts = (await partitions_of(self.bootstrap, [self.topic]))[self.topic]
        self._tps = [TopicPartition(self.topic, p) for p in parts]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **client_kwargs(),
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            fetch_max_bytes=4 * MAX_RECORD_BYTES,
        )
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)
        # Paused between reads: an idle long-poll fetch would hold up the next ListOffsets
        # request on the same connection for fetch_max_wait_ms (every page 0.5 s slower).
        self._consumer.pause(*self._tps)

    async def read_new(self, timeout: float = 30.0) -> list[Any]:
        """Records up to the partitions' current (last stable) end offsets."""
        c = self._consumer
        end = await c.end_offsets(self._tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        behind = [tp for tp in self._tps if await c.position(tp) < end[tp]]
        if not behind:
            return out
        c.resume(*behind)
        try:
            while behind:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {self.topic} did not reach its end within {timeout:.0f}s")
                for tp, records in (await c.getmany(*behind, timeout_ms=300)).items():
                    out.extend(r for r in records if r.offset < end[tp])
                behind = [tp for tp in behind if await c.position(tp) < end[tp]]
        finally:
            c.pause(*self._tps)
        return out

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class DeadLetterStore:
    """The dead letters and their state, read from Kafka, with replay and discard.

    Use as ``async with DeadLetterStore(bootstrap) as store:``. :meth:`refresh` reads what was
    added since the last call; the console keeps one store for its lifetime, the CLI one per
    command. One store runs one transaction at a time.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        channel: str = "cli",
        create_topics: bool = True,
        transactional_id: str = TRANSACTIONAL_ID,
    ) -> None:
        self.bootstrap = bootstrap
        self.channel = channel
        self.create_topics = create_topics
        self.transactional_id = transactional_id
        self._dead = _Tail(bootstrap, DEADLETTER)
        self._actions_tail = _Tail(bootstrap, DEADLETTER_ACTIONS)
        self.actions = ActionState()
        self._letters: dict[str, DeadLetter] = {}
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> DeadLetterStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.create_topics:
            await ensure_dlq_topics(self.bootstrap)
        await self._dead.start()
        await self._actions_tail.start()
        await self.refresh()

    async def stop(self) -> None:
        await self._drop_producer()
        await self._dead.stop()
        await self._actions_tail.stop()

    # -- reading ----------------------------------------------------------------------------------
    async def refresh(self) -> None:
        for r in await self._dead.read_new():
            dl = DeadLetter.from_record(r)
            self._letters[dl.id] = dl
        await self._refresh_actions()

    async def _refresh_actions(self) -> None:
        for r in await self._actions_tail.read_new():
            self.actions.apply(r.key, r.value)

    def entry(self, dl: DeadLetter) -> Entry:
        action = self.actions.get(dl.id)
        return Entry(dl, action.state if action else State.OPEN, action)

    def entries(self, flt: DeadLetterFilter | None = None) -> list[Entry]:
        """Matching dead letters, newest first."""
        letters = sorted(self._letters.values(), key=lambda d: (d.timestamp, d.partition, d.offset), reverse=True)
        return select((self.entry(d) for d in letters), flt)

    def get(self, dl_id: str) -> Entry:
        p, o = parse_dead_letter_id(dl_id)
        dl = self._letters.get(dead_letter_id(p, o))
        if dl is None:
            raise DeadLetterNotFound(f"no dead letter {DEADLETTER}/{p}/{o}")
        return self.entry(dl)

    # -- auditing outside transactions ------------------------------------------------------------
    async def audit(self, event: AuditEvent) -> None:
        await audit.write(self.bootstrap, event)
        if event.action in (AuditAction.REVEALED, AuditAction.EXPORTED):
            _metrics().record_admin_action(event.action)

    async def reveal(self, entry: Entry, by: str, reason: str | None = None) -> DeadLetterView:
        """The unredacted view — after the audit record was acknowledged, never before."""
        dl = entry.dead_letter
        await self.audit(
            AuditEvent(AuditAction.REVEALED, by, channel=self.channel, target=dl.ref, melding_id=dl.melding_id, reason=reason)
        )
        return dl.revealed()

    # -- replay and discard -------------------------------------------------------------------------
    async def replay(
        self,
        dl_id: str,
        by: str,
        *,
        edited: Any = None,
        validator: Any = None,
        reason: str | None = None,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> ReplayResult:
        """Replay one dead letter to ``meldingen.inbound`` (idempotent: a dead letter replayed
        before is reported as ``already-replayed`` and nothing is produced).

        ``edited``: a corrected melding (dict or JSON text; «redacted» values are restored from
        the original); it must pass ``validator`` (a :class:`hub.validation.ShaclValidator`)."""
        entry = self.get(dl_id)
        dl = entry.dead_letter
        value: bytes
        melding_id = dl.melding_id
        if edited is not None:
            if validator is None:
                raise ValueError("an edited melding is validated before a replay: pass a validator")
            check = check_edited(edited, dl, validator)
            if not check.ok:
                raise EditedInvalid(check)
            value = json.dumps(check.document, ensure_ascii=False).encode("utf-8")
            melding_id = check.melding_id or melding_id
        else:
            if not dl.value:
                raise ReplayRefused(f"{dl.ref} has an empty value: nothing to replay (replay an edited melding)")
            value = dl.value
        if not melding_id:
            raise ReplayRefused(f"{dl.ref} has no melding id (no header, no key): replay an edited melding with one")

        async def work(producer: Any) -> ReplayResult:
            prior = self.actions.get(dl.id)
            if prior is not None and prior.state is State.REPLAYED:
                return ReplayResult(self.entry(dl), "already-replayed", prior)
            if prior is not None and prior.state is State.DISCARDED:
                raise ReplayRefused(f"{dl.ref} was discarded by {prior.by} at {prior.at}: {prior.reason}")
            if pace is not None:
                await pace()  # rate limit: spaces the messages the hub receives
            at = now_iso()
            sent = await producer.send(
                INBOUND, value=value, key=melding_id.encode(), headers=list(replay_headers(dl, melding_id, by, at, edited is not None))
            )
            meta = await sent
            action = Action(
                dl.id,
                State.REPLAYED.value,
                by,
                at,
                reason=reason,
                channel=self.channel,
                replay={
                    "topic": INBOUND,
                    "partition": meta.partition,
                    "offset": meta.offset,
                    "melding_id": melding_id,
                    "edited": edited is not None,
                },
            )
            event = AuditEvent(
                AuditAction.REPLAYED,
                by,
                at=at,
                channel=self.channel,
                target=dl.ref,
                melding_id=melding_id,
                reason=reason,
                details={"to": f"{INBOUND}/{meta.partition}/{meta.offset}", "edited": edited is not None, "error_class": dl.error_class},
            )
            await self._send_action(producer, action, event)
            return ReplayResult(entry, "replayed", action)

        result = await self._transact(work)
        self.actions.put(result.action)
        if result.status == "replayed":
            _metrics().record_admin_action(AuditAction.REPLAYED)
        return ReplayResult(self.entry(dl), result.status, result.action)

    async def discard(self, dl_id: str, by: str, reason: str) -> Action:
        """Mark a dead letter as handled without replaying it (reason required)."""
        if not reason or not reason.strip():
            raise ReplayRefused("a discard needs a reason")
        entry = self.get(dl_id)
        dl = entry.dead_letter

        async def work(producer: Any) -> Action:
            prior = self.actions.get(dl.id)
            if prior is not None and prior.state is State.REPLAYED:
                raise ReplayRefused(f"{dl.ref} was already replayed by {prior.by} at {prior.at}")
            if prior is not None and prior.state is State.DISCARDED:
                return prior
            at = now_iso()
            action = Action(dl.id, State.DISCARDED.value, by, at, reason=reason.strip(), channel=self.channel)
            event = AuditEvent(
                AuditAction.DISCARDED,
                by,
                at=at,
                channel=self.channel,
                target=dl.ref,
                melding_id=dl.melding_id,
                reason=reason.strip(),
                details={"error_class": dl.error_class},
            )
            await self._send_action(producer, action, event)
            return action

        action = await self._transact(work)
        self.actions.put(action)
        _metrics().record_admin_action(AuditAction.DISCARDED)
        return action

    async def replay_many(
        self,
        ids: Iterable[str],
        by: str,
        *,
        rate: float = 5.0,
        reason: str | None = None,
        on_result: Callable[[str, str, str | None], Any] | None = None,
    ) -> BulkOutcome:
        """Replay dead letters one by one at most ``rate`` per second (0 or less: no limit).
        ``on_result(dl_id, status, detail)`` is called after each (status: ``replayed``,
        ``already-replayed`` or ``refused``)."""
        outcome = BulkOutcome()
        interval = 1.0 / rate if rate and rate > 0 else 0.0
        await self._warm_up()
        pace = _Pacer(interval)
        for dl_id in list(ids):
            try:
                res = await self.replay(dl_id, by, reason=reason, pace=pace)
            except (ReplayRefused, DeadLetterNotFound) as e:
                outcome.refused.append((dl_id, str(e)))
                if on_result:
                    on_result(dl_id, "refused", str(e))
                continue
            (outcome.replayed if res.status == "replayed" else outcome.skipped).append(res)
            if on_result:
                detail = res.new_ref if res.status == "replayed" else (
                    f"by {res.action.by} at {res.action.at} as {res.new_ref}; nothing produced"
                )
                on_result(dl_id, res.status, detail)
        return outcome

    # -- transactions -------------------------------------------------------------------------------
    async def _send_action(self, producer: Any, action: Action, event: AuditEvent) -> None:
        key, value, headers = event.to_record()
        futures = [
            await producer.send(
                DEADLETTER_ACTIONS,
                key=action.deadletter.encode(),
                value=action.to_value(),
                headers=[("deadletter", f"{DEADLETTER}/{action.deadletter}".encode())],
            ),
            await producer.send(AUDIT, key=key, value=value, headers=list(headers)),
        ]
        await asyncio.gather(*futures)

    async def _ensure_producer(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                **client_kwargs(),
                transactional_id=self.transactional_id,
                enable_idempotence=True,
                acks="all",
                max_request_size=MAX_RECORD_BYTES,
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _warm_up(self) -> None:
        """Start the transactional producer (InitProducerId) before a bulk run."""
        async with self._lock:
            try:
                producer = await self._ensure_producer()
                await producer.begin_transaction()
                await producer.abort_transaction()
            except Exception:  # noqa: BLE001 - the first replay retries with a fresh producer
                await self._drop_producer()

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # noqa: BLE001 - a fenced producer may complain while stopping
                pass

    async def _transact(self, work: Callable[[Any], Awaitable[T]], attempts: int = 6) -> T:
        """Run ``work`` in a transaction that starts by fencing every other admin process and
        re-reading the action topic; redo it from scratch when this process was fenced."""
        async with self._lock:
            for attempt in range(1, attempts + 1):
                producer = await self._ensure_producer()
                try:
                    await producer.begin_transaction()
                    await self._refresh_actions()
                    try:
                        result = await work(producer)
                    except ReplayRefused:
                        await producer.abort_transaction()
                        raise
                    await producer.commit_transaction()
                    return result
                except ReplayRefused:
                    raise
                except Exception as exc:
                    name = type(exc).__name__
                    await self._drop_producer()  # never reuse a producer in an unknown transaction state
                    if name not in _RETRYABLE_TXN or attempt == attempts:
                        raise
                    await asyncio.sleep(random.uniform(0.1, 0.4) * attempt)
        raise AssertionError("unreachable")


class _Pacer:
    """Awaiting it returns no sooner than ``interval`` seconds after the previous return."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0

    async def __call__(self) -> None:
        wait = self._next - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next = time.monotonic() + self.interval


async def ensure_dlq_topics(bootstrap: str) -> None:
    """Topics the admin tools read and write: the dead-letter and inbound topics (as the hub
    creates them) and the admin topics (:mod:`hub.audit`)."""
    from hub.kafka_admin import ensure_topics
    from hub.privacy import topic_configs
    from hub.settings import HubSettings

    s = HubSettings()
    configs = topic_configs(max_message_bytes=s.topic_max_message_bytes)  # the deployment's retention
    await ensure_topics(
        bootstrap,
        [INBOUND, DEADLETTER],
        partitions=s.partitions,
        replication_factor=s.replication_factor,
        configs={INBOUND: configs[INBOUND], DEADLETTER: configs[DEADLETTER]},
    )
    await audit.ensure_admin_topics(bootstrap, s.replication_factor)


# =============================================================================================
# delivery policy for vendor adapters: pause a failing destination, dead-letter with destination
# =============================================================================================
# Retrying one call with back-off is ``adapters.base.with_retries`` / ``RetryPolicy``; the error
# classes are ``adapters.base.AdapterErrorClass``. What this adds: a destination that keeps failing
# is *paused* (its meldingen wait on its authority topic, uncommitted) instead of every melding
# being dead-lettered during an outage, and a melding that is given up on is dead-lettered with
# the destination named, so admins can filter and replay per destination.


@dataclass(frozen=True)
class PausePolicy:
    """When to pause a destination and for how long."""

    failures_to_pause: int = 3
    """Meldingen in a row whose delivery failed transiently (after their retries) → pause."""
    pause_for: float = 30.0
    max_pause: float = 600.0
    """A pause that ends in another failure doubles the next pause, up to this."""
    pause_on_auth_failure: bool = True
    """401/403 would fail every melding: pause at once (an admin fixes the credentials)."""


class Verdict(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTER = "dead-letter"  # give up on this melding: dead-letter it (delivery_dead_letter) and commit
    PAUSE = "pause"  # keep this melding uncommitted, pause the destination until ``until``, then retry it


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    until: float | None = None
    """For PAUSE: the gate's clock time when deliveries may resume."""
    seconds: float = 0.0


@dataclass
class DestinationGate:
    """The pause policy of one destination, kept by an authority adapter's loop::

        gate = DestinationGate("kortrijk")
        while running:
            if not gate.allowed():           # paused: consumer.pause(tp); sleep; continue
                ...
            try:
                await with_retries(deliver, config.retry, "create")     # adapters.base
                gate.record_success()
            except VendorError as error:
                d = gate.record_failure(transient=error.transient, auth=isinstance(error, VendorAuthFailed))
                if d.verdict is Verdict.PAUSE:   # seek back to this melding; resume at d.until
                    ...
                else:                            # produce delivery_dead_letter(record, "kortrijk", error)
                    ...

    It also keeps the metrics: ``meldhub_destination_paused`` and ``meldhub_deliveries_total``.
    """

    destination: str
    policy: PausePolicy = field(default_factory=PausePolicy)
    clock: Callable[[], float] = time.monotonic
    failures_in_a_row: int = 0
    pauses_in_a_row: int = 0
    paused_until: float | None = None

    def allowed(self) -> bool:
        """False while paused; at the end of a pause one delivery may probe the destination."""
        if self.paused_until is None:
            return True
        if self.clock() < self.paused_until:
            return False
        self.paused_until = None
        _metrics().set_paused(self.destination, False)
        return True

    @property
    def paused(self) -> bool:
        return self.paused_until is not None and self.clock() < self.paused_until

    def record_success(self) -> Decision:
        self.failures_in_a_row = 0
        self.pauses_in_a_row = 0
        _metrics().record_delivery(self.destination, "delivered")
        return Decision(Verdict.DELIVERED)

    def record_failure(self, *, transient: bool, auth: bool = False) -> Decision:
        """A melding's delivery failed for good (``with_retries`` gave up, or a non-transient error)."""
        m = _metrics()
        m.record_delivery(self.destination, "unauthorized" if auth else "transient" if transient else "rejected")
        if auth and self.policy.pause_on_auth_failure:
            return self._pause()
        if not transient:
            return Decision(Verdict.DEAD_LETTER)  # this melding is the problem, not the destination
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.policy.failures_to_pause:
            return self._pause()
        return Decision(Verdict.DEAD_LETTER)

    def _pause(self) -> Decision:
        seconds = min(self.policy.max_pause, self.policy.pause_for * (2**self.pauses_in_a_row))
        self.pauses_in_a_row += 1
        self.failures_in_a_row = 0
        self.paused_until = self.clock() + seconds
        _metrics().set_paused(self.destination, True)
        return Decision(Verdict.PAUSE, until=self.paused_until, seconds=seconds)


def _metrics() -> Any:
    from hub import metrics

    return metrics


def delivery_dead_letter(record: Any, destination: str, error: HubError, attempts: int | None = None) -> Any:
    """The dead letter of a melding an adapter gave up on: :func:`hub.pipeline.dead_letter`
    (original bytes, the error's class and reason) plus the ``authority`` header naming the
    destination, so ``meldhub dlq list --destination kortrijk`` and the console find it."""
    from hub.pipeline import Output, dead_letter

    out = dead_letter(record, error, record.header(Header.MELDING_ID))
    extra: Headers = ((Header.AUTHORITY, destination.encode()),)
    if attempts is not None:
        extra += (("delivery-attempts", str(attempts).encode()),)
    return Output(out.topic, out.key, out.value, out.headers + extra)


__all__ = [
    "Action",
    "ActionState",
    "BulkOutcome",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterNotFound",
    "DeadLetterStore",
    "DeadLetterView",
    "Decision",
    "DestinationGate",
    "EditCheck",
    "EditedInvalid",
    "Entry",
    "PausePolicy",
    "ReplayRefused",
    "ReplayResult",
    "State",
    "Verdict",
    "check_edited",
    "contains_redacted",
    "dead_letter_id",
    "delivery_dead_letter",
    "ensure_dlq_topics",
    "is_personal_key",
    "parse_dead_letter_id",
    "parse_when",
    "redact_json",
    "redact_text",
    "restore_redacted",
    "scrub_text",
]
