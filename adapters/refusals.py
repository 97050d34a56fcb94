"""Refusal, adapter side: the owner's tool says "not ours", the adapter gives the melding back.

The hub re-routes a refused melding only when it gets it back **exactly as it routed it** —
value and headers of the owner topic's record (:func:`hub.refusal.refusal_output`). An authority
adapter therefore keeps the consumed record when it files a melding (:class:`KeptRecords`, in the
adapter's own SQLite file). When the vendor's status means "not ours" (data in each adapter's
config: TOPdesk processing statuses, Signalen states, the webhook's ``weigeren`` action, the
e-mail form's "niet onze bevoegdheid"), the adapter:

1. produces the kept record to ``meldingen.refusals`` with ``refused-by`` = its authority,
   ``refusal-reason`` = one Dutch line without personal data, and — when the contact details are
   encrypted — the melding's key record (``melding-key``);
2. does **not** report a status to ``meldingen.status``: the hub tells the citizen who handles it
   next (``Toegewezen aan``), in the same transaction as the re-routing;
3. marks the local ticket handed over once the broker acknowledged the refusal: it is no longer
   polled, and no later status of it reaches the citizen.

Why keep the record and not rebuild it: the headers carry the routing decision and the route
history the hub checks (``authority``, ``route-rule``, ``route-history``); a rebuilt record could
not prove it came from the owner the hub chose. The kept value holds the reporter's contact
details as the hub sent them (encrypted when ``MELDHUB_PROTECT_CONTACT_DETAILS`` is on); it is
deleted when the melding is handed over or reaches a final status (138, 956).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from adapters.contact import ContactKeys
from hub import logs
from hub.deadletters import scrub_text
from hub.errors import NotARefusal
from hub.pipeline import Output
from hub.privacy import is_protected
from hub.refusal import one_line, refusal_output
from hub.status import DEFINITIEF_GESLOTEN, AFGEROND

log = logs.get_logger("adapters.refusals")

KEPT_SCHEMA = """
CREATE TABLE IF NOT EXISTS kept_records (
    melding_id      TEXT PRIMARY KEY,
    value           BLOB,                 -- the owner topic's value; NULL once no longer needed
    headers         TEXT,                 -- JSON [[name, base64 value], ...], in order
    kept_at         TEXT NOT NULL,
    handed_over_at  TEXT,                 -- set once the refusal was acknowledged by the broker
    refusal_reason  TEXT
);
"""

FINAL_STATUSES = frozenset({DEFINITIEF_GESLOTEN, AFGEROND})
"""After these no refusal can follow: the kept record (with its contact details) is deleted."""

Headers = tuple[tuple[str, bytes], ...]


class KeptRecords:
    """The consumed records of filed meldingen, and which meldingen were handed over."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(KEPT_SCHEMA)

    def keep(self, melding_id: str, value: bytes | None, headers: Headers) -> None:
        """Keep the record as consumed (the first one kept wins: a redelivery is the same record)."""
        encoded = json.dumps([[k, base64.b64encode(v or b"").decode()] for k, v in headers])
        self.db.execute(
            """INSERT INTO kept_records (melding_id, value, headers, kept_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (melding_id) DO NOTHING""",
            (melding_id, value or b"", encoded, datetime.now(UTC).isoformat()),
        )

    def get(self, melding_id: str) -> tuple[bytes, Headers] | None:
        row = self.db.execute("SELECT value, headers FROM kept_records WHERE melding_id = ?", (melding_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        headers = tuple((k, base64.b64decode(v)) for k, v in json.loads(row[1]))
        return bytes(row[0]), headers

    def handed_over(self, melding_id: str) -> bool:
        row = self.db.execute("SELECT handed_over_at FROM kept_records WHERE melding_id = ?", (melding_id,)).fetchone()
        return row is not None and row[0] is not None

    def hand_over(self, melding_id: str, reason: str, when: datetime) -> None:
        """The refusal is durable at the broker: stop following this melding, drop its bytes."""
        self.db.execute(
            """UPDATE kept_records SET handed_over_at = ?, refusal_reason = ?, value = NULL, headers = NULL
               WHERE melding_id = ?""",
            (when.isoformat(), reason, melding_id),
        )

    def settled(self, melding_id: str, notation: str) -> None:
        """A status was reported; a final one means no refusal can follow: forget the bytes."""
        if notation in FINAL_STATUSES:
            self.db.execute("UPDATE kept_records SET value = NULL, headers = NULL WHERE melding_id = ?", (melding_id,))


def clean_reason(text: str) -> str:
    """One line, no e-mail address or phone number (the reason travels to triage and the next owner)."""
    return one_line(scrub_text(text)) or "geen reden opgegeven"


async def refusal(kept: KeptRecords, contacts: ContactKeys | None, melding_id: str, refused_by: str, reason: str,
                  when: datetime) -> Output:
    """The record for ``meldingen.refusals``: the melding as this adapter consumed it, with the
    refusal headers and (encrypted contact details) its key record. NotARefusal when the adapter
    no longer has the record (filed before records were kept, or the state file was lost)."""
    found = kept.get(melding_id)
    if found is None:
        raise NotARefusal(
            f"the owner's system refused melding {melding_id}, but this adapter does not have the melding as it "
            "received it (filed before refusals were supported, or its state file was replaced): re-route it by hand"
        )
    value, headers = found
    key_record: dict[str, Any] | None = None
    try:
        protected = is_protected(json.loads(value))
    except ValueError:
        protected = False
    if protected:
        key_record = await contacts.record(melding_id) if contacts is not None else None
        if key_record is None:
            log.warning("refusal.without_key_record", correlation_id=melding_id,
                        detail="the contact details are encrypted and no key record is available (erased or no identity)")
    topic, key, out_value, out_headers = refusal_output(
        value, headers, refused_by, clean_reason(reason), refused_at=when, key_record=key_record
    )
    return Output(topic, key, out_value, out_headers)
