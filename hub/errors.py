"""Error classes of the hub: each failure a stage can meet has one class and a one-line
reason an admin understands. The class is carried in the dead letter's
``error-class`` header, so admins filter and replay by it.
"""

from __future__ import annotations

from enum import StrEnum
import hashlib
import traceback
from typing import Any


class ErrorClass(StrEnum):
    TOO_LARGE = "too-large"
    NOT_UTF8 = "not-utf8"
    NOT_JSON = "not-json"
    NOT_JSONLD = "not-jsonld"
    SHAPE_VIOLATION = "shape-violation"
    UNKNOWN_CATEGORY = "unknown-category"
    MISSING_LOCATION = "missing-location"
    OUTSIDE_REGION = "outside-region"
    NO_OWNER = "no-owner"
    NOT_A_REFUSAL = "not-a-refusal"
    # status stage (hub/status.py)
    NOT_A_STATUS = "not-a-status"
    ILLEGAL_TRANSITION = "illegal-transition"
    NO_SOURCE = "no-source"
    # vendor adapters (adapters/base.py): transient ones are retried before they get here
    VENDOR_UNAVAILABLE = "vendor-unavailable"
    VENDOR_TIMEOUT = "vendor-timeout"
    VENDOR_AUTH = "vendor-auth"
    VENDOR_REJECTED = "vendor-rejected"
    VENDOR_MALFORMED = "vendor-malformed"
    VENDOR_UNKNOWN_STATUS = "vendor-unknown-status"
    BUG = "bug"


class HubError(Exception):
    """A failure that sends a message to the dead-letter topic instead of crashing the hub."""

    error_class: ErrorClass = ErrorClass.BUG

    def __init__(self, reason: str, details: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class TooLarge(HubError):
    error_class = ErrorClass.TOO_LARGE


class NotUtf8(HubError):
    error_class = ErrorClass.NOT_UTF8


class NotJson(HubError):
    error_class = ErrorClass.NOT_JSON


class NotJsonLd(HubError):
    error_class = ErrorClass.NOT_JSONLD


class ShapeViolation(HubError):
    error_class = ErrorClass.SHAPE_VIOLATION


class UnknownCategory(HubError):
    error_class = ErrorClass.UNKNOWN_CATEGORY


class MissingLocation(HubError):
    error_class = ErrorClass.MISSING_LOCATION


class OutsideRegion(HubError):
    error_class = ErrorClass.OUTSIDE_REGION


class NoOwner(HubError):
    error_class = ErrorClass.NO_OWNER


class NotARefusal(HubError):
    """A record on ``meldingen.refusals`` without the headers that say who refused what."""

    error_class = ErrorClass.NOT_A_REFUSAL


class BugError(HubError):
    """An unexpected exception inside a stage: dead-lettered with its type and a fingerprint,
    so the hub keeps running and the same bug groups under one fingerprint."""

    error_class = ErrorClass.BUG

    @classmethod
    def from_exception(cls, exc: BaseException) -> BugError:
        frames = traceback.extract_tb(exc.__traceback__)
        where = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" for f in frames)
        fingerprint = hashlib.sha256(f"{type(exc).__name__}|{where}".encode()).hexdigest()[:16]
        last = frames[-1] if frames else None
        location = f" in {last.name} ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
        return cls(
            f"unexpected {type(exc).__name__}{location}; fingerprint {fingerprint}",
            {"exception": type(exc).__name__, "fingerprint": fingerprint, "frames": where},
        )
