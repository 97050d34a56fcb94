"""Encrypted contact details, authority side: reveal the reporter to the owner's system.

With ``MELDHUB_PROTECT_CONTACT_DETAILS=true`` the hub encrypts a melding's ``melder`` node per
melding and wraps the data key for the owning authority (``hub/privacy.py``, key records on the
compacted ``meldingen.keys``). The owner's adapter is that authority's reader: it holds the
authority's :class:`hub.privacy.Identity` (``MELDHUB_PRIVACY_IDENTITY=authority:<id>`` and
``MELDHUB_PRIVACY_PRIVATE_KEY``) and decrypts the contact details just before it translates the
melding, so the ticket in the authority's tool carries them — and nothing else of the adapter
(log, store, dead letter) ever sees them in clear.

Without a key — erased (``meldhub gdpr erase``), not wrapped for this authority, or no identity
configured — the melding is filed without contact details and a warning without personal data is
logged. On a refusal the adapter sends the melding's key record back with it (header
``melding-key``), so the hub can re-encrypt for the next owner.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import VendorUnavailable
from hub import logs
from hub.privacy import (
    IDENTITY_ENV,
    Identity,
    KeyTable,
    PrivacyConfigError,
    PrivacyError,
    authority_recipient,
    is_protected,
    load_keys,
    reveal,
)

log = logs.get_logger("adapters.contact")

Refresh = Callable[[KeyTable], Awaitable[Any]]


class _Table(KeyTable):
    """A :class:`KeyTable` that also hands out a melding's key record (wrapped keys only), which a
    refusal carries back to the hub."""

    def record(self, melding_id: str) -> dict[str, Any] | None:
        return self._records.get(melding_id)


@dataclass(frozen=True)
class Revealed:
    """A melding document ready for translation, and what happened to its contact details."""

    doc: dict[str, Any]
    state: str
    """``clear`` (never encrypted), ``revealed``, or why they are missing: ``erased``,
    ``not-recipient``, ``unknown`` (no key record), ``no-identity`` (the adapter has no key)."""

    @property
    def changed(self) -> bool:
        return self.state != "clear"


class ContactKeys:
    """The adapter's view of ``meldingen.keys`` for its own authority.

    ``refresh`` reads the key topic on from where the table stopped (:func:`hub.privacy.load_keys`);
    it is called when a melding's key is not known yet. The hub writes a melding and its key record
    in one transaction, so after a refresh a record that is still absent does not exist (erased).
    """

    def __init__(self, identity: Identity, refresh: Refresh | None = None) -> None:
        self.identity = identity
        self.table = _Table(identity)
        self._refresh = refresh

    @classmethod
    def from_env(cls, authority: str, bootstrap: str, env: Mapping[str, str] | None = None) -> ContactKeys | None:
        """The authority's identity from the environment, or None when none is configured. An
        identity of another reader (``hub`` or another authority) is a configuration error."""
        env = os.environ if env is None else env
        if not env.get(IDENTITY_ENV):
            return None
        identity = Identity.from_env(env)
        wanted = authority_recipient(authority)
        if identity.name != wanted:
            raise PrivacyConfigError(f"{IDENTITY_ENV} is {identity.name!r}; this adapter reads as {wanted!r}")
        from hub.kafka_auth import client_kwargs

        async def refresh(table: KeyTable) -> Any:
            return await load_keys(bootstrap, table, auth=client_kwargs())

        return cls(identity, refresh)

    async def _ensure(self, melding_id: str) -> None:
        if self.table.state(melding_id) != "unknown" or self._refresh is None:
            return
        try:
            await self._refresh(self.table)
        except Exception as exc:  # noqa: BLE001 - the key topic is unreachable: try the melding again later
            raise VendorUnavailable(f"{type(exc).__name__} while reading meldingen.keys") from None

    async def reveal(self, doc: Mapping[str, Any], melding_id: str) -> Revealed:
        if not is_protected(doc):
            return Revealed(dict(doc), "clear")
        await self._ensure(melding_id)
        state = self.table.state(melding_id)
        try:
            out = reveal(doc, self.table)  # no usable key: the melder is dropped, never passed on encrypted
        except PrivacyError:  # wrapped for another key of ours (rotated?) or tampered: unreadable here
            return Revealed(reveal(doc, {}), "unreadable")
        return Revealed(out, "revealed" if state == "available" and "melder" in out else state)

    async def record(self, melding_id: str) -> dict[str, Any] | None:
        await self._ensure(melding_id)
        return self.table.record(melding_id)


async def reveal_for(contacts: ContactKeys | None, doc: Mapping[str, Any], melding_id: str, adapter: str) -> Revealed:
    """Reveal with ``contacts`` (None: the adapter has no identity) and log, without personal data,
    when a melding goes out without the contact details it had."""
    if contacts is None:
        if not is_protected(doc):
            return Revealed(dict(doc), "clear")
        revealed = Revealed(reveal(doc, {}), "no-identity")
    else:
        revealed = await contacts.reveal(doc, melding_id)
    if revealed.changed and revealed.state != "revealed":
        log.warning("contact_details.unavailable", adapter=adapter, correlation_id=melding_id, key_state=revealed.state,
                    detail="filed without the reporter's contact details")
    return revealed
