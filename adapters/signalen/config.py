"""Configuration of one authority's Signalen (Amsterdam/signals, the VNG's "Signalen") tenant.

Everything vendor-specific is data here, overridable per tenant in ``adapters.yaml``:

- ``states``: every Signalen status code → MeldingStatuswaarde notation (null: no change the
  citizen sees). Checked by ``meldhub adapters check`` against ``workflow`` (Signalen's own
  ``ALLOWED_STATUS_CHANGES``, ``app/signals/apps/signals/workflow.py``; defaults below).
- ``categories``: hub category slug → Signalen ``hoofdcategorie/subcategorie`` slug. Default: the
  first ``skos:exactMatch``/``skos:closeMatch`` of the hub's scheme
  (``schemas/codelists/categorieen.ttl``, :meth:`hub.categories.Category.signalen_slugs`), then
  ``default_category``. Every tenant has its own tree: override what differs.

The bearer token comes from the environment variable named in ``token_env``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from adapters.base import AuthorityConfig, KnownCategories, secret, StatusMap, StatusTexts

VENDOR = "signalen"
ROLE = "authority"

STATE_NAMES: dict[str, str] = {
    "m": "Gemeld",
    "i": "In afwachting van behandeling",
    "b": "In behandeling",
    "h": "On hold",
    "ingepland": "Ingepland",
    "ready to send": "Extern: te verzenden",
    "o": "Afgehandeld",
    "a": "Geannuleerd",
    "reopened": "Heropend",
    "s": "Gesplitst",
    "closure requested": "Extern: verzoek tot afhandeling",
    "reaction requested": "Reactie gevraagd",
    "reaction received": "Reactie ontvangen",
    "forward to external": "Doorgezet naar extern",
    "sent": "Extern: verzonden",
    "send failed": "Extern: mislukt",
    "done external": "Extern: afgehandeld",
    "reopen requested": "Verzoek tot heropenen",
}
"""Signalen's status codes and their display names (``workflow.py`` STATUS_CHOICES; the last four
are set by the application only)."""

DEFAULT_STATES: dict[str, str | None] = {
    "m": "557",  # Gemeld → Toegewezen aan (the authority has it)
    "i": "557",  # In afwachting van behandeling
    "b": "496",  # In behandeling → In onderzoek
    "h": "496",  # On hold
    "ingepland": "496",
    "reaction requested": "496",  # the authority asked the reporter a question
    "reaction received": "496",
    "forward to external": "496",  # an external party is asked to act
    "ready to send": None,  # external-system plumbing (Sigmax/CityControl …): nothing new for the citizen
    "sent": None,
    "send failed": None,
    "done external": None,  # the contractor is done; the operator still decides (o)
    "closure requested": None,
    "reopen requested": None,  # the reporter asked; not decided yet
    "o": "133",  # Afgehandeld → Opgelost
    "a": "250",  # Geannuleerd → Gesloten (could not be handled)
    "reopened": "647",  # Heropend → Heringediend
    "s": "956",  # Gesplitst (historic): the parent is done, its children live on in Signalen
}
"""Signalen status → MeldingStatuswaarde notation (the hub's choice; documented in docs/adapters.md)."""

DEFAULT_WORKFLOW: dict[str, list[str]] = {
    "m": ["m", "i", "b", "ready to send", "o", "a", "ingepland", "reaction requested", "forward to external"],
    "i": ["m", "i", "ingepland", "closure requested", "o", "ready to send", "b", "a", "reaction requested",
          "forward to external"],
    "b": ["m", "ingepland", "b", "o", "a", "ready to send", "closure requested", "reaction requested",
          "forward to external"],
    "ingepland": ["m", "ingepland", "b", "o", "a", "closure requested", "reaction requested", "forward to external"],
    "h": ["ingepland", "a"],
    "ready to send": ["sent", "send failed", "a"],
    "sent": ["done external", "o", "a"],
    "send failed": ["m", "ready to send", "a"],
    "done external": ["o", "a", "b"],
    "o": ["reopened", "reopen requested"],
    "a": ["a", "reopened", "b"],
    "reopened": ["reopened", "b", "o", "a", "ready to send", "m", "reaction requested", "forward to external"],
    "s": [],
    "closure requested": ["m", "closure requested", "i", "o", "a", "b", "forward to external"],
    "reopen requested": ["o", "reopened", "a"],
    "reaction requested": ["m", "i", "b", "ingepland", "o", "a", "reaction requested", "reaction received",
                           "ready to send", "forward to external"],
    "reaction received": ["m", "i", "b", "o", "a", "ingepland", "reaction requested", "ready to send",
                          "forward to external"],
    "forward to external": ["closure requested", "m", "i", "b", "forward to external", "ingepland", "o", "a",
                            "reaction requested", "reaction received", "ready to send"],
}
"""Signalen's ``ALLOWED_STATUS_CHANGES`` (workflow.py at Amsterdam/signals HEAD adbe8fc7), as data."""

CATEGORY_PATH = "/signals/v1/public/terms/categories/{main}/sub_categories/{sub}"


class Config(AuthorityConfig):
    vendor: Literal["signalen"] = "signalen"

    base_url: str = Field(pattern=r"^https?://")
    """The tenant's Signalen API, e.g. ``https://api.meldingen.kortrijk.be`` (``/signals/v1/…`` is appended)."""
    token_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Environment variable with the bearer token (a JWT of a user with SIG/ALL rights)."""

    poll_interval_s: float = Field(default=60.0, gt=0)
    poll_overlap_s: float = Field(default=300.0, ge=0)
    """Each poll re-reads this far before the newest ``updated_at`` seen; changes already reported are skipped."""
    max_pages: int = Field(default=50, ge=1, le=1000)
    """Bound on the pages one look-up or poll reads (Signalen pages by 100)."""
    clock_skew_s: float = Field(default=600.0, ge=0)
    """Look-ups for an earlier create search from (first attempt − this): our clock and Signalen's may differ."""

    source: str = "Meldingen Hub"
    """Signalen ``source`` of every signal the hub creates (must exist in the tenant's Signalen). Also the
    filter of look-ups and polls, so only the hub's signals are read."""
    type_code: Literal["SIG", "REQ", "QUE", "COM", "MAI"] = "SIG"
    reference_id: str = Field(default="meldingen_hub_melding_id", pattern=r"^[A-Za-z0-9_-]+$")
    """``extra_properties[].id`` of the item that carries the melding id (the external reference)."""
    reference_label: str = "Melding-id (Meldingen Hub)"

    categories: Annotated[dict[str, str], KnownCategories] = Field(default_factory=dict)
    """Hub category slug → ``hoofdcategorie/subcategorie`` slug of the tenant (overrides the scheme's match)."""
    default_category: str | None = "overig/overig"
    """Where a category without a match goes (null: such a melding is dead-lettered)."""

    states: StatusMap = Field(default_factory=lambda: dict(DEFAULT_STATES))
    workflow: dict[str, list[str]] | None = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_WORKFLOW.items()})
    new_signal_state: str = "m"
    """The state Signalen gives a new signal."""
    refusal_states: dict[str, str | None] = Field(default_factory=dict)
    """States that mean "not ours" → the Dutch reason sent with the refusal (null: a sentence naming
    the state). The melding goes back to the hub (``meldingen.refusals``) instead of a status to the
    citizen; each such state must be mapped to null in ``states``. Empty by default: Signalen has no
    "not ours" state. ``forward to external`` ("Doorgezet naar extern") asks an external party to
    react and the signal stays with the municipality, so it is *not* a refusal unless a tenant uses
    it as its hand-over: then ``states: {forward to external: null}`` and
    ``refusal_states: {forward to external: "…"}``."""
    reopen_via_heringediend: bool = True
    """A decided melding that Signalen takes back into handling (``a`` → ``b``) is reported as
    647 Heringediend, then the new status: the hub's life cycle has no direct way back."""

    send_contact_details: bool = True
    """Send the reporter's e-mail and phone to Signalen (the authority needs them to follow up)."""
    sharing_allowed: bool = False
    """Signalen's ``reporter.sharing_allowed``: the reporter lets the authority share contact details with third parties."""
    use_reporter_messages: bool = True
    """A status change whose message Signalen sent to the reporter (``send_email``) carries that text
    to the citizen; otherwise the hub's sentence for the status is used."""
    status_texts: StatusTexts = Field(default_factory=dict)

    @field_validator("default_category")
    @classmethod
    def _default(cls, v: str | None) -> str | None:
        if v is not None and not _is_pair(v):
            raise ValueError("write the default Signalen category as 'hoofdcategorie/subcategorie'")
        return v

    def secret_envs(self) -> list[str]:
        return [self.token_env]

    def token(self) -> str:
        return secret(self.token_env)


def _is_pair(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(p and p.replace("-", "").replace("_", "").isalnum() for p in parts)
