"""The Signalen adapter's own state (SQLite): which melding became which signal, when the first
create was attempted, the status the citizen was last told, and the polling cursor.

Why: a signal is found again by scanning from the first attempt (Signalen cannot filter on our
reference); the status event needs the channel (``source``) and the status before. No personal data in these tables.

The consumed record of each filed melding is kept too (``kept_records``, :mod:`adapters.refusals`),
so a refusal can give it back unchanged: it holds the reporter's contact details as the hub sent
them (encrypted when the hub protects them) and is deleted on hand-over or a final status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from adapters.base import AuthorityStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    melding_id      TEXT PRIMARY KEY,
    signal_id       INTEGER,
    display         TEXT,
    source          TEXT,
    first_attempt   TEXT NOT NULL,
    oslo_status     TEXT NOT NULL,
    vendor_state    TEXT,
    vendor_changed  REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS signals_by_signal ON signals (signal_id);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store(AuthorityStore):
    SCHEMA = SCHEMA

    def get(self, melding_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM signals WHERE melding_id = ?", (melding_id,)).fetchone()
        return dict(row) if row else None

    def by_signal(self, signal_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM signals WHERE signal_id = ?", (signal_id,)).fetchone()
        return dict(row) if row else None

    def attempt(self, melding_id: str, source: str | None, oslo_status: str, when: datetime | None = None) -> datetime:
        """Record the first create attempt (kept on later attempts); returns its time."""
        now = (when or datetime.now(UTC)).isoformat()
        self.db.execute(
            """INSERT INTO signals (melding_id, source, first_attempt, oslo_status) VALUES (?, ?, ?, ?)
               ON CONFLICT (melding_id) DO UPDATE SET source = COALESCE(signals.source, excluded.source)""",
            (melding_id, source, now, oslo_status),
        )
        row = self.get(melding_id)
        assert row is not None
        return datetime.fromisoformat(row["first_attempt"])

    def link(self, melding_id: str, signal_id: int, display: str) -> None:
        self.db.execute("UPDATE signals SET signal_id = ?, display = ? WHERE melding_id = ?", (signal_id, display, melding_id))

    def advance(self, melding_id: str, expected: str, new: str) -> None:
        self.db.execute(
            "UPDATE signals SET oslo_status = ? WHERE melding_id = ? AND oslo_status = ?", (new, melding_id, expected)
        )

    def set_vendor(self, melding_id: str, state: str | None, changed: datetime) -> None:
        self.db.execute(
            "UPDATE signals SET vendor_state = ?, vendor_changed = MAX(vendor_changed, ?) WHERE melding_id = ?",
            (state, changed.timestamp(), melding_id),
        )

    def cursor(self, name: str = "updated_at") -> datetime | None:
        row = self.db.execute("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
        return datetime.fromisoformat(row["value"]) if row else None

    def set_cursor(self, when: datetime, name: str = "updated_at") -> None:
        self.db.execute(
            "INSERT INTO cursor (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, when.isoformat()),
        )
