"""The Open311 outbound adapter's own state (SQLite): which melding became which service request.

Why: GeoReport v2 cannot look a request up by the client's reference, so this file is the
adapter's memory of what it filed. A row is written *before* the first ``POST`` (``unsure`` =
POSTs whose outcome is unknown), and the ``service_request_id`` (or the ``token`` of a batch
server) as soon as the answer arrives: a melding with an id or token is never POSTed again.
Also kept: the channel the melding came from (``source``), the status the citizen was last told,
the server's last status, the updates already read, and the consumed records for a refusal
(:class:`adapters.refusals.KeptRecords`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.base import AuthorityStore
from adapters.refusals import FINAL_STATUSES

SCHEMA = """
CREATE TABLE IF NOT EXISTS service_requests (
    melding_id          TEXT PRIMARY KEY,
    service_code        TEXT NOT NULL,
    service_request_id  TEXT,
    token               TEXT,
    source              TEXT,
    oslo_status         TEXT NOT NULL,
    vendor_status       TEXT,
    unsure              INTEGER NOT NULL DEFAULT 0,   -- POSTs sent whose answer never came
    first_attempt_at    TEXT NOT NULL,
    filed_at            TEXT
);
CREATE INDEX IF NOT EXISTS service_requests_by_id ON service_requests (service_request_id);
CREATE TABLE IF NOT EXISTS seen_updates (update_id TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Store(AuthorityStore):
    SCHEMA = SCHEMA

    # -- filing ---------------------------------------------------------------------------------
    def get(self, melding_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM service_requests WHERE melding_id = ?", (melding_id,)).fetchone()
        return dict(row) if row else None

    def by_request(self, service_request_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM service_requests WHERE service_request_id = ? ORDER BY filed_at LIMIT 1",
                              (service_request_id,)).fetchone()
        return dict(row) if row else None

    def begin(self, melding_id: str, service_code: str, source: str | None, oslo_status: str, when: datetime) -> None:
        """The melding is about to be filed (the first delivery wins; a redelivery changes nothing)."""
        self.db.execute(
            """INSERT INTO service_requests (melding_id, service_code, source, oslo_status, first_attempt_at)
               VALUES (?, ?, ?, ?, ?) ON CONFLICT (melding_id) DO NOTHING""",
            (melding_id, service_code, source, oslo_status, when.isoformat()),
        )

    def sending(self, melding_id: str) -> None:
        """Durable before the POST leaves: if its answer is lost, the next try searches first."""
        self.db.execute("UPDATE service_requests SET unsure = unsure + 1 WHERE melding_id = ?", (melding_id,))

    def refused_post(self, melding_id: str) -> None:
        """The server answered this POST with an error: it made nothing for it."""
        self.db.execute("UPDATE service_requests SET unsure = MAX(unsure - 1, 0) WHERE melding_id = ?", (melding_id,))

    def filed(self, melding_id: str, service_request_id: str | None, token: str | None, when: datetime) -> None:
        self.db.execute(
            """UPDATE service_requests SET service_request_id = COALESCE(?, service_request_id),
                   token = COALESCE(?, token), unsure = 0, filed_at = COALESCE(filed_at, ?)
               WHERE melding_id = ?""",
            (service_request_id, token, when.isoformat(), melding_id),
        )

    # -- following ------------------------------------------------------------------------------
    def pending_tokens(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM service_requests WHERE service_request_id IS NULL AND token IS NOT NULL").fetchall()
        return [dict(r) for r in rows]

    def followed(self) -> list[dict[str, Any]]:
        """Filed requests whose status can still change for the citizen (not final, not handed over)."""
        finals = tuple(FINAL_STATUSES)
        rows = self.db.execute(
            f"""SELECT s.* FROM service_requests s LEFT JOIN kept_records k ON k.melding_id = s.melding_id
                WHERE s.service_request_id IS NOT NULL AND k.handed_over_at IS NULL
                  AND s.oslo_status NOT IN ({",".join("?" * len(finals))})
                ORDER BY s.filed_at""",
            finals,
        ).fetchall()
        return [dict(r) for r in rows]

    def advance(self, melding_id: str, expected: str, new: str) -> None:
        self.db.execute("UPDATE service_requests SET oslo_status = ? WHERE melding_id = ? AND oslo_status = ?",
                        (new, melding_id, expected))

    def set_vendor(self, melding_id: str, vendor_status: str | None) -> None:
        self.db.execute("UPDATE service_requests SET vendor_status = ? WHERE melding_id = ?", (vendor_status, melding_id))

    def seen(self, update_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM seen_updates WHERE update_id = ?", (update_id,)).fetchone() is not None

    def mark_seen(self, update_id: str) -> None:
        self.db.execute("INSERT INTO seen_updates (update_id, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (update_id, _now()))

    def cursor(self, name: str = "updates") -> datetime | None:
        row = self.db.execute("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
        return datetime.fromisoformat(row["value"]) if row else None

    def set_cursor(self, when: datetime, name: str = "updates") -> None:
        self.db.execute("INSERT INTO cursor (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (name, when.isoformat()))
