"""``meldhub adapters run open311-out-<tenant>``: meldingen of one authority → service requests at
its Open311 GeoReport v2 server, and their status changes → ``meldingen.status``.

:class:`Open311OutWorker` holds the decisions (testable against any GeoReport server, no broker);
:func:`run` hands it to the shared authority loop (:mod:`adapters.loop`): offsets committed only
after outputs are acknowledged, destination paused on 401/403 and outages, contact details
revealed for the owner, refusals from kept records.

Filing a melding, at least once and — as far as GeoReport allows — never twice:

1. the store is asked first: a melding with a ``service_request_id`` or ``token`` is never POSTed
   again (redelivery, replay, restart);
2. before a ``POST`` the store records it as *unsure*; the answer clears it. A retry after a lost
   answer (timeout, reset, 5xx) first searches ``GET requests`` of that service_code since the
   first attempt for the melding id in the description (:func:`translate.marker`), and only POSTs
   again when it is not found — with the same ``attribute[<reference_attribute>]``, which a
   server that deduplicates on it answers with the first request;
3. ``Toegewezen aan`` is reported once the server has it, dated by the first filing.

Status back, every ``poll_interval_s``: tokens of batch servers are resolved (``GET tokens``),
then either ``GET requests.json?service_request_id=…`` in batches or FixMyStreet's
``GET servicerequestupdates.json`` in time windows (``status_source``). Only changes are reported
(``status-previous``); an unknown status or a change the life cycle forbids is a dead letter,
once; a status of ``refusal_statuses`` gives the melding back to the hub.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import (
    Runtime,
    UnknownVendorStatus,
    VendorAuthFailed,
    VendorError,
    VendorMalformed,
    VendorRejected,
    with_retries,
)
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
from adapters.open311.outbound import translate as t
from adapters.open311.outbound.client import GeoReportClient
from adapters.open311.outbound.config import Config
from adapters.open311.outbound.store import Store
from adapters.refusals import FINAL_STATUSES
from hub import logs
from hub.errors import HubError
from hub.pipeline import Output, Record, dead_letter
from hub.status import IllegalTransition, check_transition
from hub.topics import Header

NAME = "open311_out"
log = logs.get_logger(f"adapters.{NAME}")


class Open311OutWorker(AuthorityWorker):
    name = NAME

    def __init__(self, config: Config, client: GeoReportClient, store: Store, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), contacts: ContactKeys | None = None) -> None:
        super().__init__(config, store, authority_iri, authority_name, clock, contacts)
        self.config: Config = config
        self.store: Store = store
        self.client = client

    # -- melding → service request --------------------------------------------------------------
    async def deliver(self, incoming: Incoming) -> Emit:
        melding, record = incoming.melding, incoming.record
        mid = melding.melding_id
        form = t.request_form(melding, self.config, self.client.api_key)  # no category/location: a dead letter
        previous = last_status(melding)
        self.store.begin(mid, form["service_code"], record.header(Header.SOURCE), previous, self.clock())
        row, created = await with_retries(lambda: self._ensure(mid, form), self.config.retry, f"{NAME}.create")
        reference = row["service_request_id"] or f"token {row['token']}"
        log.info(f"{NAME}.request_created" if created else f"{NAME}.request_known", correlation_id=mid,
                 service_request_id=row["service_request_id"], token=bool(row["token"]))
        if row["oslo_status"] != previous:
            return Emit()  # Toegewezen aan (or later) was already reported
        change = t.created_change(mid, self.door, self.authority_name, reference,
                                  datetime.fromisoformat(row["filed_at"]), self.config)
        return Emit([self.status_output(change, row["source"], previous)],
                    [lambda: self._advance(mid, previous, change.status.notation)])

    async def _ensure(self, mid: str, form: dict[str, str]) -> tuple[dict[str, Any], bool]:
        """The whole idempotent unit (retried together): known → done; unsure → search; else POST."""
        row = self.store.get(mid)
        assert row is not None
        if row["service_request_id"] or row["token"]:
            return row, False
        if row["unsure"] and self.config.recover_by_search:
            found = await self._search(row)
            if found is not None:
                self.store.filed(mid, found, None, self.clock())
                log.info(f"{NAME}.request_recovered", correlation_id=mid, service_request_id=found)
                return self._row(mid), False
        self.store.sending(mid)  # durable before the request leaves
        try:
            answer = await self.client.create(form)
        except (VendorRejected, VendorAuthFailed):
            self.store.refused_post(mid)  # the server answered with an error: it made nothing
            raise
        created = t.created_ref(answer)  # malformed: stays unsure (it may exist): the next try searches
        self.store.filed(mid, created.service_request_id, created.token, self.clock())
        return self._row(mid), True

    async def _search(self, row: dict[str, Any]) -> str | None:
        """The request an earlier POST may have made: same service_code, requested since the
        first attempt (± clock skew, at most ``max_window_days``), the melding id in its description."""
        skew = timedelta(seconds=self.config.clock_skew_s)
        end = self.clock() + skew
        start = max(datetime.fromisoformat(row["first_attempt_at"]) - skew, end - timedelta(days=self.config.max_window_days))
        try:
            answer = await self.client.requests_between(row["service_code"], start, end)
            return t.find_marked(answer, row["melding_id"])
        except (VendorRejected, VendorMalformed) as error:  # a server that cannot search: POST with the reference
            log.warning(f"{NAME}.search_failed", correlation_id=row["melding_id"],
                        error_class=str(error.error_class.value), reason=error.reason[:300])
            return None

    def _row(self, mid: str) -> dict[str, Any]:
        row = self.store.get(mid)
        assert row is not None
        return row

    def _advance(self, mid: str, expected: str, new: str) -> None:
        self.store.advance(mid, expected, new)
        self.kept.settled(mid, new)

    # -- status back ----------------------------------------------------------------------------
    async def poll_once(self) -> Emit:
        emit = Emit()
        await self._resolve_tokens()
        if self.config.status_source == "servicerequestupdates":
            await self._poll_updates(emit)
        else:
            await self._poll_requests(emit)
        return emit

    async def _resolve_tokens(self) -> None:
        for row in self.store.pending_tokens():
            answer = await with_retries(lambda tok=row["token"]: self.client.token(tok), self.config.retry, f"{NAME}.token")
            rid = t.token_ref(answer) if answer is not None else None
            if rid is not None:
                self.store.filed(row["melding_id"], rid, None, self.clock())
                log.info(f"{NAME}.token_resolved", correlation_id=row["melding_id"], service_request_id=rid)

    async def _poll_requests(self, emit: Emit) -> None:
        rows = [r for r in self.store.followed() if not self.reporting(r["melding_id"])]  # the others: next poll
        size = self.config.batch_size
        for i in range(0, len(rows), size):
            batch = {r["service_request_id"]: dict(r) for r in rows[i : i + size]}
            answer = await with_retries(lambda ids=list(batch): self.client.requests_by_id(ids), self.config.retry,
                                        f"{NAME}.poll")
            for item in t.request_items(answer):
                asked = batch.get(t.item_id(item) or "")
                if asked is None:
                    continue  # not asked for (a server that ignores the filter): not this poll's business
                # as the store has it now, not as before the request: a delivery may have reported
                # meanwhile, or be reporting (its Toegewezen aan on its way: next poll)
                row = self.store.get(asked["melding_id"])
                if row is None or row["service_request_id"] != asked["service_request_id"] or self.reporting(row["melding_id"]):
                    continue
                try:
                    state = t.parse_request(item)
                except VendorError as error:
                    marker = f"?{item.get('status')!s:.40}"
                    if row["vendor_status"] != marker:
                        self._dead_letter_reading(row, item, error, emit, lambda m=row["melding_id"], v=marker: self.store.set_vendor(m, v))
                    continue
                if state.vendor_status == row["vendor_status"]:
                    continue  # nothing new at the server
                when = state.updated or self.clock()
                await self._apply(row, state.vendor_status, state.coarse, state.status_notes, when, emit, item, [])

    async def _poll_updates(self, emit: Emit) -> None:
        now = self.clock()
        overlap = timedelta(seconds=self.config.poll_overlap_s)
        cursor = self.store.cursor()
        if cursor is None:
            followed = self.store.followed()
            cursor = min((datetime.fromisoformat(r["filed_at"]) for r in followed if r["filed_at"]), default=now)
        start = max(cursor - overlap, now - timedelta(days=self.config.max_window_days))
        answer = await with_retries(lambda: self.client.updates(start, now), self.config.retry, f"{NAME}.poll")
        updates: list[t.Update] = []
        for item in t.update_items(answer):
            try:
                updates.append(t.parse_update(item))
            except VendorError as error:  # without its ids it cannot be dead-lettered once: logged, skipped
                log.warning(f"{NAME}.update_unreadable", error_class=str(error.error_class.value), reason=error.reason[:300])
        rows: dict[str, dict[str, Any]] = {}
        held: list[datetime] = []  # updates left for the next poll
        for update in sorted(updates, key=lambda u: u.updated):
            if self.store.seen(update.update_id):
                continue
            row = rows.get(update.service_request_id) or self.store.by_request(update.service_request_id)
            if row is None:
                continue  # another client's request on the same server
            if self.reporting(row["melding_id"]):
                held.append(update.updated)  # its delivery's Toegewezen aan is on its way: read it again next poll
                continue
            row = rows.setdefault(update.service_request_id, dict(row))
            seen = [lambda u=update.update_id: self.store.mark_seen(u)]
            if self.kept.handed_over(row["melding_id"]) or row.get("_handed") or row["oslo_status"] in FINAL_STATUSES:
                emit.after_ack.extend(seen)
                continue
            await self._apply(row, update.status, False, update.description, update.updated, emit,
                              {"update_id": update.update_id, "service_request_id": update.service_request_id,
                               "status": update.status, "updated_datetime": update.updated.isoformat()}, seen)
        final = hold_cursor(now, held)
        emit.after_ack.append(lambda: self.store.set_cursor(final))

    async def _apply(self, row: dict[str, Any], vendor_status: str, coarse: bool, notes: str | None, when: datetime,
                     emit: Emit, evidence: dict[str, Any], after: list[Callable[[], None]]) -> None:
        """One status the server reports for a filed melding: a refusal, a change, a dead letter or
        nothing. ``row`` is this poll's view (updated in place, so several updates chain)."""
        mid, known = row["melding_id"], row["oslo_status"]
        remember = [lambda: self.store.set_vendor(mid, vendor_status), *after]
        if vendor_status in self.config.refusal_statuses:
            await self._refuse(row, vendor_status, emit, evidence, remember)
            return
        try:
            st = t.decide(vendor_status, coarse, known, self.config)
        except UnknownVendorStatus as error:
            self._dead_letter_reading(row, evidence, error, emit, *remember)
            return
        if st is None:
            emit.after_ack.extend(remember)
            row["vendor_status"] = vendor_status
            return
        change = t.status_change(mid, st, self.door, notes, when, self.config)
        if repeats_the_delivery(known, st.notation) and row.get("filed_at"):
            reference = row["service_request_id"] or f"token {row['token']}"
            change = t.created_change(mid, self.door, self.authority_name, reference,
                                      datetime.fromisoformat(row["filed_at"]), self.config)
        try:
            check_transition(known, st.notation)
        except IllegalTransition as error:
            error.details = {"service_request_id": row["service_request_id"], "status": vendor_status}
            emit.outputs.append(self._poll_dead_letter(row, change.to_bytes(), error))
            emit.after_ack.extend(remember)
            log.warning(f"{NAME}.illegal_transition", correlation_id=mid, reason=error.reason)
            return
        emit.outputs.append(self.status_output(change, row["source"], known))
        emit.after_ack.append(lambda: self._advance(mid, known, st.notation))
        emit.after_ack.extend(remember)
        row["oslo_status"], row["vendor_status"] = st.notation, vendor_status
        log.info(f"{NAME}.status_changed", correlation_id=mid, service_request_id=row["service_request_id"],
                 vendor_status=vendor_status, status=st.notation)

    async def _refuse(self, row: dict[str, Any], vendor_status: str, emit: Emit, evidence: dict[str, Any],
                      remember: list[Callable[[], None]]) -> None:
        """The server's "not ours": the melding goes back to the hub (no status for the citizen)."""
        mid = row["melding_id"]
        reason = self.config.refusal_statuses[vendor_status] or self.default_refusal_reason(vendor_status)
        row["_handed"] = True
        try:
            out = await self.refusal_output(mid, reason)
        except HubError as error:
            self._dead_letter_reading(row, evidence, error, emit, *remember)
            return
        when = self.clock()
        emit.outputs.append(out)
        emit.after_ack.append(lambda: self.kept.hand_over(mid, reason, when))
        emit.after_ack.extend(remember)
        log.info(f"{NAME}.refused", correlation_id=mid, service_request_id=row["service_request_id"],
                 vendor_status=vendor_status)

    def _dead_letter_reading(self, row: dict[str, Any], evidence: dict[str, Any], error: HubError, emit: Emit,
                             *after: Callable[[], None]) -> None:
        """What the server reported cannot go to the citizen: a dead letter with the fields read."""
        keep = ("service_request_id", "status", "extended_status", "updated_datetime", "update_id")
        value = json.dumps({k: evidence.get(k) for k in keep if k in evidence}, ensure_ascii=False, default=str).encode()
        emit.outputs.append(self._poll_dead_letter(row, value, error))
        emit.after_ack.extend(after)
        log.warning(f"{NAME}.status_deadlettered", correlation_id=row["melding_id"],
                    error_class=str(error.error_class.value), reason=error.reason[:300])

    def _poll_dead_letter(self, row: dict[str, Any], value: bytes, error: HubError) -> Output:
        headers = ((Header.SOURCE, (row["source"] or "").encode()),) if row["source"] else ()
        headers += ((Header.AUTHORITY, self.config.authority.encode()),)
        record = Record(value=value, key=row["melding_id"].encode(), headers=headers, topic=f"{NAME}-poll:{self.config.id}")
        return dead_letter(record, error, row["melding_id"])


# ---------------------------------------------------------------------------------------------
# the process (the Kafka loop is adapters.loop's)
# ---------------------------------------------------------------------------------------------
async def run(config: Config, runtime: Runtime) -> None:
    api_key = config.api_key()

    def make(ctx: Context) -> Open311OutWorker:
        client = GeoReportClient(config.base_url, api_key, config.jurisdiction_id, timeout=config.timeout_s)
        store = Store(config.state_path(runtime.state_dir))
        return Open311OutWorker(config, client, store, ctx.authority_iri, ctx.authority_name, contacts=ctx.contacts)

    await run_authority(config, runtime, NAME, make)
