"""The e-mail adapter's own state (SQLite): which meldingen were mailed (so a redelivery sends no
second mail), when, the channel to report back to, and the status the citizen was last told.

No personal data in these tables: ``summary`` is the category and the place, what the status page shows.

The consumed record of each filed melding is kept too (``kept_records``, :mod:`adapters.refusals`),
so a refusal can give it back unchanged: it holds the reporter's contact details as the hub sent
them (encrypted when the hub protects them) and is deleted on hand-over or a final status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from adapters.base import AuthorityStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS mails (
    melding_id   TEXT PRIMARY KEY,
    source       TEXT,
    summary      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    state        TEXT NOT NULL,            -- sending | sent
    attempts     INTEGER NOT NULL DEFAULT 0,
    sent_at      TEXT,
    oslo_status  TEXT NOT NULL,
    status_text  TEXT
);
"""


class Store(AuthorityStore):
    SCHEMA = SCHEMA

    def get(self, melding_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM mails WHERE melding_id = ?", (melding_id,)).fetchone()
        return dict(row) if row else None

    def sending(self, melding_id: str, source: str | None, summary: str, message_id: str, oslo_status: str) -> int:
        """Record an attempt before the mail goes out; returns the attempt number (1 = first)."""
        self.db.execute(
            """INSERT INTO mails (melding_id, source, summary, message_id, state, attempts, oslo_status)
               VALUES (?, ?, ?, ?, 'sending', 1, ?)
               ON CONFLICT (melding_id) DO UPDATE SET attempts = mails.attempts + 1,
                   source = COALESCE(mails.source, excluded.source)""",
            (melding_id, source, summary, message_id, oslo_status),
        )
        row = self.get(melding_id)
        assert row is not None
        return int(row["attempts"])

    def sent(self, melding_id: str, when: datetime) -> None:
        self.db.execute("UPDATE mails SET state = 'sent', sent_at = ? WHERE melding_id = ? AND state = 'sending'",
                        (when.isoformat(), melding_id))

    def advance(self, melding_id: str, expected: str, new: str, text: str | None = None) -> bool:
        cur = self.db.execute(
            "UPDATE mails SET oslo_status = ?, status_text = ? WHERE melding_id = ? AND oslo_status = ?",
            (new, text, melding_id, expected),
        )
        if cur.rowcount == 1:
            self.kept.settled(melding_id, new)
        return cur.rowcount == 1
