"""Structured JSON logging with the melding id as correlation id, and no personal data.

Every log line is one JSON object on stderr. Each line about a melding carries its id as
``correlation_id`` (:func:`melding_fields`) so its journey can be found with one grep.
Personal data never reaches a log line: the hub does not log payloads, and as a second
line of defence :func:`redact_personal_data` drops keys that name personal fields and
masks e-mail addresses and phone numbers in every string value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from hub import jsontext

PERSONAL_KEYS = frozenset(
    {"melder", "naam", "contactpunt", "email", "telefoon", "phone", "first_name", "last_name", "name"}
)
REDACTED = "«redacted»"

# Bounded repetitions: an unbounded local part makes the search quadratic on long text.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}")
# Phone numbers as citizens write them: +32 470 12 34 56, 0032 470 123456, 0470/12.34.56,
# 056 27 72 00. Belgian numbers start with 0 or an international prefix; requiring that
# keeps coordinates ("3.2649 50.8303") and dates out of the match.
_PHONE = re.compile(r"(?<![\w.])(?:\+|0)\d(?:[ ./-]?\d){7,13}(?![\w])")


# A UUID (the melding ids, the hub's event ids) is no phone number, though its digit groups
# can look like one ("…-0471-2345-6789-…"): a correlation id must stay greppable.
_UUID = re.compile(r"(?:urn:uuid:)?[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


_CLEAN: dict[str, None] = {}
"""Short strings already found to hold no e-mail address or phone number. Most values in the
hub's log lines repeat (authority ids, rule ids, topics, event names), and looking one up costs
less than the two regular-expression passes. Only clean strings are kept, and only a bounded
number: a string with personal data is never remembered."""
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 200


def scrub(text: str) -> str:
    """Mask e-mail addresses and phone numbers inside free text."""
    if text in _CLEAN or _UUID.fullmatch(text):
        return text
    # no "@", no e-mail address: the pattern needs one (most values, a pass saved)
    scrubbed = _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, text) if "@" in text else text)
    if scrubbed == text and len(text) <= _CLEAN_MAX_CHARS:
        if len(_CLEAN) >= _CLEAN_MAX_ENTRIES:
            _CLEAN.clear()
        _CLEAN[text] = None
    return scrubbed


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: (REDACTED if k in PERSONAL_KEYS else _scrub_value(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    return value


def redact_personal_data(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the last gate before a line is written."""
    for key in list(event_dict):
        if key in PERSONAL_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub_value(event_dict[key])
    return event_dict


def _render(event_dict: Any, default: Any = None, **_: Any) -> str:
    """One JSON line (:func:`hub.jsontext.dumps`: one per routed melding, so its cost counts)."""
    return jsontext.dumps(event_dict, default).decode("utf-8")


def configure(level: str = "INFO", stream: Any = None) -> None:
    """JSON lines for the hub's own events and for library logs (aiokafka …) alike, each
    passing the personal-data gate. Safe to call more than once."""
    out = stream or sys.stderr
    shared = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_personal_data,
                structlog.processors.JSONRenderer(serializer=_render),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.processors.format_exc_info,
            redact_personal_data,
            *shared,  # level and time are the hub's own: added after the gate, never scrubbed
            structlog.processors.JSONRenderer(serializer=_render),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "hub") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def melding_fields(melding_id: str | None) -> dict[str, str]:
    """``correlation_id``: the melding id, for the keyword arguments of each log line about one
    melding. Passed per call, not bound as a context variable: binding and unbinding that cost
    half as much again as the line itself, once per routed melding."""
    return {} if melding_id is None else {"correlation_id": melding_id}
