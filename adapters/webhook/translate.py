"""Signed webhooks: the signature scheme, the outgoing request and the incoming status change. PURE.

**Signature** (the scheme of Stripe's webhooks): header
``X-Meldingen-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<raw body>")>``. A
receiver recomputes the HMAC over the exact bytes it received, compares in constant time (any
``v1`` may match: several are allowed while keys rotate), and refuses a ``t`` outside its
tolerance (default 5 minutes, past or future) and a signature it has already accepted.

**Out**: ``POST <url>`` with the routed melding (JSON-LD, exact bytes of the authority topic),
``Content-Type: application/ld+json``, ``Idempotency-Key: <melding id>`` (the same on every retry:
a receiver that saw it answers as before, 2xx or 409, and keeps one), ``X-Meldingen-Event:
melding``. Each attempt is signed anew.

**In**: ``POST <status_path>``, signed the same way, JSON::

    {"melding_id": "<uuid>", "status": "opgelost", "beschrijving": "…", "statusdatum": "2026-11-21T10:02:00+01:00"}

``status`` is a word of the config's ``statuses`` (the notation or the Dutch label);
``beschrijving`` (the citizen sees it) and ``statusdatum`` (default: when received) are optional.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapters.base import StatusMapping
from adapters.webhook.config import Config
from hub.status import INGEDIEND, STATUSES, TOEGEWEZEN, Status, default_description

SIGNATURE_HEADER = "X-Meldingen-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Meldingen-Event"
FIELDS = frozenset({"melding_id", "status", "beschrijving", "statusdatum", "actie", "reden"})
REFUSAL_REASON_MAX = 300


class BadSignature(ValueError):
    """Missing, malformed, wrong, too old or too new."""


class ReusedSignature(ValueError):
    """A genuine signature that was already accepted (a replay)."""


def signature(key: bytes, body: bytes, t: int) -> str:
    return hmac.new(key, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(key: bytes, body: bytes, now: datetime) -> str:
    t = int(now.timestamp())
    return f"t={t},v1={signature(key, body, t)}"


def verify(header: str | None, key: bytes, body: bytes, now: datetime, tolerance_s: int) -> tuple[int, str]:
    """(t, the matching v1) of a valid signature; BadSignature otherwise (the caller checks reuse)."""
    if not header:
        raise BadSignature(f"no {SIGNATURE_HEADER} header")
    t_values, v1s = [], []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            t_values.append(value)
        elif name == "v1":
            v1s.append(value.lower())
    if len(t_values) != 1 or not t_values[0].isdigit() or not v1s:
        raise BadSignature(f"{SIGNATURE_HEADER} must be t=<unix seconds>,v1=<hex>")
    t = int(t_values[0])
    if abs(now.timestamp() - t) > tolerance_s:
        raise BadSignature(f"timestamp outside the {tolerance_s}s tolerance")
    expected = signature(key, body, t)
    for v1 in v1s:
        if hmac.compare_digest(v1.encode(), expected.encode()):
            return t, v1
    raise BadSignature("no v1 signature matches")


def outgoing_headers(key: bytes, body: bytes, melding_id: str, now: datetime) -> dict[str, str]:
    return {
        "Content-Type": "application/ld+json",
        SIGNATURE_HEADER: sign(key, body, now),
        IDEMPOTENCY_HEADER: melding_id,
        EVENT_HEADER: "melding",
        "User-Agent": "meldingen-hub-webhook/1",
    }


@dataclass(frozen=True)
class Incoming:
    melding_id: str
    status: Status
    text: str | None
    when: datetime | None


@dataclass(frozen=True)
class IncomingRefusal:
    """The system says "not ours": ``{"melding_id": …, "actie": "weigeren", "reden": "…"}``."""

    melding_id: str
    reason: str


class BadStatus(ValueError):
    """The body is not a status change this adapter accepts (the reason says why)."""


def parse_incoming(doc: Any, config: Config, now: datetime) -> Incoming | IncomingRefusal:
    if not isinstance(doc, dict):
        raise BadStatus("the body is a JSON object")
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise BadStatus(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}")
    mid = doc.get("melding_id")
    try:
        melding_id = str(uuid.UUID(mid)) if isinstance(mid, str) else None
    except ValueError:
        melding_id = None
    if melding_id is None:
        raise BadStatus("melding_id: the melding's id (a UUID) is required")
    if "actie" in doc:
        return _refusal(doc, melding_id, config)
    if "reden" in doc:
        raise BadStatus(f"reden: only with \"actie\": \"{config.refusal_action}\"")
    word = doc.get("status")
    if not isinstance(word, str) or word.strip().lower() not in config.statuses:
        raise BadStatus(f"status: one of {', '.join(sorted(config.statuses))}")
    text = doc.get("beschrijving")
    if text is not None and (not isinstance(text, str) or len(text) > config.max_text_chars):
        raise BadStatus(f"beschrijving: a text of at most {config.max_text_chars} characters")
    when = None
    if doc.get("statusdatum") is not None:
        try:
            when = datetime.fromisoformat(str(doc["statusdatum"]).replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise BadStatus("statusdatum: an ISO 8601 date-time with a time zone")
        if when > now + timedelta(seconds=config.tolerance_s):
            raise BadStatus("statusdatum lies in the future")
    clean = " ".join(text.split()) if isinstance(text, str) else None
    return Incoming(melding_id, STATUSES[config.statuses[word.strip().lower()]], clean or None, when)


def _refusal(doc: dict[str, Any], melding_id: str, config: Config) -> IncomingRefusal:
    if config.refusal_action is None or doc.get("actie") != config.refusal_action:
        allowed = f'"{config.refusal_action}"' if config.refusal_action else "none (refusals are switched off)"
        raise BadStatus(f"actie: the only action is {allowed}")
    extra = sorted(set(doc) - {"melding_id", "actie", "reden"})
    if extra:
        raise BadStatus(f"a refusal has melding_id, actie and reden only, not {', '.join(extra)}")
    reason = doc.get("reden")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REFUSAL_REASON_MAX:
        raise BadStatus(f"reden: why the melding is not yours, one line of at most {REFUSAL_REASON_MAX} characters")
    return IncomingRefusal(melding_id, " ".join(reason.split()))


def text_for(st: Status, config: Config, text: str | None) -> str:
    return text or config.status_texts.get(st.notation) or default_description(st)


def delivered_text(authority_name: str, config: Config) -> str:
    return config.status_texts.get(TOEGEWEZEN) or f"Uw melding werd bezorgd aan {authority_name}."


def status_mapping(config: Config) -> StatusMapping:
    how = f'inbound {{"actie": "{config.refusal_action}", "reden": …}}' if config.refusal_action else None
    return StatusMapping(vendor="Webhook", to_oslo=dict(config.statuses), vendor_statuses=sorted(config.statuses),
                         refusal_how=how)


def check(config: Config) -> list[str]:
    problems = status_mapping(config).problems()
    problems += [f"webhook status {w!r} maps to {STATUSES[INGEDIEND]}: that is the citizen's submission"
                 for w, n in config.statuses.items() if n == INGEDIEND]
    return problems
