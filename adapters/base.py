"""What every vendor adapter shares: config base, vendor error classes, bounded retries,
status-mapping checks and the run-time context.

An adapter is a folder ``adapters/<vendor>/`` with three parts (see ``docs/adapters.md``):

- ``client.py``    — the vendor's API over httpx; turns HTTP failures into :class:`VendorError`;
- ``translate.py`` — PURE vendor ↔ OSLO translation (melding and status), no I/O; exposes
  ``check(config) -> list[str]`` used by ``meldhub adapters check``;
- ``config.py``    — ``VENDOR``, ``ROLE`` (``channel`` or ``authority``) and ``Config``, a
  pydantic model of :class:`AdapterConfig` with the vendor's defaults, overridable per tenant in
  ``deploy/regions/<region>/adapters.yaml``.

An optional ``service.py`` with ``async def run(config, runtime)`` is what
``meldhub adapters run|serve`` starts (an HTTP server for a channel, a Kafka worker for an
authority's system).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from hub import logs
from hub.errors import ErrorClass, HubError
from hub.status import STATUSES, is_legal, status
from hub.topics import authority_topic

log = logs.get_logger("adapters")

T = TypeVar("T")

Role = Literal["channel", "authority"]


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
class RetryPolicy(BaseModel):
    """Bounded exponential back-off for transient vendor failures."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=20)
    base_delay_s: float = Field(default=1.0, ge=0)
    max_delay_s: float = Field(default=30.0, ge=0)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); full jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return random.uniform(cap / 2, cap) if cap > 0 else 0.0


class AdapterConfig(BaseModel):
    """Fields every adapter instance has. Vendor configs extend it; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """The adapter instance id: ``source`` header of a channel, consumer-group suffix, state file name."""
    vendor: str
    enabled: bool = True
    description: str = ""
    state_file: Path | None = None
    """SQLite file with the adapter's own state; default ``<state dir>/<id>.sqlite3``."""

    @field_validator("id")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        authority_topic(v)  # same alphabet as topic suffixes: ValueError otherwise
        return v

    def secret_envs(self) -> list[str]:
        """Names of the environment variables this adapter reads its secrets from."""
        return []

    def state_path(self, state_dir: Path) -> Path:
        return self.state_file or state_dir / f"{self.id}.sqlite3"


class PauseSettings(BaseModel):
    """How long an authority adapter pauses a destination that refuses or fails (docs/deadletters.md).

    A melding whose bounded retries all failed transiently (5xx, 429, timeouts), or any 401/403,
    pauses the destination: its meldingen stay queued (uncommitted) on the authority topic, and
    after the pause one delivery probes it. A probe that fails doubles the next pause, up to
    ``max_pause_s``. Nothing is dead-lettered for an outage, only for what the vendor rejects.
    """

    model_config = ConfigDict(extra="forbid")

    pause_for_s: float = Field(default=30.0, gt=0, le=3600)
    max_pause_s: float = Field(default=600.0, gt=0, le=86400)


class AuthorityConfig(AdapterConfig):
    """Fields every authority adapter (authority topic → the authority's system) has."""

    authority: str
    """The registry authority whose topic (``meldingen.authority.<id>``) this adapter serves."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    start_from: Literal["earliest", "latest"] = "earliest"
    """Where a new consumer group starts on the authority topic (earliest: nothing routed before
    the adapter's first start is skipped)."""
    pause: PauseSettings = Field(default_factory=PauseSettings)


class InboundLimits(BaseModel):
    """Rate limits of an adapter's own HTTP door (status links, signed webhooks): per peer address,
    requests in general and failed authentications (bad signature or link), after which that
    address is answered 429 before anything is checked (:mod:`hub.ratelimit`)."""

    rate_limit_requests: str = "120/minute"
    rate_limit_auth_failures: str = "20/hour"

    @field_validator("rate_limit_requests", "rate_limit_auth_failures")
    @classmethod
    def _limit(cls, v: str) -> str:
        from hub.ratelimit import parse_limit

        parse_limit(v)
        return v

    def limiter(self) -> Any:
        from hub.ratelimit import RateLimiter

        return RateLimiter({"requests": self.rate_limit_requests, "auth-failure": self.rate_limit_auth_failures})


def door_verdict(limiter: Any, peer: str) -> int | None:
    """Seconds to wait when ``peer`` is over a limit of its door (count the request), else None."""
    if not limiter.test("auth-failure", peer):
        return limiter.retry_after("auth-failure", peer)
    verdict = limiter.hit("requests", peer)
    return None if verdict.allowed else verdict.retry_after_s


class MissingSecret(RuntimeError):
    """A secret's environment variable is not set (the message names it, never a value)."""


def secret(env_name: str) -> str:
    value = os.environ.get(env_name)
    if not value:
        raise MissingSecret(f"environment variable {env_name} is not set (the adapter reads a secret from it)")
    return value


# ---------------------------------------------------------------------------------------------
# vendor errors
# ---------------------------------------------------------------------------------------------
AdapterErrorClass = ErrorClass
"""Adapters' dead-letter classes are members of :class:`hub.errors.ErrorClass` (``vendor-*``)."""


class VendorError(HubError):
    """A vendor API call failed. ``transient`` ones are retried (bounded); the rest are dead-lettered."""

    error_class = AdapterErrorClass.VENDOR_REJECTED  # type: ignore[assignment]
    transient = False

    def __init__(self, reason: str, details: Any = None, retry_after: float | None = None) -> None:
        super().__init__(reason, details)
        self.retry_after = retry_after


class VendorUnavailable(VendorError):
    """5xx, 429, connection refused/reset: try again later."""

    error_class = AdapterErrorClass.VENDOR_UNAVAILABLE  # type: ignore[assignment]
    transient = True


class VendorTimeout(VendorError):
    error_class = AdapterErrorClass.VENDOR_TIMEOUT  # type: ignore[assignment]
    transient = True


class VendorAuthFailed(VendorError):
    """401/403: wrong or expired credentials, or missing permissions. Not retried: replay after fixing."""

    error_class = AdapterErrorClass.VENDOR_AUTH  # type: ignore[assignment]


class VendorRejected(VendorError):
    """Any other 4xx: the vendor refused this request; retrying the same request cannot help."""

    error_class = AdapterErrorClass.VENDOR_REJECTED  # type: ignore[assignment]


class VendorMalformed(VendorError):
    """The vendor answered, but not with the documented shape (not JSON, missing fields)."""

    error_class = AdapterErrorClass.VENDOR_MALFORMED  # type: ignore[assignment]


class UnknownVendorStatus(VendorError):
    """A vendor status the adapter's mapping does not know (add it to the tenant's config)."""

    error_class = AdapterErrorClass.VENDOR_UNKNOWN_STATUS  # type: ignore[assignment]


def error_for_status(code: int, what: str, body: str = "", retry_after: str | None = None) -> VendorError:
    """The error class for an HTTP status code (only called for non-2xx)."""
    snippet = " ".join(body.split())[:200]
    reason = f"{what}: HTTP {code}" + (f": {snippet}" if snippet else "")
    delay = _retry_after_seconds(retry_after)
    if code in (401, 403):
        return VendorAuthFailed(reason)
    if code in (408, 425, 429) or code >= 500:
        return VendorUnavailable(reason, retry_after=delay)
    return VendorRejected(reason)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to the back-off


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run ``call``; retry transient VendorErrors with back-off up to ``policy.max_attempts``.

    ``call`` is the whole idempotent unit (e.g. look up, then create): a retried create whose
    first try succeeded but timed out must look up again first. The last error is re-raised with
    the number of attempts in its reason.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except VendorError as error:
            if not error.transient:
                raise
            if attempt >= policy.max_attempts:
                error.reason = f"{error.reason} (gave up after {attempt} attempts)"
                raise
            delay = policy.delay(attempt, error.retry_after)
            log.warning(
                "adapter.retry", what=what, attempt=attempt, error_class=str(error.error_class), delay_s=round(delay, 2)
            )
            await sleep(delay)


# ---------------------------------------------------------------------------------------------
# status mappings and their checks
# ---------------------------------------------------------------------------------------------
def check_notation(value: str | None) -> str | None:
    """Validate a MeldingStatuswaarde notation/IRI in config; returns the bare notation."""
    if value is None:
        return None
    return status(str(value)).notation  # KeyError → pydantic reports it


def _notation_values(v: dict[str, Any]) -> dict[str, Any]:
    return {name: check_notation(n) for name, n in v.items()}


def _notation_keys(v: dict[str, str]) -> dict[str, str]:
    return {check_notation(k) or k: text for k, text in v.items()}


def _known_categories(v: dict[str, Any]) -> dict[str, Any]:
    from hub.categories import by_slug

    unknown = [slug for slug in v if by_slug(slug) is None]
    if unknown:
        raise ValueError(f"not categories of the hub's scheme: {', '.join(unknown)}")
    return v


StatusMap = Annotated[dict[str, str | None], AfterValidator(_notation_values)]
"""Config: vendor status → MeldingStatuswaarde notation or IRI (checked, kept as the bare
notation); None = a vendor status the citizen is not told about."""

StatusTexts = Annotated[dict[str, str], AfterValidator(_notation_keys)]
"""Config: MeldingStatuswaarde notation → the sentence the citizen sees for it."""

KnownCategories = AfterValidator(_known_categories)
"""Config: a mapping keyed by the hub's category slugs; any other key is refused at start
(``Annotated[dict[str, VendorTarget], KnownCategories]``)."""


@dataclass
class StatusMapping:
    """A vendor's status vocabulary against the hub's life cycle (for ``meldhub adapters check``).

    - ``to_oslo``: vendor status → MeldingStatuswaarde notation, or None = "no status change"
      (a note, or a state the citizen does not see);
    - ``vendor_statuses``: every status the vendor can report (each must be in ``to_oslo``);
    - ``transitions``: the vendor's own workflow (from → to); each change it maps to must be a
      legal life-cycle transition (or no change). None: not declared, not checked.
    - ``start``: the hub status a melding has when the vendor's workflow begins, and ``entry``
      the vendor statuses a new item can have first (start → entry must be legal);
    - ``from_oslo``: for channels, MeldingStatuswaarde → the vendor's status (all 11 needed).
    """

    vendor: str
    to_oslo: Mapping[str, str | None] = field(default_factory=dict)
    vendor_statuses: Iterable[str] = ()
    transitions: Mapping[str, Iterable[str]] | None = None
    start: str | None = None
    entry: Iterable[str] = ()
    from_oslo: Mapping[str, Any] | None = None
    refusals: Mapping[str, str | None] = field(default_factory=dict)
    """Vendor statuses that mean "not ours" → the Dutch reason sent with the refusal (None: a
    default naming the status). Such a status is never reported to the citizen: the melding goes
    back to the hub (``meldingen.refusals``), so it must map to null (no change)."""
    refusal_how: str | None = None
    """How the vendor says "not ours" when it is not a status (a form option, a webhook action);
    None with no ``refusals``: the vendor has no way to refuse."""

    def refusal_rows(self) -> list[tuple[str, str]]:
        """(how, reason) for ``meldhub adapters check``."""
        rows = [(f"{self.vendor} status {v!r}", reason or "(default: names the status)") for v, reason in self.refusals.items()]
        if self.refusal_how:
            rows.append((self.refusal_how, "given by the authority"))
        return rows

    def problems(self) -> list[str]:
        out: list[str] = []
        known = set(self.vendor_statuses) | set(self.to_oslo)
        for v in self.refusals:
            if v not in known:
                out.append(f"{self.vendor} refusal status {v!r} is not a status this {self.vendor} has")
            elif self.to_oslo.get(v) is not None:
                out.append(
                    f"{self.vendor} refusal status {v!r} maps to {self.to_oslo[v]}: a refusal is never reported as a "
                    "status (the hub re-routes the melding); map it to null"
                )
        for v in self.vendor_statuses:
            if v not in self.to_oslo:
                out.append(f"{self.vendor} status {v!r} is not mapped to a MeldingStatuswaarde (nor to null = no change)")
        for v, n in self.to_oslo.items():
            if n is not None and n not in STATUSES:
                out.append(f"{self.vendor} status {v!r} maps to {n!r}, not a MeldingStatuswaarde notation")
        if self.transitions is not None:
            for a, targets in self.transitions.items():
                for b in targets:
                    out += self._edge(a, b)
        if self.start is not None:
            for v in self.entry:
                n = self.to_oslo.get(v)
                if n is not None and n != self.start and n in STATUSES and not is_legal(self.start, n):
                    out.append(
                        f"a new {self.vendor} item in status {v!r} means {STATUSES[self.start]} → {STATUSES[n]}, "
                        "not a legal transition"
                    )
        if self.from_oslo is not None:
            for n, st in STATUSES.items():
                if n not in self.from_oslo:
                    out.append(f"{st} has no {self.vendor} status to show it as")
        return out

    def _edge(self, a: str, b: str) -> list[str]:
        out = [f"{self.vendor} workflow names {x!r}, which is not mapped" for x in (a, b) if x not in self.to_oslo]
        if out:
            return out
        na, nb = self.to_oslo[a], self.to_oslo[b]
        if na is None or nb is None or na == nb or na not in STATUSES or nb not in STATUSES:
            return []
        if not is_legal(na, nb):
            return [f"{self.vendor} change {a!r} → {b!r} means {STATUSES[na]} → {STATUSES[nb]}, not a legal transition"]
        return []


# ---------------------------------------------------------------------------------------------
# run time
# ---------------------------------------------------------------------------------------------
@dataclass
class Runtime:
    """What ``meldhub adapters run|serve`` hands an adapter's service."""

    bootstrap_servers: str
    state_dir: Path
    registry_path: Path | None = None
    create_topics: bool = True
    partitions: int = 3
    host: str | None = None
    port: int | None = None

    def registry(self) -> Any:
        from hub.registry import Registry

        return Registry.load(self.registry_path)


# ---------------------------------------------------------------------------------------------
# shared plumbing of the vendor folders
# ---------------------------------------------------------------------------------------------
def open_store(path: Path | str, schema: str) -> sqlite3.Connection:
    """An adapter's small SQLite state file: WAL, autocommit, rows as mappings, ``schema`` applied.
    Every adapter keeps its idempotency state this way, so it is opened in one place."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db


class AuthorityStore:
    """An authority adapter's SQLite state: its own tables (the subclass's ``SCHEMA``) and the
    consumed records it keeps to give a melding back on a refusal (:class:`adapters.refusals.KeptRecords`)."""

    SCHEMA = ""

    def __init__(self, path: Path | str) -> None:
        from adapters.refusals import KeptRecords

        self.db = open_store(path, self.SCHEMA)
        self.kept = KeptRecords(self.db)
        """The consumed records (for a refusal) and which meldingen were handed over."""

    def close(self) -> None:
        self.db.close()


async def call_vendor(http: httpx.AsyncClient, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call to a vendor, its failures turned into the adapters' error classes."""
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TimeoutException as e:
        raise VendorTimeout(f"{what}: timed out ({type(e).__name__})") from e
    except httpx.TransportError as e:
        raise VendorUnavailable(f"{what}: {type(e).__name__}") from e
    if response.status_code >= 400:
        raise error_for_status(response.status_code, what, response.text, response.headers.get("retry-after"))
    return response


def vendor_json(response: httpx.Response, what: str) -> Any:
    """The vendor's JSON answer, or ``VendorMalformed`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise VendorMalformed(f"{what}: the answer is not JSON (HTTP {response.status_code})") from None
