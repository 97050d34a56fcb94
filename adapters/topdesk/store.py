"""The TOPdesk adapter's own state (SQLite): which melding became which incident, the status the
citizen was last told, and the polling cursor.

Why: the status event needs the channel (``source``) the melding came from and the status before
(to report a change, and only a change); TOPdesk knows neither.

The consumed record of each filed melding is kept too (``kept_records``, :mod:`adapters.refusals`),
so a refusal can give it back unchanged: it holds the reporter's contact details as the hub sent
them (encrypted when the hub protects them) and is deleted on hand-over or a final status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from adapters.base import AuthorityStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    melding_id     TEXT PRIMARY KEY,
    incident_id    TEXT NOT NULL,
    number         TEXT NOT NULL,
    source         TEXT,
    oslo_status    TEXT NOT NULL,
    vendor_status  TEXT,
    vendor_modified REAL NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_incident ON incidents (incident_id);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store(AuthorityStore):
    SCHEMA = SCHEMA

    def get(self, melding_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM incidents WHERE melding_id = ?", (melding_id,)).fetchone()
        return dict(row) if row else None

    def by_incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM incidents WHERE incident_id = ?", (incident_id,)).fetchone()
        return dict(row) if row else None

    def remember(self, melding_id: str, incident_id: str, number: str, source: str | None, oslo_status: str) -> None:
        self.db.execute(
            """INSERT INTO incidents (melding_id, incident_id, number, source, oslo_status, created_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (melding_id) DO UPDATE SET incident_id = excluded.incident_id, number = excluded.number,
                   source = COALESCE(incidents.source, excluded.source)""",
            (melding_id, incident_id, number, source, oslo_status, datetime.now(UTC).isoformat()),
        )

    def set_status(self, melding_id: str, oslo_status: str) -> None:
        self.db.execute("UPDATE incidents SET oslo_status = ? WHERE melding_id = ?", (oslo_status, melding_id))

    def set_vendor(self, melding_id: str, vendor_status: str | None, modified: datetime) -> None:
        self.db.execute(
            "UPDATE incidents SET vendor_status = ?, vendor_modified = ? WHERE melding_id = ?",
            (vendor_status, modified.timestamp(), melding_id),
        )

    def cursor(self, name: str = "modificationDate") -> datetime | None:
        row = self.db.execute("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
        return datetime.fromisoformat(row["value"]) if row else None

    def set_cursor(self, when: datetime, name: str = "modificationDate") -> None:
        self.db.execute(
            "INSERT INTO cursor (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, when.isoformat()),
        )
