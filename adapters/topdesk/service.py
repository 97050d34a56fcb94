"""``meldhub adapters run topdesk-<tenant>``: meldingen of one authority → TOPdesk incidents, and
TOPdesk status changes → ``meldingen.status``.

:class:`TopdeskWorker` holds the decisions (testable with a fake TOPdesk, no broker); :func:`run`
is the thin Kafka shell around it.

Delivering a melding (``meldingen.authority.<id>`` → TOPdesk), at least once, never twice:

1. look the melding up by ``externalNumber`` (= melding id); create the incident only if none
   exists — the look-up and the create are retried together (bounded back-off), so a create
   whose answer was lost is found by the next look-up instead of being made again;
2. report ``Toegewezen aan`` (dated by TOPdesk's creationDate, so a repeat is the same event);
3. commit the offset only after the create (or the look-up found it) and the status event was
   acknowledged. A permanent failure (rejected, auth, malformed answer, retries exhausted) is
   dead-lettered with its class in ``error-class``, the original record untouched: never lost.

Status back (TOPdesk → citizen): every ``poll_interval_s`` the incidents changed since the
newest ``modificationDate`` seen (minus an overlap) are read; a processing status mapped to a
different MeldingStatuswaarde than the one last reported becomes a status event (header
``status-previous``). A change the life cycle forbids, or an unknown processing status, becomes a
dead letter instead; the citizen keeps the last legal status.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters.base import Runtime, VendorError, with_retries
from adapters.topdesk.client import TopdeskClient
from adapters.topdesk.config import Config
from adapters.topdesk.store import Store
from adapters.topdesk.translate import created_change, incident_ref, incident_request, reading_of, status_change
from hub import logs
from hub.errors import BugError, HubError
from hub.kafka_admin import ensure_topics
from hub.melding import Envelope, Melding, text_of
from hub.pipeline import Output, Record, dead_letter
from hub.status_service import record_of
from hub.status import INGEDIEND, IllegalTransition, StatusChange, check_transition, status
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from hub.kafka_auth import client_kwargs

log = logs.get_logger("adapters.topdesk")


@dataclass
class Emit:
    """Records to produce, and the state changes to make once the broker acknowledged them."""

    outputs: list[Output] = field(default_factory=list)
    after_ack: list[Callable[[], None]] = field(default_factory=list)

    def done(self) -> None:
        for step in self.after_ack:
            step()


def last_status(melding: Melding) -> str:
    """The notation of the melding's newest status (Ingediend if it carries none)."""
    best: tuple[str, str] | None = None
    for s in melding.statuses:
        value, when = s.statuswaarde, text_of(s.statusdatum) or ""
        iri = value if isinstance(value, str) else (value.id if value is not None else None)
        if not iri:
            continue
        try:
            notation = status(iri).notation
        except KeyError:
            continue
        if best is None or when >= best[0]:
            best = (when, notation)
    return best[1] if best else INGEDIEND


class TopdeskWorker:
    def __init__(self, config: Config, client: TopdeskClient, store: Store, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.door = authority_iri
        self.authority_name = authority_name
        self.clock = clock

    # -- melding → incident ---------------------------------------------------------------------
    async def _ensure_incident(self, melding: Melding) -> tuple[dict[str, Any], bool]:
        found = await self.client.find_by_external_number(melding.melding_id)
        if found is not None:
            return found, False
        return await self.client.create_incident(incident_request(melding, self.config)), True

    async def handle(self, record: Record) -> Emit:
        melding_id: str | None = None
        try:
            envelope = Envelope.from_kafka(record.key, record.value or b"", record.headers)
            melding = envelope.value
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
                [self._status_output(change, row["source"], previous)],
                [lambda: self._advance(melding_id, previous, change.status.notation)],
            )
        except HubError as error:  # VendorError, or the record is not a melding
            log.warning("topdesk.deadlettered", correlation_id=melding_id, error_class=str(error.error_class.value),
                        reason=error.reason[:300])
            return Emit([dead_letter(record, error, melding_id or _key(record))])
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the worker
            error = BugError.from_exception(exc)
            log.error("topdesk.bug", correlation_id=melding_id, reason=error.reason)
            return Emit([dead_letter(record, error, melding_id or _key(record))])

    def _advance(self, melding_id: str, expected: str, new: str) -> None:
        self.store.db.execute(
            "UPDATE incidents SET oslo_status = ? WHERE melding_id = ? AND oslo_status = ?", (new, melding_id, expected)
        )

    def _status_output(self, change: StatusChange, source: str | None, previous: str | None) -> Output:
        return Output(
            STATUS,
            change.melding_id.encode(),
            change.to_bytes(),
            change.kafka_headers(source, previous, reported_by=self.config.id),
        )

    # -- TOPdesk → status events ----------------------------------------------------------------
    async def poll_once(self) -> Emit:
        emit = Emit()
        cursor = self.store.cursor()
        now = self.clock()
        since = (cursor or now) - timedelta(seconds=self.config.poll_overlap_s)
        newest = cursor
        page_start, seen = 0, 0
        while True:
            items, more = await with_retries(
                lambda start=page_start: self.client.modified_since(since, start, self.config.page_size),
                self.config.retry,
                "topdesk.poll",
            )
            for incident in items:
                modified = self._one(incident, emit)
                if modified is not None and (newest is None or modified > newest):
                    newest = modified
            seen += len(items)
            page_start += len(items)
            if not more or not items or seen >= 10_000:
                break
        if newest is not None and newest != cursor:
            final = newest
            emit.after_ack.append(lambda: self.store.set_cursor(final))
        return emit

    def _one(self, incident: Any, emit: Emit) -> datetime | None:
        if not isinstance(incident, dict):
            return None
        row = self.store.by_incident(str(incident.get("id"))) if incident.get("id") else None
        if row is None and isinstance(incident.get("externalNumber"), str) and incident["externalNumber"]:
            row = self.store.get(incident["externalNumber"])
        if row is None:
            return None  # not an incident the hub made
        melding_id = row["melding_id"]
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
        emit.outputs.append(self._status_output(change, row["source"], known))

        def after() -> None:
            self._advance(melding_id, known, change.status.notation)
            self.store.set_vendor(melding_id, reading.vendor_status, reading.modified)

        emit.after_ack.append(after)
        log.info("topdesk.status_changed", correlation_id=melding_id, incident=reading.number,
                 processing_status=reading.vendor_status, status=change.status.notation)
        return reading.modified

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


def _key(record: Record) -> str | None:
    return record.key.decode("utf-8", errors="replace")[:100] if record.key else None


def _modified_or_none(incident: dict[str, Any]) -> datetime | None:
    from adapters.topdesk.translate import parse_datetime

    try:
        return parse_datetime(incident.get("modificationDate"), "modificationDate")
    except VendorError:
        return None


# ---------------------------------------------------------------------------------------------
# the Kafka shell
# ---------------------------------------------------------------------------------------------
async def _produce(producer: AIOKafkaProducer, emit: Emit) -> None:
    futures = [
        await producer.send(o.topic, value=o.value, key=o.key, headers=list(o.headers)) for o in emit.outputs
    ]
    await asyncio.gather(*futures)
    emit.done()


async def run(config: Config, runtime: Runtime) -> None:
    registry = runtime.registry()
    authority = registry.authority(config.authority)
    username, password = config.credentials()
    topic = authority_topic(config.authority)
    if runtime.create_topics:
        from hub.settings import HubSettings

        big = {"max.message.bytes": str(HubSettings().topic_max_message_bytes)}
        await ensure_topics(runtime.bootstrap_servers, [topic, STATUS, DEADLETTER], partitions=runtime.partitions,
                            configs={DEADLETTER: big})
    store = Store(config.state_path(runtime.state_dir))
    client = TopdeskClient(config.base_url, username, password, timeout=config.timeout_s)
    worker = TopdeskWorker(config, client, store, authority.identifier, authority.name)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(),
        group_id=f"adapter-{config.id}",
        enable_auto_commit=False,
        auto_offset_reset=config.start_from,
        isolation_level="read_committed",
        max_poll_interval_ms=max(300_000, int(config.retry.max_attempts * (config.retry.max_delay_s + config.timeout_s * 2) * 1000 * 2)),
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    await consumer.start()
    poll_task = asyncio.create_task(_poll_loop(worker, producer, config, stopping))
    try:
        await _consume_loop(worker, consumer, producer, config, stopping)
    finally:
        stopping.set()
        poll_task.cancel()
        await asyncio.gather(poll_task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await client.aclose()
        store.close()
        log.info("topdesk.stopped", adapter=config.id)


async def _consume_loop(worker: TopdeskWorker, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                        config: Config, stopping: asyncio.Event) -> None:
    ready = False
    while not stopping.is_set():
        batches = await consumer.getmany(timeout_ms=500, max_records=50)
        if not ready and consumer.assignment():
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve the start offset now ("latest" means: from here)
            ready = True
            log.info("topdesk.ready", adapter=config.id, authority=config.authority,
                     partitions=sorted(tp.partition for tp in consumer.assignment()))
        for tp, records in batches.items():
            for r in records:
                if stopping.is_set():
                    consumer.seek(tp, r.offset)
                    return
                emit = await worker.handle(record_of(r))
                try:
                    await _produce(producer, emit)
                    await consumer.commit({tp: r.offset + 1})
                except Exception as exc:  # broker trouble: redo this record (the look-up prevents a 2nd incident)
                    log.warning("topdesk.produce_failed", error=type(exc).__name__, detail=str(exc)[:300])
                    consumer.seek(tp, r.offset)
                    await asyncio.sleep(2.0)
                    break


async def _poll_loop(worker: TopdeskWorker, producer: AIOKafkaProducer, config: Config, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            emit = await worker.poll_once()
            await _produce(producer, emit)
        except asyncio.CancelledError:
            raise
        except VendorError as error:
            log.warning("topdesk.poll_failed", error_class=str(error.error_class.value), reason=error.reason[:300])
        except Exception as exc:  # noqa: BLE001 - keep polling
            log.error("topdesk.poll_bug", error=type(exc).__name__, detail=str(exc)[:300])
        try:
            await asyncio.wait_for(stopping.wait(), config.poll_interval_s)
        except asyncio.TimeoutError:
            pass
