"""The webhook adapter's own state (SQLite): which meldingen were delivered (so a redelivery does
not POST again), the channel to report back to, the status the citizen was last told, and the
signatures accepted within the replay window. No personal data in these tables.

The consumed record of each filed melding is kept too (``kept_records``, :mod:`adapters.refusals`),
so a refusal can give it back unchanged: it holds the reporter's contact details as the hub sent
them (encrypted when the hub protects them) and is deleted on hand-over or a final status."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from adapters.base import AuthorityStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    melding_id    TEXT PRIMARY KEY,
    source        TEXT,
    state         TEXT NOT NULL,            -- sending | delivered
    attempts      INTEGER NOT NULL DEFAULT 0,
    delivered_at  TEXT,
    oslo_status   TEXT NOT NULL,
    status_text   TEXT
);
CREATE TABLE IF NOT EXISTS signatures (
    signature  TEXT PRIMARY KEY,
    t          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS signatures_t ON signatures (t);
"""


class Store(AuthorityStore):
    SCHEMA = SCHEMA

    def get(self, melding_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM deliveries WHERE melding_id = ?", (melding_id,)).fetchone()
        return dict(row) if row else None

    def sending(self, melding_id: str, source: str | None, oslo_status: str) -> int:
        self.db.execute(
            """INSERT INTO deliveries (melding_id, source, state, attempts, oslo_status) VALUES (?, ?, 'sending', 1, ?)
               ON CONFLICT (melding_id) DO UPDATE SET attempts = deliveries.attempts + 1,
                   source = COALESCE(deliveries.source, excluded.source)""",
            (melding_id, source, oslo_status),
        )
        row = self.get(melding_id)
        assert row is not None
        return int(row["attempts"])

    def delivered(self, melding_id: str, when: datetime) -> None:
        self.db.execute(
            "UPDATE deliveries SET state = 'delivered', delivered_at = ? WHERE melding_id = ? AND state = 'sending'",
            (when.isoformat(), melding_id),
        )

    def advance(self, melding_id: str, expected: str, new: str, text: str | None = None) -> bool:
        cur = self.db.execute(
            "UPDATE deliveries SET oslo_status = ?, status_text = ? WHERE melding_id = ? AND oslo_status = ?",
            (new, text, melding_id, expected),
        )
        if cur.rowcount == 1:
            self.kept.settled(melding_id, new)
        return cur.rowcount == 1

    def accept_signature(self, signature: str, t: int, forget_before: int) -> bool:
        """Record a signature; False when it was already accepted (a replay). Forgets old ones."""
        self.db.execute("DELETE FROM signatures WHERE t < ?", (forget_before,))
        cur = self.db.execute("INSERT OR IGNORE INTO signatures (signature, t) VALUES (?, ?)", (signature, t))
        return cur.rowcount == 1
