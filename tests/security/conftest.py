"""Helpers shared by the security tests: the demo corpus of reporters and key material."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from hub.demo import DemoFeed, _texts
from hub.geo import MunicipalityIndex
from hub.privacy import Identity, KeyRing, RecipientKey, authority_recipient, generate_keypair
from hub.registry import Registry

REGISTRY = Path(__file__).resolve().parents[1] / "data" / "registry-no-layers.yaml"


def reporters() -> list[tuple[str, str, str]]:
    """Every reporter (name, e-mail, phone) of hub.demo's corpus."""
    return [tuple(m) for m in _texts()["melders"]]  # type: ignore[misc]


def personal_strings() -> list[str]:
    """What must never appear: names, e-mail addresses, phones (as written and as bare digits)."""
    out: list[str] = []
    for name, email, phone in reporters():
        out += [name, email, phone, re.sub(r"\D", "", phone)]
        out += [part for part in name.split() if len(part) > 3]
    return out


def assert_no_personal_data(texts: Iterable[str | bytes], where: str = "") -> None:
    for text in texts:
        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        for needle in personal_strings():
            if needle.isdigit():  # a phone number however it is punctuated (not inside base64)
                pattern = r"(?<![A-Za-z0-9_-])" + r"[\s./()-]*".join(needle) + r"(?![A-Za-z0-9_-])"
                assert not re.search(pattern, text), f"{where}: a reporter's phone number leaked"
            else:
                assert needle.lower() not in text.lower(), f"{where}: reporter data {needle!r} leaked"


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(REGISTRY), MunicipalityIndex.load(), seed=11)


class Keys:
    """A hub key, X25519 key pairs for kortrijk and imog, a shared key for awv."""

    def __init__(self) -> None:
        import os

        self.hub = os.urandom(32)
        self.kortrijk_private, self.kortrijk_public = generate_keypair()
        self.imog_private, self.imog_public = generate_keypair()
        self.awv_shared = os.urandom(32)
        self.ring = KeyRing(
            self.hub,
            {
                "kortrijk": RecipientKey(authority_recipient("kortrijk"), public=self.kortrijk_public),
                "imog": RecipientKey(authority_recipient("imog"), public=self.imog_public),
                "awv": RecipientKey(authority_recipient("awv"), shared=self.awv_shared),
            },
        )

    @property
    def kortrijk(self) -> Identity:
        return Identity.authority("kortrijk", self.kortrijk_private)

    @property
    def imog(self) -> Identity:
        return Identity.authority("imog", self.imog_private)

    @property
    def awv(self) -> Identity:
        return Identity.authority("awv", self.awv_shared, "shared")

    @property
    def hub_identity(self) -> Identity:
        return Identity.hub(self.hub)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()
