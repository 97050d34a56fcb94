"""Personal data to the owner only, with crypto-shredding (docs/security.md).

A melding's ``melder`` node (the reporter: name, e-mail, phone, and whatever identifier the
channel gave the person) leaves the hub encrypted:

1. :func:`protect` draws a fresh 256-bit **data key** per melding, encrypts the JSON of the
   ``melder`` node with AES-256-GCM (associated data: the melding id, so a ciphertext cannot be
   moved to another melding) and replaces the node by ``{"@type": "Persoon", "versleuteld":
   "mh1.<nonce>.<ciphertext>"}`` — an opaque string literal, ``hub:versleuteld`` in RDF.
2. It **wraps** the data key for the owning authority (X25519 public key: ephemeral ECDH +
   HKDF-SHA256 + AES-256-GCM; or a 256-bit key shared with that authority) and for the hub (the
   hub's own 256-bit key, so the hub can re-deliver after a re-routing). The wrapped keys form the
   **key record**, produced to the compacted topic ``meldingen.keys`` under the melding id, in the
   same transaction as the melding.
3. A reader builds a :class:`KeyTable` from ``meldingen.keys`` (latest record per melding id,
   ``read_committed``) with its own :class:`Identity` and calls :func:`reveal`.
4. ``meldhub gdpr erase <id>`` (:func:`erase`) writes a **tombstone** for the key record and an
   audit record (who/when/why, no personal data) in one transaction. From then on every reader
   finds no key: a tombstone, or an absent record after reading to the end of the topic, means
   *erased* (that never depends on compaction having run). Compaction then removes the old record
   from disk within ``max.compaction.lag.ms`` (:func:`topic_configs`); the melding's ciphertext,
   wherever a copy of it sits, can no longer be decrypted by anyone.

Other meldingen are unaffected: every melding has its own data key.

Nothing here logs, and no exception raised here carries a value from a melding: errors name the
melding id and what failed, never the data.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import getpass
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.logs import scrub
from hub.topics import AUDIT, AUTHORITY_PREFIX, DEADLETTER, INBOUND, KEYS, REFUSALS, STATUS, STATUS_PREFIX, TRIAGE, Header

PROTECTED_TERM = "versleuteld"
PROTECTED_IRI = "https://w3id.org/meldingen-hub/ns#versleuteld"
"""The JSON-LD term (and its IRI) of the encrypted ``melder``; see docs/security.md for the
context and shape additions."""
CIPHERTEXT_PREFIX = "mh1."
_CIPHERTEXT = re.compile(r"^mh1\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})$")

HUB_RECIPIENT = "hub"
KEY_BYTES = 32
NONCE_BYTES = 12
RECORD_VERSION = 1
ERASE_ACTION = "gdpr-erased"

HUB_KEY_ENV = "MELDHUB_PRIVACY_HUB_KEY"
RECIPIENTS_ENV = "MELDHUB_PRIVACY_RECIPIENTS"
"""YAML file naming each authority's public key (or the env var of a shared key)."""
IDENTITY_ENV = "MELDHUB_PRIVACY_IDENTITY"
"""The reader's recipient name: ``hub`` or ``authority:<id>``."""
PRIVATE_KEY_ENV = "MELDHUB_PRIVACY_PRIVATE_KEY"
"""The reader's secret: its X25519 private key, or the shared 256-bit key (base64)."""

_MELDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


class PrivacyError(ValueError):
    """Protecting, unwrapping or revealing failed. The message never contains personal data."""


class PrivacyConfigError(PrivacyError):
    """Keys are missing or malformed (names the variable or file, never the key)."""


# ---------------------------------------------------------------------------------------------
# encoding helpers
# ---------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise PrivacyError("malformed base64 in protected data") from exc


def _key_from_text(text: str, what: str) -> bytes:
    """A 32-byte key given as base64 (standard or URL-safe, padding optional) or 64 hex digits."""
    text = text.strip()
    raw: bytes | None = None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    else:
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != KEY_BYTES:
        raise PrivacyConfigError(f"{what}: expected {KEY_BYTES} bytes as base64 or hex")
    return raw


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """``$NAME``, else the first line of the file ``$NAME_FILE``."""
    if env.get(name):
        return env[name]
    path = env.get(name + "_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PrivacyConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None
    return None


def key_id(material: bytes) -> str:
    """A short public name for a key (its SHA-256 prefix): tells rotated keys apart."""
    return hashlib.sha256(b"meldhub-kid:" + material).hexdigest()[:16]


def _check_melding_id(melding_id: str) -> str:
    if not isinstance(melding_id, str) or not _MELDING_ID.match(melding_id):
        raise PrivacyError("invalid melding id (expected the identificator notation, e.g. a UUID)")
    return melding_id


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecipientKey:
    """What the hub wraps a data key with: an X25519 public key, or a shared 256-bit key."""

    name: str
    public: bytes | None = None
    shared: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.public is None) == (self.shared is None):
            raise PrivacyConfigError(f"recipient {self.name}: give exactly one of a public key or a shared key")
        if self.public is not None and len(self.public) != 32:
            raise PrivacyConfigError(f"recipient {self.name}: an X25519 public key is 32 bytes")

    @property
    def kid(self) -> str:
        return key_id(self.public if self.public is not None else self.shared or b"")


@dataclass(frozen=True)
class Identity:
    """What a reader unwraps with: its recipient name and its secret (X25519 private or shared)."""

    name: str
    secret: bytes = field(repr=False)
    kind: str = "x25519"  # or "shared"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Identity:
        env = os.environ if env is None else env
        name = env.get(IDENTITY_ENV)
        if not name:
            raise PrivacyConfigError(f"set {IDENTITY_ENV} to 'hub' or 'authority:<id>'")
        if name == HUB_RECIPIENT:
            text = _secret(env, HUB_KEY_ENV)
            if not text:
                raise PrivacyConfigError(f"set {HUB_KEY_ENV} or {HUB_KEY_ENV}_FILE")
            return cls(name, _key_from_text(text, HUB_KEY_ENV), "shared")
        text = _secret(env, PRIVATE_KEY_ENV)
        if not text:
            raise PrivacyConfigError(f"set {PRIVATE_KEY_ENV} or {PRIVATE_KEY_ENV}_FILE")
        kind = env.get(PRIVATE_KEY_ENV + "_KIND", "x25519")
        if kind not in ("x25519", "shared"):
            raise PrivacyConfigError(f"{PRIVATE_KEY_ENV}_KIND must be x25519 or shared")
        return cls(name, _key_from_text(text, PRIVATE_KEY_ENV), kind)

    @classmethod
    def hub(cls, key: bytes) -> Identity:
        return cls(HUB_RECIPIENT, key, "shared")

    @classmethod
    def authority(cls, authority_id: str, secret: bytes, kind: str = "x25519") -> Identity:
        return cls(authority_recipient(authority_id), secret, kind)


def authority_recipient(authority_id: str) -> str:
    return f"authority:{authority_id}"


def generate_keypair() -> tuple[bytes, bytes]:
    """A new X25519 key pair for an authority: (private, public), 32 raw bytes each."""
    private = X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return (
        private.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
        private.public_key().public_bytes(raw, serialization.PublicFormat.Raw),
    )


def public_key_of(private: bytes) -> bytes:
    raw = serialization.Encoding.Raw
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class KeyRing:
    """The hub's side: its own key and each authority's recipient key.

    An authority missing here still gets its meldingen, with the contact details wrapped for the
    hub only (the hub can re-wrap once the authority's key is known); never in clear.
    """

    hub_key: bytes = field(repr=False)
    authorities: Mapping[str, RecipientKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.hub_key) != KEY_BYTES:
            raise PrivacyConfigError(f"the hub key must be {KEY_BYTES} bytes")

    def recipients(self, owner: str) -> list[RecipientKey]:
        found = [RecipientKey(HUB_RECIPIENT, shared=self.hub_key)]
        if owner in self.authorities:
            found.append(self.authorities[owner])
        return found

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeyRing:
        """``$MELDHUB_PRIVACY_HUB_KEY[_FILE]`` and the recipients file ``$MELDHUB_PRIVACY_RECIPIENTS``::

            authorities:
              kortrijk: {x25519_public: "<base64, 32 bytes>"}     # public: may live in the repo
              imog: {shared_key_env: MELDHUB_PRIVACY_KEY_IMOG}     # secret: only its env var's name
        """
        env = os.environ if env is None else env
        text = _secret(env, HUB_KEY_ENV)
        if not text:
            raise PrivacyConfigError(f"set {HUB_KEY_ENV} or {HUB_KEY_ENV}_FILE (the hub's 256-bit key, base64)")
        hub_key = _key_from_text(text, HUB_KEY_ENV)
        path = env.get(RECIPIENTS_ENV)
        return cls(hub_key, load_recipients(Path(path), env) if path else {})


def load_recipients(path: Path, env: Mapping[str, str] | None = None) -> dict[str, RecipientKey]:
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PrivacyConfigError(f"{path}: cannot read the recipients file ({type(exc).__name__})") from None
    entries = data.get("authorities") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise PrivacyConfigError(f"{path}: expected a mapping 'authorities: {{<id>: {{x25519_public: …}}}}'")
    out: dict[str, RecipientKey] = {}
    for authority_id, spec in entries.items():
        where = f"{path}: authorities.{authority_id}"
        if not isinstance(spec, dict):
            raise PrivacyConfigError(f"{where}: expected x25519_public or shared_key_env")
        name = authority_recipient(str(authority_id))
        if "x25519_public" in spec:
            out[str(authority_id)] = RecipientKey(name, public=_key_from_text(str(spec["x25519_public"]), where))
        elif "shared_key_env" in spec:
            value = _secret(env, str(spec["shared_key_env"]))
            if not value:
                raise PrivacyConfigError(f"{where}: ${spec['shared_key_env']} is not set")
            out[str(authority_id)] = RecipientKey(name, shared=_key_from_text(value, str(spec["shared_key_env"])))
        else:
            raise PrivacyConfigError(f"{where}: expected x25519_public or shared_key_env")
    return out


# ---------------------------------------------------------------------------------------------
# wrapping
# ---------------------------------------------------------------------------------------------
def _wrap_aad(melding_id: str, recipient: str) -> bytes:
    return f"meldhub:key:v1:{melding_id}:{recipient}".encode()


def _x25519_kek(shared_secret: bytes, epk: bytes, rpk: bytes, aad: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=epk + rpk, info=aad).derive(shared_secret)


def _wrap(data_key: bytes, melding_id: str, recipient: RecipientKey) -> dict[str, str]:
    aad = _wrap_aad(melding_id, recipient.name)
    nonce = os.urandom(NONCE_BYTES)
    if recipient.shared is not None:
        wrapped = AESGCM(recipient.shared).encrypt(nonce, data_key, aad)
        return {"alg": "A256GCM-KW", "kid": recipient.kid, "iv": _b64(nonce), "wk": _b64(wrapped)}
    assert recipient.public is not None
    ephemeral = X25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    epk = ephemeral.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    kek = _x25519_kek(ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient.public)), epk, recipient.public, aad)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, aad)
    return {"alg": "X25519-HKDF-A256GCM", "kid": recipient.kid, "epk": _b64(epk), "iv": _b64(nonce), "wk": _b64(wrapped)}


def unwrap(key_record: Mapping[str, Any] | None, identity: Identity, melding_id: str) -> bytes | None:
    """The data key of ``melding_id`` from its key record, or None when there is no record
    (erased) or no wrap for ``identity``. Raises :class:`PrivacyError` on a tampered record or a
    wrong key."""
    if key_record is None:
        return None
    wraps = key_record.get("wrapped") if isinstance(key_record, Mapping) else None
    if not isinstance(wraps, Mapping):
        raise PrivacyError(f"melding {melding_id}: malformed key record")
    if key_record.get("melding_id") != melding_id:
        raise PrivacyError(f"melding {melding_id}: the key record belongs to another melding")
    wrap = wraps.get(identity.name)
    if wrap is None:
        return None
    aad = _wrap_aad(melding_id, identity.name)
    try:
        nonce, wrapped = _unb64(wrap["iv"]), _unb64(wrap["wk"])
        if wrap.get("alg") == "A256GCM-KW" and identity.kind == "shared":
            kek = identity.secret
        elif wrap.get("alg") == "X25519-HKDF-A256GCM" and identity.kind == "x25519":
            private = X25519PrivateKey.from_private_bytes(identity.secret)
            epk = _unb64(wrap["epk"])
            rpk = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            kek = _x25519_kek(private.exchange(X25519PublicKey.from_public_bytes(epk)), epk, rpk, aad)
        else:
            raise PrivacyError(f"melding {melding_id}: key wrapped with {wrap.get('alg')!r}, not usable by this reader")
        data_key = AESGCM(kek).decrypt(nonce, wrapped, aad)
    except (InvalidTag, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PrivacyError):
            raise
        raise PrivacyError(f"melding {melding_id}: cannot unwrap the data key (wrong key or tampered record)") from None
    if len(data_key) != KEY_BYTES:
        raise PrivacyError(f"melding {melding_id}: unwrapped data key has the wrong length")
    return data_key


# ---------------------------------------------------------------------------------------------
# protect / reveal (pure: no I/O)
# ---------------------------------------------------------------------------------------------
def _melder_aad(melding_id: str) -> bytes:
    return f"meldhub:melder:v1:{melding_id}".encode()


def is_protected(doc: Mapping[str, Any]) -> bool:
    melder = doc.get("melder")
    return isinstance(melder, Mapping) and isinstance(melder.get(PROTECTED_TERM), str)


def protect(doc: Mapping[str, Any], melding_id: str, owner: str, keyring: KeyRing) -> dict[str, Any]:
    """Encrypt the melding's ``melder`` for ``owner`` (an authority id) and the hub.

    Returns ``{"melding": <doc to publish>, "key": <key record for meldingen.keys, or None>,
    "recipients": [...]}``. ``doc`` itself is not changed. A melding without ``melder``
    (anonymous) comes back unchanged with ``key`` None: there is nothing to protect, and no key
    record is written. The published doc never contains the reporter's data in clear.
    """
    _check_melding_id(melding_id)
    out = copy.deepcopy(dict(doc))
    if "melder" not in out or out["melder"] is None:
        return {"melding": out, "key": None, "recipients": []}
    try:
        plaintext = json.dumps(out["melder"], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError):
        raise PrivacyError(f"melding {melding_id}: melder is not JSON-serialisable") from None
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _melder_aad(melding_id))
    out["melder"] = {"@type": "Persoon", PROTECTED_TERM: f"{CIPHERTEXT_PREFIX}{_b64(nonce)}.{_b64(ciphertext)}"}
    recipients = keyring.recipients(owner)
    record = {
        "v": RECORD_VERSION,
        "melding_id": melding_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "wrapped": {r.name: _wrap(data_key, melding_id, r) for r in recipients},
    }
    return {"melding": out, "key": record, "recipients": [r.name for r in recipients]}


class Erased(PrivacyError):
    """The melding's contact details were erased (or its key is not available to this reader)."""


def reveal(doc: Mapping[str, Any], keys: Mapping[str, bytes | None], *, strict: bool = False) -> dict[str, Any]:
    """The melding with its ``melder`` decrypted, given ``keys``: melding id → data key.

    ``keys`` is usually a :class:`KeyTable` (which unwraps with the reader's identity) but any
    mapping of data keys works. No key (a tombstone, no record, or none wrapped for this reader)
    means *erased*: the ``melder`` is dropped from the returned doc (``strict=True`` raises
    :class:`Erased` instead). A melding whose ``melder`` is not protected is returned as it is.
    Raises :class:`PrivacyError` when the ciphertext was tampered with.
    """
    out = copy.deepcopy(dict(doc))
    if not is_protected(out):
        return out
    melding_id = melding_id_of(out)
    match = _CIPHERTEXT.match(out["melder"][PROTECTED_TERM])
    if not match:
        raise PrivacyError(f"melding {melding_id}: malformed protected melder")
    data_key = keys.get(melding_id)
    if data_key is None:
        if strict:
            raise Erased(f"melding {melding_id}: the reporter's contact details are erased or not available")
        del out["melder"]
        return out
    try:
        plaintext = AESGCM(data_key).decrypt(_unb64(match.group(1)), _unb64(match.group(2)), _melder_aad(melding_id))
        out["melder"] = json.loads(plaintext.decode("utf-8"))
    except (InvalidTag, ValueError):
        raise PrivacyError(f"melding {melding_id}: cannot decrypt the melder (wrong key or tampered data)") from None
    return out


def melding_id_of(doc: Mapping[str, Any]) -> str:
    ident = doc.get("identificator")
    notation = ident.get("notatie") if isinstance(ident, Mapping) else None
    if isinstance(notation, Mapping):
        notation = notation.get("@value")
    if not isinstance(notation, str):
        raise PrivacyError("the melding has no identificator.notatie: cannot find its key")
    return _check_melding_id(notation)


# ---------------------------------------------------------------------------------------------
# the key topic
# ---------------------------------------------------------------------------------------------
def key_record_value(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode("utf-8")


def key_output(melding_id: str, record: Mapping[str, Any] | None) -> tuple[str, bytes, bytes | None, tuple[tuple[str, bytes], ...]]:
    """(topic, key, value, headers) for ``meldingen.keys``; ``record=None`` gives the tombstone."""
    _check_melding_id(melding_id)
    return (
        KEYS,
        melding_id.encode(),
        None if record is None else key_record_value(record),
        ((Header.MELDING_ID, melding_id.encode()),),
    )


class KeyTable(Mapping[str, bytes | None]):
    """The latest state of ``meldingen.keys`` as seen by one reader: melding id → data key.

    Feed it records in log order (:meth:`apply`, or :func:`load_keys`): a later record replaces an
    earlier one and a tombstone removes it, so a table built from an uncompacted log gives the same
    answers as one built from a compacted log. Lookup unwraps with the reader's identity; a melding
    without a usable wrap is simply not in the table.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._records: dict[str, dict[str, Any]] = {}
        self._erased: set[str] = set()
        self.positions: dict[tuple[str, int], int] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        melding_id = key.decode("utf-8", errors="replace")
        if value is None:
            self._records.pop(melding_id, None)
            self._erased.add(melding_id)
            return
        try:
            record = json.loads(value)
        except ValueError:
            return  # not a key record: ignored (it could only make a melding unreadable)
        if isinstance(record, dict) and record.get("melding_id") == melding_id:
            self._records[melding_id] = record
            self._erased.discard(melding_id)

    def state(self, melding_id: str) -> str:
        """``available``, ``erased`` (tombstone seen), ``not-recipient`` or ``unknown`` (no record:
        after reading to the end of the topic, that too means erased or never protected)."""
        if melding_id in self._records:
            wraps = self._records[melding_id].get("wrapped") or {}
            return "available" if self.identity.name in wraps else "not-recipient"
        return "erased" if melding_id in self._erased else "unknown"

    def __getitem__(self, melding_id: str) -> bytes | None:
        record = self._records.get(melding_id)
        if record is None:
            raise KeyError(melding_id)
        return unwrap(record, self.identity, melding_id)

    def get(self, melding_id: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            value = self[melding_id]
        except KeyError:
            return default
        return default if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


async def load_keys(
    bootstrap: str,
    identity: Identity | KeyTable,
    *,
    auth: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> KeyTable:
    """Read ``meldingen.keys`` (read_committed, no consumer group) up to its current end into a
    :class:`KeyTable`; pass a table back in to continue from where it stopped.

    Reading to the end matters: the hub writes a melding and its key record in one transaction,
    so once a melding was read, a key record that is not there after this call does not exist.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    table = identity if isinstance(identity, KeyTable) else KeyTable(identity)
    auth = dict(auth or {})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed", **auth
    )
    partitions = await _partitions(bootstrap, KEYS, auth)
    await consumer.start()
    try:
        tps = [TopicPartition(KEYS, p) for p in partitions]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            start = table.positions.get((tp.topic, tp.partition))
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
        deadline = time.monotonic() + timeout
        while True:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= end[tp] for tp in tps):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {KEYS} to its end took over {timeout:.0f}s")
            for tp, records in (await consumer.getmany(*tps, timeout_ms=200)).items():
                for r in records:
                    table.apply(r.key, r.value)
        for tp in tps:
            table.positions[(tp.topic, tp.partition)] = await consumer.position(tp)
    finally:
        await consumer.stop()
    return table


async def _partitions(bootstrap: str, topic: str, auth: Mapping[str, Any]) -> list[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="meldhub-keys", **dict(auth))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise LookupError(f"topic {topic} does not exist or is not readable with these credentials")
    return sorted(p["partition"] for p in described["partitions"])


# ---------------------------------------------------------------------------------------------
# erasure
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Erasure:
    melding_id: str
    by: str
    at: str
    reason: str
    keys_partition: int
    keys_offset: int


def who(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Who acts: ``--by``, else the Kafka SASL user, else ``$MELDHUB_ADMIN``, else the OS user."""
    env = os.environ if env is None else env
    for candidate in (explicit, env.get("MELDHUB_KAFKA_SASL_USERNAME"), env.get("MELDHUB_ADMIN")):
        if candidate and candidate.strip():
            return scrub(" ".join(candidate.split())[:100])
    try:
        return scrub(getpass.getuser())
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def clean_reason(reason: str) -> str:
    """One line, at most 300 characters, e-mail addresses and phone numbers masked: a reason is a
    ticket reference ("AVG-verzoek 2026-114"), never the person's details."""
    text = scrub(" ".join(str(reason).split()))
    if not text:
        raise PrivacyError("give a reason (e.g. the reference of the erasure request)")
    return text[:300]


def audit_record(erasure: Erasure) -> tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]:
    """(key, value, headers) on ``meldingen.audit``, in :mod:`hub.audit`'s record shape."""
    target = f"{KEYS}/{erasure.melding_id}"
    value = {
        "action": ERASE_ACTION,
        "by": erasure.by,
        "at": erasure.at,
        "channel": "cli",
        "target": target,
        "melding_id": erasure.melding_id,
        "reason": erasure.reason,
        "details": {"keys_partition": erasure.keys_partition, "keys_offset": erasure.keys_offset},
    }
    headers = (("audit-action", ERASE_ACTION.encode()), ("audit-by", erasure.by.encode()))
    return target.encode(), json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"), headers


async def erase(
    bootstrap: str,
    melding_id: str,
    *,
    reason: str,
    by: str | None = None,
    auth: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> Erasure:
    """Crypto-shred one melding's contact details: the key tombstone and the audit record, in one
    Kafka transaction (both or neither). Erasing twice is harmless (another tombstone, another
    audit record)."""
    from aiokafka import AIOKafkaProducer

    _check_melding_id(melding_id)
    actor, why = who(by), clean_reason(reason)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"meldhub-gdpr-{uuid.uuid4().hex}",
        enable_idempotence=True,
        acks="all",
        **dict(auth or {}),
    )
    async with asyncio.timeout(timeout):
        await producer.start()
        try:
            topic, key, value, headers = key_output(melding_id, None)
            async with producer.transaction():
                tombstone = await (await producer.send(topic, value=value, key=key, headers=list(headers)))
                erasure = Erasure(
                    melding_id, actor, datetime.now(UTC).isoformat(timespec="milliseconds"), why,
                    tombstone.partition, tombstone.offset,
                )  # fmt: skip
                a_key, a_value, a_headers = audit_record(erasure)
                await producer.send(AUDIT, value=a_value, key=a_key, headers=list(a_headers))
        finally:
            await producer.stop()
    return erasure


# ---------------------------------------------------------------------------------------------
# retention
# ---------------------------------------------------------------------------------------------
DAY_MS = 24 * 60 * 60 * 1000
RETENTION_DAYS = {
    "inbound": 3,
    "authority": 30,
    "deadletter": 14,
    "status": 30,
    "refusals": 14,
    "triage": 30,
}
"""Defaults (days); see docs/security.md §Retention for the reasons."""


def topic_configs(
    authority_ids: list[str] | tuple[str, ...] = (),
    channel_ids: list[str] | tuple[str, ...] = (),
    *,
    authority_retention_days: Mapping[str, int] | None = None,
    max_message_bytes: int | None = None,
) -> dict[str, dict[str, str]]:
    """Topic-level configs of every topic the hub's deployment uses, retention first.

    - ``meldingen.inbound``: short (3 days): it holds contact details in clear until the hub has
      protected them; 3 days survive a hub outage over a weekend.
    - ``meldingen.authority.<id>``: per agreement with the authority (default 30 days; the
      authority copies what it keeps into its own system); contact details inside are encrypted.
    - ``meldingen.deadletter``: 14 days: the original bytes, untouched (may hold contact details
      in clear), for admins to fix and replay.
    - ``meldingen.status`` / ``meldingen.status.<source>``: 30 days.
    - ``meldingen.keys``: compacted; a tombstone wins at once for every reader, and compaction
      removes the erased key from disk within a day (``max.compaction.lag.ms``), tombstones after
      7 more days (``delete.retention.ms``: time for incremental readers to see them).
    - ``meldingen.audit``: kept forever, never compacted (no personal data).
    - ``meldingen.refusals``: 14 days (the hub re-routes within seconds; kept for admins as the
      dead letters are); ``meldingen.triage``: 30 days, as an authority topic.
    """
    big = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
    overrides = dict(authority_retention_days or {})

    def days(n: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(n * DAY_MS)}

    configs: dict[str, dict[str, str]] = {
        INBOUND: {**days(RETENTION_DAYS["inbound"]), **big},
        DEADLETTER: {**days(RETENTION_DAYS["deadletter"]), **big},
        STATUS: days(RETENTION_DAYS["status"]),
        KEYS: {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "max.compaction.lag.ms": str(DAY_MS),
            "segment.ms": str(60 * 60 * 1000),
            "delete.retention.ms": str(7 * DAY_MS),
            "min.cleanable.dirty.ratio": "0.01",
        },
        AUDIT: {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
        REFUSALS: {**days(RETENTION_DAYS["refusals"]), **big},
        TRIAGE: {**days(RETENTION_DAYS["triage"]), **big},
    }
    for authority_id in authority_ids:
        configs[AUTHORITY_PREFIX + authority_id] = days(int(overrides.get(authority_id, RETENTION_DAYS["authority"])))
    for source in channel_ids:
        configs[STATUS_PREFIX + source] = days(RETENTION_DAYS["status"])
    return configs


TOPIC_PARTITIONS = {AUDIT: 1}
"""Topics that need a partition count other than the deployment's default (audit: one, so every
reader sees admin actions in order)."""
