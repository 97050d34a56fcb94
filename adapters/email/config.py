"""Configuration of the e-mail adapter for one authority that has no system the hub can call.

One Dutch e-mail (plain text + HTML) per melding to the authority's addresses, over SMTP; the
authority sets the status through a signed link (HMAC-SHA256, with an expiry) to a small web form
served by the same process. Secrets (SMTP login, link key) come from the environment variables
named here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from adapters.base import AuthorityConfig, check_notation, InboundLimits, secret, StatusTexts
from hub.categories import by_slug

VENDOR = "email"
ROLE = "authority"

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

DEFAULT_CHOICES: list[str] = ["496", "133", "475", "751", "250", "956"]
"""What the receiver may set: In onderzoek, Opgelost, Afgewezen, Onontvankelijk, Gesloten, Afgerond
(not Ingediend/Heringediend/Ingetrokken: those are the citizen's)."""


def _check_address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


class Config(AuthorityConfig, InboundLimits):
    vendor: Literal["email"] = "email"

    recipients: list[str] = Field(min_length=1)
    """The authority's addresses (a shared mailbox of the service that handles meldingen)."""
    category_recipients: dict[str, list[str]] = Field(default_factory=dict)
    """Hub category slug → other addresses for that category (replaces ``recipients``)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_username_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    smtp_password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_s: float = Field(default=30.0, gt=0, le=300)

    from_address: str
    from_name: str = "Meldingen Hub"
    reply_domain: str
    """Domain of the per-melding reply address ``<reply_local>+<melding id>@<reply_domain>`` (also the
    envelope sender, so a bounce names its melding) and of the Message-ID."""
    reply_local: str = Field(default="melding", pattern=r"^[a-z0-9][a-z0-9._-]{0,30}$")

    public_url: str = Field(pattern=r"^https?://")
    """Where the receiver reaches this adapter's status form: ``{public_url}/status/<token>``."""
    host: str = "127.0.0.1"
    port: int = Field(default=8320, ge=1, le=65535)
    link_secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Environment variable with the key that signs status links (HMAC-SHA256; ≥ 32 random bytes)."""
    link_valid_days: int = Field(default=60, ge=1, le=366)

    status_choices: list[str] = Field(default_factory=lambda: list(DEFAULT_CHOICES))
    allow_refusal: bool = True
    """Offer "Niet onze bevoegdheid" (with a reason) on the status form: the melding goes back to the
    hub (``meldingen.refusals``), which routes it to the next owner and tells the citizen."""
    status_texts: StatusTexts = Field(default_factory=dict)
    max_note_chars: int = Field(default=2000, ge=0, le=4000)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        return [_check_address(a) for a in v]

    @field_validator("category_recipients")
    @classmethod
    def _category_recipients(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [slug for slug in v if by_slug(slug) is None]
        if unknown:
            raise ValueError(f"not categories of the hub's scheme: {', '.join(unknown)}")
        return {slug: [_check_address(a) for a in addresses] for slug, addresses in v.items()}

    @field_validator("from_address")
    @classmethod
    def _from(cls, v: str) -> str:
        return _check_address(v)

    @field_validator("reply_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not _DOMAIN.match(v):
            raise ValueError(f"not a domain name: {v!r}")
        return v.lower()

    @field_validator("status_choices")
    @classmethod
    def _choices(cls, v: list[str]) -> list[str]:
        return [check_notation(n) or n for n in v]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        return v.rstrip("/")

    @model_validator(mode="after")
    def _login(self) -> Config:
        if (self.smtp_username_env is None) != (self.smtp_password_env is None):
            raise ValueError("give both smtp_username_env and smtp_password_env, or neither")
        return self

    def secret_envs(self) -> list[str]:
        return [e for e in (self.smtp_username_env, self.smtp_password_env, self.link_secret_env) if e]

    def smtp_login(self) -> tuple[str, str] | None:
        if self.smtp_username_env is None or self.smtp_password_env is None:
            return None
        return secret(self.smtp_username_env), secret(self.smtp_password_env)

    def link_key(self) -> bytes:
        return secret(self.link_secret_env).encode("utf-8")
