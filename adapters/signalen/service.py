"""``meldhub adapters run signalen-<tenant>``: meldingen of one authority → Signalen signals, and
Signalen status changes → ``meldingen.status``.

:class:`SignalenWorker` holds the decisions (testable against a stand-in, no broker); :func:`run`
hands it to the shared authority loop (:mod:`adapters.loop`, same guarantees as the TOPdesk adapter).

Delivering a melding, at least once, never twice:

1. record the first attempt (SQLite) before anything goes to Signalen;
2. a signal already linked in the store is re-read (``GET …/signals/{id}``); otherwise look it up
   (the hub's ``source``, ``created_after`` = the earlier of the first attempt and the melding's
   submission, minus ``clock_skew_s``; match on the reference) and create it only if none exists.
   Look-up and create are retried together, so a create whose answer was lost is found, not
   repeated;
3. report ``Toegewezen aan`` (dated by Signalen's ``created_at``); commit the offset after the
   broker acknowledged it. What Signalen rejects is dead-lettered with its class; an outage or a
   401/403 pauses the destination (the melding stays queued): never lost.

Status back: every ``poll_interval_s`` the hub's signals updated since the newest ``updated_at``
seen (minus an overlap) are read; a state whose MeldingStatuswaarde differs from the last one
reported becomes an event (dated by ``status.created_at``). A decided melding taken back into
handling (``a`` → ``b``) is reported as 647 Heringediend, then the new status. A change the life
cycle forbids, or an unknown state, becomes a dead letter; the citizen keeps the last legal status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import Runtime, VendorError, with_retries
from adapters.contact import ContactKeys
from adapters.loop import (
    AuthorityWorker,
    Context,
    Emit,
    Incoming,
    consume,
    hold_cursor,
    last_status,
    repeats_the_delivery,
    run_authority,
)
from adapters.signalen.client import SignalenClient
from adapters.signalen.config import STATE_NAMES, Config
from adapters.signalen.store import Store
from adapters.signalen.translate import (
    changes_for,
    created_change,
    parse_datetime,
    reading_of,
    reference_of,
    signal_ref,
    signal_request,
    submitted_at,
)
from hub import logs
from hub.errors import HubError
from hub.melding import Melding
from hub.pipeline import Output, Record, dead_letter
from hub.status import IllegalTransition, StatusChange
from hub.topics import Header

__all__ = ["SignalenWorker", "consume", "run"]  # consume: moved to adapters.loop

log = logs.get_logger("adapters.signalen")


class SignalenWorker(AuthorityWorker):
    name = "signalen"

    def __init__(self, config: Config, client: SignalenClient, store: Store, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), contacts: ContactKeys | None = None) -> None:
        super().__init__(config, store, authority_iri, authority_name, clock, contacts)
        self.config: Config = config
        self.store: Store = store
        self.client = client

    # -- melding → signal -----------------------------------------------------------------------
    async def _ensure_signal(self, melding: Melding, first_attempt: datetime) -> tuple[dict[str, Any], bool]:
        mid = melding.melding_id
        row = self.store.get(mid)
        if row is not None and row["signal_id"]:
            return await self.client.get_signal(int(row["signal_id"])), False
        since = min(first_attempt, submitted_at(melding) or first_attempt) - timedelta(seconds=self.config.clock_skew_s)
        found = await self.client.find_by_reference(
            mid, since, self.config.source, lambda s: reference_of(s, self.config) == mid, self.config.max_pages
        )
        if found is not None:
            return found, False
        body = signal_request(melding, self.config, self.clock())
        return await self.client.create_signal(body), True

    async def deliver(self, incoming: Incoming) -> Emit:
        melding, record = incoming.melding, incoming.record
        mid = melding.melding_id
        previous = last_status(melding)
        first = self.store.attempt(mid, record.header(Header.SOURCE), previous, self.clock())
        signal, created = await with_retries(
            lambda: self._ensure_signal(melding, first), self.config.retry, "signalen.create_signal"
        )
        sid, display = signal_ref(signal)
        self.store.link(mid, sid, display)  # durable link before anything else
        log.info("signalen.signal_created" if created else "signalen.signal_found", correlation_id=mid, signal=display)
        row = self.store.get(mid)
        assert row is not None
        if row["oslo_status"] != previous:
            return Emit()  # Toegewezen aan (or later) was already reported
        change = created_change(signal, mid, self.door, self.authority_name, self.config)
        state = (signal.get("status") or {}).get("state")
        changed = _changed_or_none(signal)

        def after() -> None:
            self.store.advance(mid, previous, change.status.notation)
            if created and changed is not None:
                # a new signal's state is the one Toegewezen aan reports; a signal found again (a
                # redelivery) may have moved on meanwhile: that state is the poll's to report
                self.store.set_vendor(mid, state if isinstance(state, str) else None, changed)

        return Emit([self.status_output(change, row["source"], previous)], [after])

    # -- Signalen → status events -----------------------------------------------------------------
    async def poll_once(self) -> Emit:
        emit = Emit()
        cursor = self.store.cursor()
        since = (cursor or self.clock()) - timedelta(seconds=self.config.poll_overlap_s)
        items, _ = await with_retries(
            lambda: self.client.updated_since(since, self.config.source, self.config.max_pages),
            self.config.retry, "signalen.poll",
        )
        newest = cursor
        held: list[datetime] = []
        for item in items:
            updated = await self._one(item, emit, held)
            if updated is not None and (newest is None or updated > newest):
                newest = updated
        newest = hold_cursor(newest, held)
        if newest is not None and newest != cursor:
            final = newest
            emit.after_ack.append(lambda: self.store.set_cursor(final))
        return emit

    def _row_for(self, item: dict[str, Any]) -> dict[str, Any] | None:
        sid = item.get("id")
        row = self.store.by_signal(sid) if isinstance(sid, int) else None
        if row is None:
            ref = reference_of(item, self.config)
            row = self.store.get(ref) if ref else None
            if row is not None and row["signal_id"] != sid:
                return None  # not linked yet: the delivery path links it and reports Toegewezen aan first
        return row

    async def _one(self, item: Any, emit: Emit, held: list[datetime]) -> datetime | None:
        if not isinstance(item, dict):
            return None
        updated = _updated_or_none(item)
        row = self._row_for(item)
        if row is None:
            return updated  # not a signal the hub made (or not linked yet)
        mid = row["melding_id"]
        if self.kept.handed_over(mid):
            return updated  # given back to the hub: no longer this authority's
        if self.reporting(mid):  # its delivery's Toegewezen aan is on its way: read it again next round
            if updated is not None:
                held.append(updated)
            return None
        try:
            reading = reading_of(item, self.config)
        except VendorError as error:
            changed = _changed_or_none(item)
            if changed is not None and changed.timestamp() <= row["vendor_changed"]:
                return updated  # already reported as a dead letter
            emit.outputs.append(self._poll_dead_letter(row, item, error))
            if changed is not None:
                emit.after_ack.append(lambda: self.store.set_vendor(mid, None, changed))
            log.warning("signalen.status_deadlettered", correlation_id=mid, error_class=str(error.error_class.value),
                        reason=error.reason[:300])
            return updated
        if reading.changed.timestamp() <= row["vendor_changed"]:
            return updated  # seen in an earlier poll (overlap)
        if reading.state in self.config.refusal_states:
            await self._refuse(row, item, reading.state, reading.changed, emit)
            return updated
        known = row["oslo_status"]
        if reading.status is None or reading.status.notation == known:
            emit.after_ack.append(lambda: self.store.set_vendor(mid, reading.state, reading.changed))
            return updated
        try:
            changes = changes_for(reading, known, mid, self.door, self.config)
        except IllegalTransition as error:
            error.details = {"signal": reading.display, "state": reading.state}
            change = StatusChange.create(mid, reading.status, self.door, None, reading.changed)
            emit.outputs.append(self._poll_dead_letter(row, item, error, change))
            emit.after_ack.append(lambda: self.store.set_vendor(mid, reading.state, reading.changed))
            log.warning("signalen.illegal_transition", correlation_id=mid, reason=error.reason)
            return updated
        if repeats_the_delivery(known, changes[0].status.notation):
            changes[0] = created_change(item, mid, self.door, self.authority_name, self.config)
        before = known
        for change in changes:
            emit.outputs.append(self.status_output(change, row["source"], before))
            before = change.status.notation
        last = changes[-1].status.notation

        def after() -> None:
            self.store.advance(mid, known, last)
            self.store.set_vendor(mid, reading.state, reading.changed)
            self.kept.settled(mid, last)

        emit.after_ack.append(after)
        log.info("signalen.status_changed", correlation_id=mid, signal=reading.display, state=reading.state,
                 status=last, events=len(changes))
        return updated

    async def _refuse(self, row: dict[str, Any], item: dict[str, Any], state: str, changed: datetime, emit: Emit) -> None:
        """The tenant's "not ours" state: the melding goes back to the hub (no status for the citizen)."""
        mid = row["melding_id"]
        reason = self.config.refusal_states[state] or self.default_refusal_reason(STATE_NAMES.get(state, state))
        try:
            out = await self.refusal_output(mid, reason)
        except HubError as error:
            emit.outputs.append(self._poll_dead_letter(row, item, error))
            emit.after_ack.append(lambda: self.store.set_vendor(mid, state, changed))
            log.warning("signalen.refusal_deadlettered", correlation_id=mid, reason=error.reason[:300])
            return
        when = self.clock()

        def after() -> None:
            self.kept.hand_over(mid, reason, when)
            self.store.set_vendor(mid, state, changed)

        emit.outputs.append(out)
        emit.after_ack.append(after)
        log.info("signalen.refused", correlation_id=mid, signal=row["display"], state=state)

    def _poll_dead_letter(self, row: dict[str, Any], item: dict[str, Any], error: HubError,
                          change: StatusChange | None = None) -> Output:
        """A state Signalen reported that cannot go to the citizen: kept as a dead letter (the signal's
        status fields only — no reporter or operator data — or the status event it would have been)."""
        if change is not None:
            value = change.to_bytes()
        else:
            keep = ("id", "id_display", "updated_at", "created_at", "source")
            doc = {k: item.get(k) for k in keep}
            st = item.get("status")
            doc["status"] = {k: st.get(k) for k in ("state", "state_display", "created_at")} if isinstance(st, dict) else st
            value = json.dumps(doc, ensure_ascii=False).encode()
        headers = ((Header.SOURCE, (row["source"] or "").encode()),) if row["source"] else ()
        record = Record(value=value, key=row["melding_id"].encode(), headers=headers, topic=f"signalen-poll:{self.config.id}")
        return dead_letter(record, error, row["melding_id"])


def _changed_or_none(item: dict[str, Any]) -> datetime | None:
    st = item.get("status")
    try:
        return parse_datetime(st.get("created_at") if isinstance(st, dict) else None, "status.created_at")
    except VendorError:
        return None


def _updated_or_none(item: dict[str, Any]) -> datetime | None:
    try:
        return parse_datetime(item.get("updated_at"), "updated_at")
    except VendorError:
        return None


# ---------------------------------------------------------------------------------------------
# the process (the Kafka loop is adapters.loop's)
# ---------------------------------------------------------------------------------------------
async def run(config: Config, runtime: Runtime) -> None:
    token = config.token()

    def make(ctx: Context) -> SignalenWorker:
        client = SignalenClient(config.base_url, token, timeout=config.timeout_s)
        store = Store(config.state_path(runtime.state_dir))
        return SignalenWorker(config, client, store, ctx.authority_iri, ctx.authority_name, contacts=ctx.contacts)

    await run_authority(config, runtime, "signalen", make)
