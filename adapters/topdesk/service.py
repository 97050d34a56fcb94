"""``meldhub adapters run topdesk-<tenant>``: meldingen of one authority → TOPdesk incidents, and
TOPdesk status changes → ``meldingen.status``.

:class:`TopdeskWorker` holds the decisions (testable with a fake TOPdesk, no broker); :func:`run`
hands it to the shared authority loop (:mod:`adapters.loop`).

Delivering a melding (``meldingen.authority.<id>`` → TOPdesk), at least once, never twice:

1. look the melding up by ``externalNumber`` (= melding id); create the incident only if none
   exists — the look-up and the create are retried together (bounded back-off), so a create
   whose answer was lost is found by the next look-up instead of being made again;
2. report ``Toegewezen aan`` (dated by TOPdesk's creationDate, so a repeat is the same event);
3. commit the offset only after the create (or the look-up found it) and the status event was
   acknowledged. A melding TOPdesk rejects (4xx, malformed answer) is dead-lettered with its class
   in ``error-class``, the original record untouched; a 401/403 or retries exhausted by an outage
   pause the destination instead (the melding stays queued): never lost.

Status back (TOPdesk → citizen): every ``poll_interval_s`` the incidents changed since the
newest ``modificationDate`` seen (minus an overlap) are read; a processing status mapped to a
different MeldingStatuswaarde than the one last reported becomes a status event (header
``status-previous``). A change the life cycle forbids, or an unknown processing status, becomes a
dead letter instead; the citizen keeps the last legal status. A processing status of
``refusal_statuses`` gives the melding back to the hub (``meldingen.refusals``, :mod:`adapters.refusals`).
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
    hold_cursor,
    last_status,
    repeats_the_delivery,
    run_authority,
)
from adapters.topdesk.client import TopdeskClient
from adapters.topdesk.config import Config
from adapters.topdesk.store import Store
from adapters.topdesk.translate import created_change, incident_ref, incident_request, reading_of, status_change
from hub import logs
from hub.errors import HubError
from hub.melding import Melding
from hub.pipeline import Output, Record, dead_letter
from hub.status import IllegalTransition, StatusChange, check_transition
from hub.topics import Header

__all__ = ["Emit", "TopdeskWorker", "last_status", "run"]  # Emit/last_status: moved to adapters.loop

log = logs.get_logger("adapters.topdesk")


class TopdeskWorker(AuthorityWorker):
    name = "topdesk"

    def __init__(self, config: Config, client: TopdeskClient, store: Store, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), contacts: ContactKeys | None = None) -> None:
        super().__init__(config, store, authority_iri, authority_name, clock, contacts)
        self.config: Config = config
        self.store: Store = store
        self.client = client

    # -- melding → incident ---------------------------------------------------------------------
    async def _ensure_incident(self, melding: Melding) -> tuple[dict[str, Any], bool]:
        found = await self.client.find_by_external_number(melding.melding_id)
        if found is not None:
            return found, False
        return await self.client.create_incident(incident_request(melding, self.config)), True

    async def deliver(self, incoming: Incoming) -> Emit:
        melding, record = incoming.melding, incoming.record
        melding_id = melding.melding_id
        source = record.header(Header.SOURCE)
        incident, created = await with_retries(
            lambda: self._ensure_incident(melding), self.config.retry, "topdesk.create_incident"
        )
        iid, number = incident_ref(incident)
        previous = last_status(melding)
        self.store.remember(melding_id, iid, number, source, previous)  # durable link before anything else
        log.info("topdesk.incident_created" if created else "topdesk.incident_found",
                 correlation_id=melding_id, incident=number)
        row = self.store.get(melding_id)
        assert row is not None
        if row["oslo_status"] != previous:
            return Emit()  # Toegewezen aan (or later) was already reported
        change = created_change(incident, melding_id, self.door, self.authority_name, self.config)
        return Emit(
            [self.status_output(change, row["source"], previous)],
            [lambda: self._advance(melding_id, previous, change.status.notation)],
        )

    def _advance(self, melding_id: str, expected: str, new: str) -> None:
        self.store.db.execute(
            "UPDATE incidents SET oslo_status = ? WHERE melding_id = ? AND oslo_status = ?", (new, melding_id, expected)
        )
        self.kept.settled(melding_id, new)

    # -- TOPdesk → status events ----------------------------------------------------------------
    async def poll_once(self) -> Emit:
        emit = Emit()
        cursor = self.store.cursor()
        now = self.clock()
        since = (cursor or now) - timedelta(seconds=self.config.poll_overlap_s)
        newest = cursor
        page_start, seen = 0, 0
        held: list[datetime] = []
        while True:
            items, more = await with_retries(
                lambda start=page_start: self.client.modified_since(since, start, self.config.page_size),
                self.config.retry,
                "topdesk.poll",
            )
            for incident in items:
                modified = await self._one(incident, emit, held)
                if modified is not None and (newest is None or modified > newest):
                    newest = modified
            seen += len(items)
            page_start += len(items)
            if not more or not items or seen >= 10_000:
                break
        newest = hold_cursor(newest, held)
        if newest is not None and newest != cursor:
            final = newest
            emit.after_ack.append(lambda: self.store.set_cursor(final))
        return emit

    async def _one(self, incident: Any, emit: Emit, held: list[datetime]) -> datetime | None:
        if not isinstance(incident, dict):
            return None
        row = self.store.by_incident(str(incident.get("id"))) if incident.get("id") else None
        if row is None and isinstance(incident.get("externalNumber"), str) and incident["externalNumber"]:
            row = self.store.get(incident["externalNumber"])
        if row is None:
            return None  # not an incident the hub made
        melding_id = row["melding_id"]
        if self.kept.handed_over(melding_id):
            return _modified_or_none(incident)  # given back to the hub: no longer this authority's
        if self.reporting(melding_id):  # its delivery's Toegewezen aan is on its way: read it again next round
            if (modified := _modified_or_none(incident)) is not None:
                held.append(modified)
            return None
        try:
            reading = reading_of(incident, self.config)
        except VendorError as error:
            modified = _modified_or_none(incident)
            if modified is not None and modified.timestamp() <= row["vendor_modified"]:
                return modified  # already reported as a dead letter
            emit.outputs.append(self._poll_dead_letter(row, incident, error))
            if modified is not None:
                emit.after_ack.append(lambda: self.store.set_vendor(melding_id, None, modified))
            log.warning("topdesk.status_deadlettered", correlation_id=melding_id, error_class=str(error.error_class.value),
                        reason=error.reason[:300])
            return modified
        if reading.modified.timestamp() <= row["vendor_modified"]:
            return reading.modified  # seen in an earlier poll (overlap)
        if reading.vendor_status in self.config.refusal_statuses:
            await self._refuse(row, incident, reading.vendor_status, reading.modified, emit)
            return reading.modified
        known = row["oslo_status"]
        if reading.status is None or reading.status.notation == known:
            emit.after_ack.append(lambda: self.store.set_vendor(melding_id, reading.vendor_status, reading.modified))
            return reading.modified
        change = status_change(reading, melding_id, self.door, self.config)
        try:
            check_transition(known, change.status.notation)
        except IllegalTransition as error:
            error.details = {"incident": reading.number, "processingStatus": reading.vendor_status}
            emit.outputs.append(self._poll_dead_letter(row, incident, error, change))
            emit.after_ack.append(lambda: self.store.set_vendor(melding_id, reading.vendor_status, reading.modified))
            log.warning("topdesk.illegal_transition", correlation_id=melding_id, reason=error.reason)
            return reading.modified
        if repeats_the_delivery(known, change.status.notation):
            change = created_change(incident, melding_id, self.door, self.authority_name, self.config)
        emit.outputs.append(self.status_output(change, row["source"], known))

        def after() -> None:
            self._advance(melding_id, known, change.status.notation)
            self.store.set_vendor(melding_id, reading.vendor_status, reading.modified)

        emit.after_ack.append(after)
        log.info("topdesk.status_changed", correlation_id=melding_id, incident=reading.number,
                 processing_status=reading.vendor_status, status=change.status.notation)
        return reading.modified

    async def _refuse(self, row: dict[str, Any], incident: dict[str, Any], name: str, modified: datetime, emit: Emit) -> None:
        """The tenant's "not ours" status: the melding goes back to the hub (no status for the citizen)."""
        melding_id = row["melding_id"]
        reason = self.config.refusal_statuses[name] or self.default_refusal_reason(name)
        try:
            out = await self.refusal_output(melding_id, reason)
        except HubError as error:
            emit.outputs.append(self._poll_dead_letter(row, incident, error))
            emit.after_ack.append(lambda: self.store.set_vendor(melding_id, name, modified))
            log.warning("topdesk.refusal_deadlettered", correlation_id=melding_id, reason=error.reason[:300])
            return
        when = self.clock()

        def after() -> None:
            self.kept.hand_over(melding_id, reason, when)
            self.store.set_vendor(melding_id, name, modified)

        emit.outputs.append(out)
        emit.after_ack.append(after)
        log.info("topdesk.refused", correlation_id=melding_id, incident=row["number"], processing_status=name)

    def _poll_dead_letter(self, row: dict[str, Any], incident: dict[str, Any], error: HubError,
                          change: StatusChange | None = None) -> Output:
        """A status TOPdesk reported that cannot go to the citizen: kept as a dead letter (the
        incident's status fields, or the status event it would have been)."""
        if change is not None:
            value = change.to_bytes()
        else:
            keep = ("id", "number", "externalNumber", "processingStatus", "modificationDate", "completed", "closed")
            value = json.dumps({k: incident.get(k) for k in keep}, ensure_ascii=False).encode()
        headers = ((Header.SOURCE, (row["source"] or "").encode()),) if row["source"] else ()
        record = Record(value=value, key=row["melding_id"].encode(), headers=headers, topic=f"topdesk-poll:{self.config.id}")
        return dead_letter(record, error, row["melding_id"])


def _modified_or_none(incident: dict[str, Any]) -> datetime | None:
    from adapters.topdesk.translate import parse_datetime

    try:
        return parse_datetime(incident.get("modificationDate"), "modificationDate")
    except VendorError:
        return None


# ---------------------------------------------------------------------------------------------
# the process (the Kafka loop is adapters.loop's)
# ---------------------------------------------------------------------------------------------
async def run(config: Config, runtime: Runtime) -> None:
    username, password = config.credentials()

    def make(ctx: Context) -> TopdeskWorker:
        client = TopdeskClient(config.base_url, username, password, timeout=config.timeout_s)
        store = Store(config.state_path(runtime.state_dir))
        return TopdeskWorker(config, client, store, ctx.authority_iri, ctx.authority_name, contacts=ctx.contacts)

    await run_authority(config, runtime, "topdesk", make)
