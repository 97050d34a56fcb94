"""Refusal and re-routing: an owner says "not ours", the hub finds the next one.

Rules are a model of who owns what; sometimes the model is wrong for one melding (the pit is on a
private parking lot, the lamp belongs to a company). The owner then answers "not ours" with a
reason, and the melding must neither end there nor bounce forever. The flow:

1. The owner (its adapter, or its own Kafka client) produces the melding **as it received it**
   — value and headers unchanged — to ``meldingen.refusals``, adding ``refused-by`` (its
   authority id), ``refusal-reason`` (one line) and ``refused-at``. :func:`refusal_output` builds
   that record. With encrypted contact details, the adapter adds the melding's key record
   (``melding-key``) so the hub can re-encrypt them for the next owner; the old owner's key record
   is then replaced and it can no longer read them.
2. The hub checks the refusal (:func:`read_refusal`): it must come from the owner the hub routed
   the melding to (header ``authority``), and it appends a :class:`RouteHop` to the melding's
   route history (header ``route-history``, oldest first).
3. It routes again with the same ordered rules, skipping every rule whose owner refused already —
   the next candidate is the next matching rule in the table (``meldhub route explain`` shows it).
   After ``max_hops`` refusals, or when no candidate is left, the melding goes to the region's
   triage topic ``meldingen.triage`` with its whole history: never a dead end, never a loop.
4. In the same Kafka transaction the hub tells the citizen's channel (a ``Toegewezen aan`` status
   event on ``meldingen.status``, in Dutch, naming the new handler, never the refusal's free text).

Everything here is pure; :class:`hub.pipeline.Pipeline` calls it for records of
``meldingen.refusals``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from hub.errors import NotARefusal
from hub.topics import REFUSALS, Header, authority_topic

DEFAULT_MAX_HOPS = 3
"""Refusals after which a melding goes to triage instead of a next candidate."""

TRIAGE_RECIPIENT = "triage"
"""Recipient name of the triage team's key in the hub's recipients file (encrypted contact details)."""

TRIAGE_AGENT = "https://w3id.org/meldingen-hub/id/organisatie/regionale-triage"
"""``statuswijzigingDoor`` of the status event when a melding goes to triage (hub-local IRI)."""

MAX_REASON_CHARS = 300
MAX_HISTORY_BYTES = 8 * 1024

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class RouteHop:
    """One owner that had the melding and gave it back, with the rule that had chosen it."""

    authority: str
    rule: str
    ruleset_version: str
    refused_at: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A checked refusal: who refused, why, and the history including this refusal."""

    refused_by: str
    reason: str
    refused_at: datetime
    history: tuple[RouteHop, ...]

    @property
    def refused(self) -> frozenset[str]:
        """Every authority that refused this melding so far: never a candidate again."""
        return frozenset(h.authority for h in self.history)

    @property
    def hops(self) -> int:
        return len(self.history)


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def history_header(history: Iterable[RouteHop]) -> bytes:
    return json.dumps([h.as_json() for h in history], ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_history(raw: str | None) -> tuple[RouteHop, ...]:
    """The ``route-history`` header (absent: no earlier refusal). NotARefusal when unreadable."""
    if not raw:
        return ()
    if len(raw.encode("utf-8")) > MAX_HISTORY_BYTES:
        raise NotARefusal(f"header {Header.ROUTE_HISTORY} is over {MAX_HISTORY_BYTES} bytes")
    try:
        items = json.loads(raw)
        if not isinstance(items, list):
            raise TypeError
        return tuple(
            RouteHop(
                authority=str(i["authority"]),
                rule=str(i.get("rule", "")),
                ruleset_version=str(i.get("ruleset_version", "")),
                refused_at=str(i.get("refused_at", "")),
                reason=one_line(i.get("reason", "")),
            )
            for i in items
        )
    except (ValueError, TypeError, KeyError):
        raise NotARefusal(f"header {Header.ROUTE_HISTORY} is not a JSON list of route hops") from None


def read_refusal(headers: Headers, now: datetime | None = None) -> Refusal:
    """Check a record of ``meldingen.refusals`` and extend its route history.

    Raises NotARefusal when ``refused-by`` is missing, is not the authority the hub routed the
    melding to, or the history is unreadable: such a record is dead-lettered for an admin, since
    re-routing on a guess could send a melding back to an owner that never had it.
    """
    h = _headers(headers)
    refused_by = h.get(Header.REFUSED_BY, "").strip()
    if not refused_by:
        raise NotARefusal(f"no '{Header.REFUSED_BY}' header: who refused this melding is unknown")
    try:
        authority_topic(refused_by)
    except ValueError as exc:
        raise NotARefusal(f"header {Header.REFUSED_BY}: {exc}") from None
    owner = h.get(Header.AUTHORITY)
    if not owner:
        raise NotARefusal(
            f"no '{Header.AUTHORITY}' header: send the melding back with the headers it was received with"
        )
    if owner != refused_by:
        raise NotARefusal(f"refused by {refused_by}, but the hub routed this melding to {owner}")
    when = _when(h.get(Header.REFUSED_AT), now)
    hop = RouteHop(
        authority=refused_by,
        rule=h.get(Header.RULE_ID, ""),
        ruleset_version=h.get(Header.RULESET_VERSION, ""),
        refused_at=when.isoformat(timespec="milliseconds"),
        reason=one_line(h.get(Header.REFUSAL_REASON, "")) or "geen reden opgegeven",
    )
    history = parse_history(h.get(Header.ROUTE_HISTORY))
    if any(x.authority == refused_by and x.refused_at == hop.refused_at for x in history):
        raise NotARefusal(f"this refusal by {refused_by} is already in the route history")
    return Refusal(refused_by, hop.reason, when, (*history, hop))


def refusal_output(
    value: bytes,
    headers: Iterable[tuple[str, bytes | None]],
    refused_by: str,
    reason: str,
    *,
    refused_at: datetime | None = None,
    key_record: Mapping[str, Any] | None = None,
) -> tuple[str, bytes | None, bytes, Headers]:
    """The record an owner produces to say "not ours": ``(topic, key, value, headers)``.

    ``value`` and ``headers`` are the melding exactly as consumed from the owner's topic (the hub
    needs its routing headers and history). ``reason`` is one line for the triage team and the next
    owner (no personal data). ``key_record``: the melding's record from ``meldingen.keys`` when the
    contact details are encrypted, so the hub can re-encrypt them for the next owner.
    """
    authority_topic(refused_by)  # ValueError on a bad id
    when = (refused_at or datetime.now(UTC)).astimezone(UTC)
    replaced = {Header.REFUSED_BY, Header.REFUSAL_REASON, Header.REFUSED_AT, Header.MELDING_KEY}
    kept = tuple((k, v if v is not None else b"") for k, v in headers if k not in replaced)
    added: Headers = (
        (Header.REFUSED_BY, refused_by.encode()),
        (Header.REFUSAL_REASON, one_line(reason).encode("utf-8")),
        (Header.REFUSED_AT, when.isoformat(timespec="milliseconds").encode()),
    )
    if key_record is not None:
        added += ((Header.MELDING_KEY, json.dumps(key_record, separators=(",", ":")).encode()),)
    melding_id = _headers(kept).get(Header.MELDING_ID)
    return REFUSALS, melding_id.encode() if melding_id else None, value, kept + added


def _headers(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        out[k] = (v or b"").decode("utf-8", errors="replace")
    return out


def _when(raw: str | None, now: datetime | None) -> datetime:
    if raw:
        try:
            when = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise NotARefusal(f"header {Header.REFUSED_AT} is not an ISO 8601 time: {one_line(raw, 40)!r}") from None
        if when.tzinfo is None:
            raise NotARefusal(f"header {Header.REFUSED_AT} needs a time zone")
        return when.astimezone(UTC)
    return (now or datetime.now(UTC)).astimezone(UTC)
