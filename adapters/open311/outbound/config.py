"""Configuration of one authority's Open311 GeoReport v2 server (one tenant), the hub as client.

The other side of ``adapters/open311/`` (the hub's own endpoint, vendor ``open311``): here the
hub files the meldingen of one authority at *that authority's* Open311 server and reads their
status back. Vendor id ``open311-out``, role ``authority``.

Everything that differs per server is data, checked by ``meldhub adapters check``: which
``service_code`` each hub category becomes, which GeoReport/FixMyStreet status means which
MeldingStatuswaarde, which statuses mean "not ours". The API key comes from the environment
variable named here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from adapters.base import AuthorityConfig, KnownCategories, secret, StatusMap, StatusTexts
from adapters.open311.config import DEFAULT_EXTENDED_TO_OSLO, EXTENDED_STATUSES

VENDOR = "open311-out"
ROLE = "authority"

GEOREPORT_STATUSES: tuple[str, ...] = ("open", "closed")
"""The spec's own two statuses (``Request.status``)."""

DEFAULT_STATUSES: dict[str, str | None] = {
    **DEFAULT_EXTENDED_TO_OSLO,  # how an Open311 back end's statuses read, except:
    # "open" is what a new request is: Toegewezen aan was already reported when it was filed, so it
    # changes nothing for the citizen
    "open": None,
    "not_councils_responsibility": None,  # not ours: a refusal (refusal_statuses), never a status
}
"""Vendor status (lower case) → MeldingStatuswaarde notation; null: no change for the citizen."""

DEFAULT_REFUSALS: dict[str, str | None] = {"not_councils_responsibility": None}
"""FixMyStreet's "not the council's responsibility" is exactly "not ours"."""


class Config(AuthorityConfig):
    vendor: Literal["open311-out"] = "open311-out"

    base_url: str = Field(pattern=r"^https?://")
    """The server's GeoReport v2 root, e.g. ``https://open311.kortrijk.example/v2`` (``requests.json``
    … are appended)."""
    api_key_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Environment variable with the API key the authority issued to the hub."""
    jurisdiction_id: str | None = None
    """Sent with every call when set (the spec: only for servers with several jurisdictions)."""

    service_codes: Annotated[dict[str, str], KnownCategories] = Field(default_factory=dict)
    """Hub category slug → the server's ``service_code`` (its ``GET services.json``)."""
    default_service_code: str | None = None
    """For a melding whose category is not in ``service_codes``; none: such a melding is a dead
    letter (``unknown-category``) for an admin to map."""
    reference_attribute: str = Field(default="meldingen_hub_id", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    """The melding id travels as ``attribute[<this>]``. A server that treats it as the client's
    reference (as the hub's own endpoint and FixMyStreet-style servers do with ``fixmystreet_id``)
    answers a repeated POST with the first request: set it to the code the server dedups on."""
    recover_by_search: bool = True
    """Before POSTing again after a POST whose answer was lost, search the server's requests of
    that service_code filed since the first attempt for the melding id in the description."""
    clock_skew_s: float = Field(default=300.0, ge=0, le=86400)
    """Margin around that search window (the server's clock is not ours)."""
    send_contact_details: bool = True
    """Send the reporter's e-mail, name and phone (the authority needs them to follow up)."""
    max_description_chars: int = Field(default=4000, ge=200, le=100_000)

    status_source: Literal["requests", "servicerequestupdates"] = "requests"
    """Where status comes back from: ``requests`` = ``GET requests.json?service_request_id=…``
    in batches (the spec; open/closed, plus an extended status when the server adds one);
    ``servicerequestupdates`` = FixMyStreet's ``GET servicerequestupdates.json`` in time windows
    (every change with its extended status) — only for servers that offer it."""
    poll_interval_s: float = Field(default=60.0, gt=0)
    poll_overlap_s: float = Field(default=300.0, ge=0)
    """servicerequestupdates: each window re-reads this far back (clock skew, late commits);
    updates already seen (by ``update_id``) are skipped."""
    batch_size: int = Field(default=50, ge=1, le=1000)
    """Service request ids per ``GET requests.json`` (comma-separated in one query)."""
    max_window_days: int = Field(default=89, ge=1, le=90)
    """The spec lets a server refuse a start_date–end_date window over 90 days."""

    statuses: StatusMap = Field(default_factory=lambda: dict(DEFAULT_STATUSES))
    """Vendor status (GeoReport ``open``/``closed`` or FixMyStreet extended, lower case) →
    MeldingStatuswaarde notation (null: no change for the citizen)."""
    refusal_statuses: dict[str, str | None] = Field(default_factory=lambda: dict(DEFAULT_REFUSALS))
    """Vendor statuses that mean "not ours" → the Dutch reason sent with the refusal (null: a
    sentence naming the status). Each must be mapped to null in ``statuses``."""
    use_status_notes: bool = True
    """Use the server's ``status_notes`` (or the update's description) as the citizen's text; the
    spec makes them public. Otherwise ``status_texts`` or the hub's default sentence."""
    status_texts: StatusTexts = Field(default_factory=dict)

    @field_validator("statuses", "refusal_statuses")
    @classmethod
    def _lower(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        return {k.lower(): v[k] for k in v}

    @model_validator(mode="after")
    def _some_service_code(self) -> Config:
        if not self.service_codes and self.default_service_code is None:
            raise ValueError("give service_codes (hub category → service_code) or a default_service_code")
        return self

    def vendor_statuses(self) -> list[str]:
        """Every status the server can report: GeoReport's two and FixMyStreet's extended ones."""
        return list(dict.fromkeys([*GEOREPORT_STATUSES, *EXTENDED_STATUSES, *self.statuses]))

    def secret_envs(self) -> list[str]:
        return [self.api_key_env]

    def api_key(self) -> str:
        return secret(self.api_key_env)
