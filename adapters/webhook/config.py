"""Configuration of a signed-webhook adapter for one authority with a home-grown system.

Out: each melding is POSTed (JSON-LD) to ``url``, signed with the key in ``secret_env``. In: the
system POSTs status changes to ``{host}:{port}{status_path}``, signed with the key in
``inbound_secret_env`` (default: the same key). Its status words map to MeldingStatuswaarde via
``statuses`` (data, checked by ``meldhub adapters check``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from adapters.base import AuthorityConfig, check_notation, InboundLimits, secret, StatusTexts

VENDOR = "webhook"
ROLE = "authority"

DEFAULT_STATUSES: dict[str, str] = {
    **{n: n for n in ("557", "496", "133", "475", "250", "733", "647", "751", "138", "956")},
    "toegewezen": "557",
    "ontvangen": "557",
    "in-onderzoek": "496",
    "in-behandeling": "496",
    "opgelost": "133",
    "afgewezen": "475",
    "gesloten": "250",
    "ingetrokken": "733",
    "heringediend": "647",
    "heropend": "647",
    "onontvankelijk": "751",
    "definitief-gesloten": "138",
    "afgerond": "956",
}
"""The words a system may send as ``status``: the notation itself, or the Dutch label (lower case,
hyphens). Ingediend (511) is not among them: it is the citizen's submission."""


class Config(AuthorityConfig, InboundLimits):
    vendor: Literal["webhook"] = "webhook"

    url: str = Field(pattern=r"^https?://")
    """The system's endpoint that receives meldingen (``POST``, JSON-LD)."""
    secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Environment variable with the shared key that signs outgoing meldingen (≥ 32 random bytes)."""
    inbound_secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Key the system signs its status changes with (default: ``secret_env``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8330, ge=1, le=65535)
    status_path: str = Field(default="/webhook/status", pattern=r"^/[A-Za-z0-9/_-]*$")
    tolerance_s: int = Field(default=300, ge=10, le=3600)
    """Replay window: a signature older or further in the future than this is refused, and a
    signature is accepted once within it."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)

    refusal_action: str | None = "weigeren"
    """The inbound ``actie`` that says "not ours" (with a ``reden``): the melding goes back to the
    hub (``meldingen.refusals``); null: the system cannot refuse."""
    statuses: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_STATUSES))
    status_texts: StatusTexts = Field(default_factory=dict)
    max_text_chars: int = Field(default=2000, ge=0, le=4000)

    @field_validator("statuses")
    @classmethod
    def _notations(cls, v: dict[str, str]) -> dict[str, str]:
        return {word.lower(): check_notation(n) or n for word, n in v.items()}

    def secret_envs(self) -> list[str]:
        return [self.secret_env] + ([self.inbound_secret_env] if self.inbound_secret_env else [])

    def outbound_key(self) -> bytes:
        return secret(self.secret_env).encode("utf-8")

    def inbound_key(self) -> bytes:
        return secret(self.inbound_secret_env or self.secret_env).encode("utf-8")
