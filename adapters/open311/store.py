"""The Open311 endpoint's own state: the requests it accepted and their status history (SQLite).

Why a local store: Open311 clients poll (``GET requests``, ``servicerequestupdates``); the hub's
Kafka topics are not a query API. The store holds only what the spec returns — no names,
e-mail addresses or phone numbers (those travel in the melding to the authority only).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.status import INGEDIEND, StatusChange
from adapters.base import open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id                 TEXT PRIMARY KEY,
    token              TEXT NOT NULL UNIQUE,
    client             TEXT NOT NULL,
    client_ref         TEXT,
    service_code       TEXT NOT NULL,
    description        TEXT,
    lat                REAL NOT NULL,
    long               REAL NOT NULL,
    address            TEXT,
    address_id         TEXT,
    zipcode            TEXT,
    media_url          TEXT,
    requested_datetime TEXT NOT NULL,
    requested_ts       REAL NOT NULL,
    updated_datetime   TEXT NOT NULL,
    updated_ts         REAL NOT NULL,
    status             TEXT NOT NULL,
    status_notes       TEXT,
    status_ts          REAL,
    agency_responsible TEXT,
    state              TEXT NOT NULL DEFAULT 'pending',
    UNIQUE (client, client_ref)
);
CREATE INDEX IF NOT EXISTS requests_requested ON requests (requested_ts);
CREATE TABLE IF NOT EXISTS updates (
    update_id        TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL REFERENCES requests (id),
    origin           TEXT NOT NULL,
    status           TEXT NOT NULL,
    updated_datetime TEXT NOT NULL,
    updated_ts       REAL NOT NULL,
    description      TEXT,
    client           TEXT
);
CREATE INDEX IF NOT EXISTS updates_time ON updates (updated_ts);
"""


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


class Store:
    def __init__(self, path: Path | str) -> None:
        self.db = open_store(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- requests -------------------------------------------------------------------------
    def find_by_reference(self, client: str, client_ref: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM requests WHERE client = ? AND client_ref = ? AND state = 'sent'", (client, client_ref)
        ).fetchone()
        return dict(row) if row else None

    def add_pending(self, *, melding_id: str, client: str, client_ref: str | None, now: datetime, **fields: Any) -> str:
        """Insert a request before its melding is sent; returns its token."""
        token = secrets.token_urlsafe(12)
        stamp, ts = _iso(now), now.timestamp()
        # a pending row left by an earlier failed attempt with the same reference gives way
        if client_ref is not None:
            self.db.execute(
                "DELETE FROM requests WHERE client = ? AND client_ref = ? AND state = 'pending'", (client, client_ref)
            )
        self.db.execute(
            """INSERT INTO requests (id, token, client, client_ref, service_code, description, lat, long, address,
                   address_id, zipcode, media_url, requested_datetime, requested_ts, updated_datetime, updated_ts,
                   status, state)
               VALUES (:id, :token, :client, :client_ref, :service_code, :description, :lat, :long, :address,
                   :address_id, :zipcode, :media_url, :stamp, :ts, :stamp, :ts, :status, 'pending')""",
            {
                "id": melding_id,
                "token": token,
                "client": client,
                "client_ref": client_ref,
                "stamp": stamp,
                "ts": ts,
                "status": INGEDIEND,
                "service_code": fields["service_code"],
                "description": fields.get("description"),
                "lat": fields["lat"],
                "long": fields["long"],
                "address": fields.get("address"),
                "address_id": fields.get("address_id"),
                "zipcode": fields.get("zipcode"),
                "media_url": fields.get("media_url"),
            },
        )
        return token

    def mark_sent(self, melding_id: str) -> None:
        self.db.execute("UPDATE requests SET state = 'sent' WHERE id = ?", (melding_id,))

    def drop_pending(self, melding_id: str) -> None:
        self.db.execute("DELETE FROM requests WHERE id = ? AND state = 'pending'", (melding_id,))

    def get(self, request_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM requests WHERE id = ? AND state = 'sent'", (request_id,)).fetchone()
        return dict(row) if row else None

    def by_token(self, token: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM requests WHERE token = ? AND state = 'sent'", (token,)).fetchone()
        return dict(row) if row else None

    def query(
        self,
        ids: Iterable[str] | None = None,
        service_codes: Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Requests by id list (overrides the rest), else by code, requested time range and status."""
        if ids is not None:
            ids = list(ids)
            marks = ",".join("?" * len(ids))
            rows = self.db.execute(
                f"SELECT * FROM requests WHERE state = 'sent' AND id IN ({marks}) ORDER BY requested_ts DESC", ids
            ).fetchall()
            return [dict(r) for r in rows]
        sql, args = "SELECT * FROM requests WHERE state = 'sent'", []
        if service_codes:
            codes = list(service_codes)
            sql += f" AND service_code IN ({','.join('?' * len(codes))})"
            args += codes
        if start is not None:
            sql += " AND requested_ts >= ?"
            args.append(start.timestamp())
        if end is not None:
            sql += " AND requested_ts <= ?"
            args.append(end.timestamp())
        if statuses:
            codes = list(statuses)
            sql += f" AND status IN ({','.join('?' * len(codes))})"
            args += codes
        sql += " ORDER BY requested_ts DESC LIMIT ?"
        args.append(limit)
        return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    # -- status ---------------------------------------------------------------------------
    def apply(self, change: StatusChange, agency: str | None = None) -> bool:
        """Record a status change from the hub; the newest change by statusdatum becomes current.

        Idempotent on the event id (a re-delivered event changes nothing). Returns False when
        the request is unknown here or the event was already applied.
        """
        if self.get(change.melding_id) is None:
            return False
        ts = change.statusdatum.timestamp()
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.execute(
                """INSERT OR IGNORE INTO updates (update_id, request_id, origin, status, updated_datetime, updated_ts,
                       description) VALUES (?, ?, 'hub', ?, ?, ?, ?)""",
                (change.event_id, change.melding_id, change.status.notation, _iso(change.statusdatum), ts, change.beschrijving),
            )
            if cur.rowcount == 0:
                return False
            # the newest change by statusdatum is current (events may arrive out of order)
            self.db.execute(
                """UPDATE requests SET status = ?, status_notes = ?, updated_datetime = ?, updated_ts = ?, status_ts = ?
                   WHERE id = ? AND (status_ts IS NULL OR status_ts <= ?)""",
                (change.status.notation, change.beschrijving, _iso(change.statusdatum), ts, ts, change.melding_id, ts),
            )
            if agency:
                self.db.execute("UPDATE requests SET agency_responsible = ? WHERE id = ?", (agency, change.melding_id))
        return True

    def updates(self, start: datetime | None, end: datetime | None, limit: int = 1000) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM updates WHERE origin = 'hub'", []
        if start is not None:
            sql += " AND updated_ts >= ?"
            args.append(start.timestamp())
        if end is not None:
            sql += " AND updated_ts <= ?"
            args.append(end.timestamp())
        sql += " ORDER BY updated_ts LIMIT ?"
        args.append(limit)
        return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def add_client_update(
        self, *, update_id: str, request_id: str, client: str, status: str, when: datetime, description: str
    ) -> bool:
        """A citizen's update posted by the client (FixMyStreet ``POST servicerequestupdates``).
        Idempotent on (client, update_id); False if it was already there."""
        key = f"{client}:{update_id}"
        cur = self.db.execute(
            """INSERT OR IGNORE INTO updates (update_id, request_id, origin, status, updated_datetime, updated_ts,
                   description, client) VALUES (?, ?, 'client', ?, ?, ?, ?, ?)""",
            (key, request_id, status, _iso(when), when.timestamp(), description, client),
        )
        return cur.rowcount == 1
