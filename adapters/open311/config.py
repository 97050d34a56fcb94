"""Configuration of an Open311 GeoReport v2 endpoint the hub offers to citizens' apps.

Defaults are the vendor's; an instance in ``adapters.yaml`` overrides what differs (maps merge
key by key, lists are replaced) — the per-council pattern of mySociety's open311-adapter.
Secrets (the clients' API keys) come from the environment variables named here, never from
the file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.base import AdapterConfig, check_notation, secret

VENDOR = "open311"
ROLE = "channel"


class Client(BaseModel):
    """An app allowed to submit (FixMyStreet, a municipal app, …) with its own API key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    api_key_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")

    def api_key(self) -> str:
        return secret(self.api_key_env)


class Open311Status(BaseModel):
    """How a MeldingStatuswaarde shows in Open311: GeoReport ``status`` plus FixMyStreet's extended status."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "closed"]
    extended: str


EXTENDED_STATUSES: tuple[str, ...] = (
    "unchanged", "open", "closed", "fixed", "in_progress", "planned", "action_scheduled", "investigating",
    "duplicate", "not_councils_responsibility", "no_further_action", "internal_referral", "cancelled",
    "reopen", "for_triage",
)
"""FixMyStreet's extended statuses (mySociety ``status_extended``; the two Bromley-only ones left out)."""

OPEN_EXTENDED = frozenset(
    {"open", "in_progress", "planned", "action_scheduled", "investigating", "internal_referral", "reopen", "for_triage"}
)
"""Extended statuses that mean GeoReport ``open`` (the rest mean ``closed``; ``unchanged`` neither)."""

DEFAULT_STATUS_MAP: dict[str, Open311Status] = {
    "511": Open311Status(status="open", extended="open"),
    "647": Open311Status(status="open", extended="reopen"),
    "557": Open311Status(status="open", extended="in_progress"),
    "496": Open311Status(status="open", extended="investigating"),
    "133": Open311Status(status="closed", extended="fixed"),
    "475": Open311Status(status="closed", extended="no_further_action"),
    "751": Open311Status(status="closed", extended="not_councils_responsibility"),
    "250": Open311Status(status="closed", extended="closed"),
    "733": Open311Status(status="closed", extended="cancelled"),
    "138": Open311Status(status="closed", extended="closed"),
    "956": Open311Status(status="closed", extended="closed"),
}
"""MeldingStatuswaarde (notation) → how ``GET requests`` and ``servicerequestupdates`` show it."""

DEFAULT_EXTENDED_TO_OSLO: dict[str, str | None] = {
    "unchanged": None,
    "open": "557",
    "reopen": "647",
    "in_progress": "557",
    "planned": "557",
    "action_scheduled": "557",
    "internal_referral": "557",
    "for_triage": "496",
    "investigating": "496",
    "fixed": "133",
    "no_further_action": "475",
    "not_councils_responsibility": "751",
    "duplicate": "250",
    "closed": "956",
    "cancelled": "733",
}
"""An Open311 back end's status (GeoReport ``open``/``closed`` or extended) → MeldingStatuswaarde.
Used to read responses of Open311 servers (the client side) and to classify updates."""

DEFAULT_GROUPS: dict[str, str] = {
    "zwerfvuil": "Afval en netheid",
    "sluikstort": "Afval en netheid",
    "volle-vuilnisbak": "Afval en netheid",
    "wegdefect": "Wegen en verkeer",
    "voetpad-fietspad-defect": "Wegen en verkeer",
    "straatverlichting": "Wegen en verkeer",
    "verkeerslicht-signalisatie": "Wegen en verkeer",
    "hinder-wegenwerken": "Wegen en verkeer",
    "riolering-wateroverlast": "Water en riolering",
    "groenonderhoud-bomen": "Groen",
    "dierenoverlast-dood-dier": "Overlast",
    "graffiti-vandalisme": "Overlast",
    "geluidsoverlast": "Overlast",
    "vraag-burgerzaken": "Burgerzaken",
}


class Config(AdapterConfig):
    vendor: Literal["open311"] = "open311"

    jurisdiction_id: str | None = None
    """Set when clients must name it; a request naming another jurisdiction gets 404."""
    clients: list[Client] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8311, ge=1, le=65535)
    base_path: str = ""
    """Path prefix of every resource, e.g. ``/open311/v2`` (empty: at the root)."""
    public_url: str | None = None
    """Where citizens follow a request: ``{public_url}/requests/{id}.json`` becomes the melding's ``webpagina``."""

    indiener: str = Field(pattern=r"^https?://")
    """``indiener`` of every melding submitted here: the organisation that runs this endpoint."""
    application_iri: str | None = None
    """``meldingsapplicatie``; default ``https://w3id.org/meldingen-hub/id/applicatie/<id>``."""

    service_type: Literal["realtime", "batch"] = "realtime"
    service_notice: str = "Uw melding wordt doorgestuurd naar de bevoegde dienst."
    groups: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_GROUPS))
    reference_attributes: list[str] = Field(default_factory=lambda: ["fixmystreet_id", "client_reference"])
    """``attribute[<code>]`` values that identify a report in the client: a repeated POST with the
    same value from the same client returns the first request instead of making a second melding."""

    max_request_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    rate_limit_submit: str = "60/minute"
    """Submissions (POST requests, POST servicerequestupdates) per api_key (client)."""
    rate_limit_read: str = "600/minute"
    """GET requests per peer address (the spec allows anonymous reads)."""
    rate_limit_auth_failures: str = "20/hour"
    """Invalid api_keys per peer address before that address is answered 429 at once."""
    max_description_chars: int = 4000
    max_span_days: int = 90
    max_results: int = 1000
    check_shapes: bool = True
    """Validate each new melding against the hub's SHACL shapes before accepting it (400 if not)."""
    check_region: bool = True
    """Refuse (400) a point outside the municipalities the registry serves."""

    status_map: dict[str, Open311Status] = Field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))
    extended_to_oslo: dict[str, str | None] = Field(default_factory=lambda: dict(DEFAULT_EXTENDED_TO_OSLO))

    @field_validator("rate_limit_submit", "rate_limit_read", "rate_limit_auth_failures")
    @classmethod
    def _rate_limit(cls, v: str) -> str:
        from hub.ratelimit import parse_limit

        parse_limit(v)  # ValueError with the accepted form
        return v

    @field_validator("status_map")
    @classmethod
    def _status_keys(cls, v: dict[str, Open311Status]) -> dict[str, Open311Status]:
        return {check_notation(k) or k: s for k, s in v.items()}

    @field_validator("extended_to_oslo")
    @classmethod
    def _extended_values(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        return {k.lower(): check_notation(n) for k, n in v.items()}

    @field_validator("base_path")
    @classmethod
    def _base_path(cls, v: str) -> str:
        v = v.rstrip("/")
        if v and not v.startswith("/"):
            raise ValueError("base_path starts with '/' (or is empty)")
        return v

    @model_validator(mode="after")
    def _unique_clients(self) -> Config:
        names = [c.name for c in self.clients]
        if len(names) != len(set(names)):
            raise ValueError("client names must be unique")
        return self

    def secret_envs(self) -> list[str]:
        return [c.api_key_env for c in self.clients]

    @property
    def application(self) -> str:
        return self.application_iri or f"https://w3id.org/meldingen-hub/id/applicatie/{self.id}"
