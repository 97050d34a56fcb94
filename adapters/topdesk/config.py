"""Configuration of one authority's TOPdesk (one tenant).

TOPdesk's processing statuses are tenant-defined names ("Logged", "In behandeling", …): the map
from those names to MeldingStatuswaarde, and the tenant's workflow between them, are config data
checked by ``meldhub adapters check``. Vendor defaults below; each tenant in ``adapters.yaml``
overrides what differs (maps merge key by key, lists are replaced). The login name and the
application password come from the environment variables named here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.base import AuthorityConfig, KnownCategories, secret, StatusMap, StatusTexts

VENDOR = "topdesk"
ROLE = "authority"

DEFAULT_PROCESSING_STATUSES: dict[str, str | None] = {
    "Logged": "557",
    "In progress": "496",
    "Waiting for user": "496",
    "Completed": "133",
    "Rejected": "475",
    "Closed": "956",
}
"""Example names of an English TOPdesk (``Logged`` is in TOPdesk's published test data); every
tenant names its own — override them per tenant."""

DEFAULT_WORKFLOW: dict[str, list[str]] = {
    "Logged": ["In progress", "Waiting for user", "Completed", "Rejected", "Closed"],
    "In progress": ["Waiting for user", "Completed", "Rejected", "Closed"],
    "Waiting for user": ["In progress", "Completed", "Closed"],
    "Completed": ["Closed"],
    "Rejected": ["Closed"],
    "Closed": [],
}


class Lookup(BaseModel):
    """A TOPdesk reference written as ``{"id": …}`` or ``{"name": …}``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Lookup:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name")
        return self

    def ref(self) -> dict[str, str]:
        return {"id": self.id} if self.id is not None else {"name": self.name or ""}


class CategoryTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Lookup | None = None
    subcategory: Lookup | None = None


class Config(AuthorityConfig):
    vendor: Literal["topdesk"] = "topdesk"

    base_url: str = Field(pattern=r"^https?://")
    """The tenant's TOPdesk, e.g. ``https://kortrijk.topdesk.net`` (``/tas/api/...`` is appended)."""
    username_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    password_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Environment variable with the operator's *application password* (not the login password)."""

    poll_interval_s: float = Field(default=60.0, gt=0)
    poll_overlap_s: float = Field(default=300.0, ge=0)
    """Each poll re-reads this far before the newest modificationDate seen (clock skew, late commits);
    changes already reported are recognised and skipped."""
    page_size: int = Field(default=100, ge=1, le=10000)

    processing_statuses: StatusMap = Field(default_factory=lambda: dict(DEFAULT_PROCESSING_STATUSES))
    """Tenant processing-status name → MeldingStatuswaarde notation (null: no change for the citizen)."""
    workflow: dict[str, list[str]] | None = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_WORKFLOW.items()})
    """The tenant's allowed processing-status changes; ``adapters check`` proves each is a legal
    life-cycle transition. null: not declared (then only the mapping is checked)."""
    new_incident_status: str | None = "Logged"
    """The processing status TOPdesk gives a new incident."""
    refusal_statuses: dict[str, str | None] = Field(default_factory=dict)
    """Processing statuses that mean "not ours" (handed over, wrong authority) → the Dutch reason
    sent with the refusal (null: a sentence naming the status). The melding goes back to the hub
    (``meldingen.refusals``) instead of a status to the citizen; each must be in
    ``processing_statuses`` mapped to null. TOPdesk has no such status of its own: every tenant
    names it (e.g. ``Niet bevoegd``)."""

    categories: Annotated[dict[str, CategoryTarget], KnownCategories] = Field(default_factory=dict)
    """Hub category slug → TOPdesk category/subcategory (by id or name); unmapped: none sent."""
    call_type: Lookup | None = None
    entry_type: Lookup | None = None
    operator_group: Lookup | None = None
    caller_branch: Lookup | None = None
    """Branch of the unregistered caller (some tenants require one)."""
    anonymous_caller: str = "Anonieme melder"
    send_contact_details: bool = True
    """Pass the reporter's name, e-mail and phone to TOPdesk (the authority needs them to follow up)."""
    status_texts: StatusTexts = Field(default_factory=dict)
    """MeldingStatuswaarde notation → the sentence the citizen sees (default: hub.status texts)."""

    def secret_envs(self) -> list[str]:
        return [self.username_env, self.password_env]

    def credentials(self) -> tuple[str, str]:
        return secret(self.username_env), secret(self.password_env)
