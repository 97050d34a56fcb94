"""The Kafka loop every authority adapter shares: authority topic → vendor → status, refusals, dead letters.

A vendor's ``service.py`` keeps only what is its own — a worker with ``deliver()`` (file one
melding in the vendor's tool) and, for tools that are polled, ``poll_once()`` (status back) — and
hands the rest to :func:`run_authority`:

- consume ``meldingen.authority.<id>`` with ``read_committed``, one record at a time;
- decode the melding, reveal encrypted contact details for the owner (:mod:`adapters.contact`),
  call the vendor's ``deliver``, keep the consumed record for a later refusal
  (:mod:`adapters.refusals`);
- produce what it returned (status events, refusals, dead letters), wait for the broker's
  acknowledgements, make the store changes that depend on them, and only then commit the offset —
  at least once end to end, never twice at the vendor (every create is looked up by the melding id
  first, or recorded before it is sent);
- keep a :class:`hub.deadletters.DestinationGate` for the authority: a 401/403, or a melding whose
  bounded retries all failed transiently, **pauses** the destination instead of dead-lettering —
  ``consumer.pause()`` of the partitions, a seek back so the melding stays queued (its offset not
  committed), a ``destination.paused`` log event and the ``meldhub_destination_paused`` gauge; when
  the pause ends one delivery probes the destination, and success resumes it. Only what the vendor
  rejects for that one melding (4xx other than 401/403/408/429, malformed answers) is dead-lettered;
- serve an optional web app (status form or webhook receiver) and poll the vendor for status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal as signals
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters.base import AuthorityConfig, Runtime, VendorAuthFailed, VendorError
from adapters.contact import ContactKeys, Revealed, reveal_for
from adapters.refusals import KeptRecords, refusal
from hub import logs, metrics
from hub.deadletters import DestinationGate, PausePolicy, Verdict
from hub.errors import BugError, HubError
from hub.jsonld import decode_json
from hub.kafka_admin import ensure_topics, raise_message_size_limits
from hub.kafka_auth import client_kwargs
from hub.melding import Melding, text_of
from hub.pipeline import Output, Record, dead_letter
from hub.status import INGEDIEND, TOEGEWEZEN, StatusChange, status
from hub.status_service import record_of
from hub.topics import DEADLETTER, REFUSALS, STATUS, Header, authority_topic

log = logs.get_logger("adapters")

PUBLISH_TIMEOUT_S = 15.0
REPORTING_HOLD_S = 300.0
"""How long a delivery's unacknowledged status event keeps the status poll off its melding (it is
normally acknowledged, or produced again by the record's redelivery, within seconds)."""


# ---------------------------------------------------------------------------------------------
# what a worker returns
# ---------------------------------------------------------------------------------------------
@dataclass
class Emit:
    """Records to produce, and the state changes to make once the broker acknowledged them."""

    outputs: list[Output] = field(default_factory=list)
    after_ack: list[Callable[[], None]] = field(default_factory=list)
    delivered: bool = False
    """The vendor has the melding (filed now, or found filed earlier)."""
    failure: VendorError | None = None
    """Delivery failed at the vendor; ``outputs`` then hold the melding's dead letter, which the
    loop produces only if its gate does not pause the destination instead."""
    melding_id: str | None = None

    def done(self) -> None:
        for step in self.after_ack:
            step()


def hold_cursor(newest: datetime | None, held: list[datetime]) -> datetime | None:
    """A poll's next cursor: the newest change it read, but never past a change it left for its
    next round (:meth:`AuthorityWorker.reporting`), so that round reads it again."""
    if not held:
        return newest
    back = min(held) - timedelta(milliseconds=1)
    return back if newest is None else min(newest, back)


def repeats_the_delivery(known: str, new: str) -> bool:
    """True when a poll is about to report Toegewezen aan for a melding its store still has at
    Ingediend: the delivery reported that (dated by the ticket's creation), and the adapter stopped
    after the broker acknowledged it, before its store moved. The poll then reports the delivery's
    own event again (same date, so the same id), not a second Toegewezen aan."""
    return known == INGEDIEND and new == TOEGEWEZEN


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


@dataclass(frozen=True)
class Incoming:
    """One consumed melding, ready for a vendor: the record, the typed melding, and its document
    with the contact details revealed for this owner (or dropped when no key is available)."""

    record: Record
    melding: Melding
    contact: Revealed

    @property
    def value(self) -> bytes:
        """The melding's bytes for a vendor that takes JSON-LD: the record's own bytes, unless the
        contact details had to be decrypted (or dropped)."""
        if not self.contact.changed:
            return self.record.value or b""
        return json.dumps(self.contact.doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# the worker: what every authority adapter does around its vendor's deliver()
# ---------------------------------------------------------------------------------------------
class AuthorityWorker:
    """Base of each vendor's worker. Subclasses implement :meth:`deliver` (and ``poll_once`` when
    their tool is polled); this class decodes, reveals, keeps the record and turns failures into
    dead letters — so no error of one melding stops the adapter."""

    name = "adapter"
    """Prefix of the worker's log events (``topdesk.ready``, ``topdesk.deadlettered`` …)."""

    def __init__(self, config: Any, store: Any, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), contacts: ContactKeys | None = None) -> None:
        self.config = config
        self.store = store
        self.door = authority_iri
        self.authority_name = authority_name
        self.clock = clock
        self.contacts = contacts
        self.kept: KeptRecords = store.kept
        self.log = logs.get_logger(f"adapters.{self.name}")
        self._reporting: dict[str, float] = {}
        """Melding id → until when (monotonic) its delivery's status event counts as on its way."""

    async def deliver(self, incoming: Incoming) -> Emit:  # pragma: no cover - abstract
        raise NotImplementedError

    async def handle(self, record: Record) -> Emit:
        melding_id: str | None = None
        try:
            doc = decode_json(record.value or b"")
            melding_id = _melding_id(record, doc)
            contact = await reveal_for(self.contacts, doc, melding_id, self.config.id) if melding_id else Revealed(doc, "clear")
            melding = Melding.from_jsonld(contact.doc)
            melding_id = melding.melding_id
            emit = await self.deliver(Incoming(record, melding, contact))
            self.kept.keep(melding_id, record.value, record.headers)  # durable before the offset is committed
            emit.delivered, emit.melding_id = True, melding_id
            if any(o.topic == STATUS for o in emit.outputs):
                self._on_its_way(melding_id, emit)
            return emit
        except VendorError as error:
            self.log.warning(f"{self.name}.delivery_failed", correlation_id=melding_id,
                             error_class=str(error.error_class.value), reason=error.reason[:300])
            return Emit([self.dead_letter(record, error, melding_id)], failure=error, melding_id=melding_id)
        except HubError as error:  # the record is not a melding (or a refusal could not be built)
            self.log.warning(f"{self.name}.deadlettered", correlation_id=melding_id,
                             error_class=str(error.error_class.value), reason=error.reason[:300])
            return Emit([self.dead_letter(record, error, melding_id)], melding_id=melding_id)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the worker
            error = BugError.from_exception(exc)
            self.log.error(f"{self.name}.bug", correlation_id=melding_id, reason=error.reason)
            return Emit([self.dead_letter(record, error, melding_id)], melding_id=melding_id)

    def _on_its_way(self, melding_id: str, emit: Emit) -> None:
        self._reporting[melding_id] = time.monotonic() + REPORTING_HOLD_S
        emit.after_ack.append(lambda: self._reporting.pop(melding_id, None))  # after the vendor's own steps (the store)

    def reporting(self, melding_id: str) -> bool:
        """True while a delivery's status event for this melding waits for the broker's
        acknowledgement. The status poll runs beside the consume loop and decides from the store,
        which moves only after that acknowledgement: a poll that read the melding's ticket in this
        window would report the same status a second time (or a later one with the wrong
        ``status-previous``). It leaves such a melding for its next round instead (see
        :func:`hold_cursor`). The hold ends at the acknowledgement, or after ``REPORTING_HOLD_S``
        when the record went to another worker in a rebalance before it was acknowledged."""
        until = self._reporting.get(melding_id)
        if until is None:
            return False
        if time.monotonic() > until:
            del self._reporting[melding_id]
            return False
        return True

    def dead_letter(self, record: Record, error: HubError, melding_id: str | None) -> Output:
        """The original record, its error, and the destination (``authority``) for ``dlq --destination``."""
        out = dead_letter(record, error, melding_id or _key(record))
        return Output(out.topic, out.key, out.value, out.headers + ((Header.AUTHORITY, self.config.authority.encode()),))

    def status_output(self, change: StatusChange, source: str | None, previous: str | None) -> Output:
        return Output(STATUS, change.melding_id.encode(), change.to_bytes(),
                      change.kafka_headers(source, previous, reported_by=self.config.id))

    async def refusal_output(self, melding_id: str, reason: str, when: datetime | None = None) -> Output:
        return await refusal(self.kept, self.contacts, melding_id, self.config.authority, reason, when or self.clock())

    def default_refusal_reason(self, vendor_status: str) -> str:
        return f"{self.authority_name} is niet bevoegd (status '{vendor_status}' in haar systeem)"

    async def aclose(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
        self.store.close()


def _key(record: Record) -> str | None:
    return record.key.decode("utf-8", errors="replace")[:100] if record.key else None


def _melding_id(record: Record, doc: Any) -> str | None:
    """The melding id before the melding is parsed (to find its key): the header, else the record
    key, else the document's ``identificator.notatie``."""
    found = record.header(Header.MELDING_ID) or _key(record)
    if found:
        return found
    ident = doc.get("identificator") if isinstance(doc, dict) else None
    notation = ident.get("notatie") if isinstance(ident, dict) else None
    if isinstance(notation, dict):
        notation = notation.get("@value")
    return notation if isinstance(notation, str) else None


# ---------------------------------------------------------------------------------------------
# producing, with acknowledgements
# ---------------------------------------------------------------------------------------------
async def produce(producer: AIOKafkaProducer, emit: Emit) -> None:
    """Produce ``emit``'s outputs, wait for every acknowledgement, then run its after-ack steps."""
    futures = [await producer.send(o.topic, value=o.value, key=o.key, headers=list(o.headers)) for o in emit.outputs]
    await asyncio.gather(*futures)
    emit.done()


@dataclass
class Publisher:
    """What a web app of an adapter (status form, webhook receiver) uses to produce: each call
    returns only after the broker acknowledged, so an answer of 2xx means durable."""

    producer: AIOKafkaProducer
    reported_by: str

    async def publish(self, outputs: Iterable[Output]) -> None:
        futures = [await self.producer.send(o.topic, value=o.value, key=o.key, headers=list(o.headers)) for o in outputs]
        await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)

    async def report(self, change: StatusChange, source: str | None, previous: str) -> None:
        await self.publish([Output(STATUS, change.melding_id.encode(), change.to_bytes(),
                                   change.kafka_headers(source, previous, reported_by=self.reported_by))])


Refuse = Callable[[str, str], Awaitable[None]]
"""(melding id, reason) → the melding is back with the hub; raises when it could not be."""


def refuser(worker: AuthorityWorker, publisher: Publisher) -> Refuse:
    """For an adapter's web app: give a melding back to the hub (``meldingen.refusals``); it is
    marked handed over only once the broker acknowledged the refusal."""

    async def refuse(melding_id: str, reason: str) -> None:
        when = worker.clock()
        out = await worker.refusal_output(melding_id, reason, when)
        await publisher.publish([out])
        worker.kept.hand_over(melding_id, reason, when)
        log.info(f"{worker.name}.refused", correlation_id=melding_id, adapter=worker.config.id)

    return refuse


# ---------------------------------------------------------------------------------------------
# the consume loop with its destination gate
# ---------------------------------------------------------------------------------------------
def gate_for(config: AuthorityConfig, clock: Callable[[], float] = time.monotonic) -> DestinationGate:
    """Every transient failure that survived the retries pauses (``failures_to_pause=1``): an
    outage keeps the backlog queued instead of dead-lettering it."""
    policy = PausePolicy(failures_to_pause=1, pause_for=config.pause.pause_for_s, max_pause=config.pause.max_pause_s,
                         pause_on_auth_failure=True)
    return DestinationGate(config.authority, policy, clock=clock)


async def consume(handle: Callable[[Record], Awaitable[Emit]], consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                  stopping: asyncio.Event, name: str, config: Any, gate: DestinationGate | None = None) -> None:
    """One record at a time: handle → produce its outputs → wait for acks → commit (at least once).

    With a ``gate``: a failure the gate answers with PAUSE leaves the record uncommitted (seek
    back), pauses the partitions until the gate allows one probe, and produces nothing for it."""
    ready = False
    held = False  # partitions paused by us
    while not stopping.is_set():
        if gate is not None and gate.paused:
            if consumer.assignment():
                consumer.pause(*consumer.assignment())  # again after a rebalance: new partitions too
                held = True
            wait_ms = max(10, min(500, int(((gate.paused_until or 0) - gate.clock()) * 1000)))
            await consumer.getmany(timeout_ms=wait_ms)  # stays in the group; paused partitions yield nothing
            continue
        if gate is not None and not gate.allowed():
            continue
        if held:
            consumer.resume(*consumer.assignment())
            held = False
            log.info("destination.probing", destination=config.authority, adapter=config.id)
        batches = await consumer.getmany(timeout_ms=500, max_records=50)
        if not ready and consumer.assignment():
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve the start offset now ("latest" means: from here)
            ready = True
            log.info(f"{name}.ready", adapter=config.id, authority=config.authority,
                     partitions=sorted(tp.partition for tp in consumer.assignment()))
        paused_now = False
        for tp, records in batches.items():
            if paused_now:
                consumer.seek(tp, records[0].offset)  # fetched but not handled: read again after the pause
                continue
            for r in records:
                if stopping.is_set():
                    consumer.seek(tp, r.offset)
                    return
                emit = await handle(record_of(r))
                if gate is not None and _gate_pauses(gate, emit, name, config):
                    consumer.seek(tp, r.offset)
                    if consumer.assignment():
                        consumer.pause(*consumer.assignment())
                        held = True
                    paused_now = True
                    break
                try:
                    await produce(producer, emit)
                    await consumer.commit({tp: r.offset + 1})
                except Exception as exc:  # broker trouble: redo this record (the store/look-up prevents a 2nd delivery)
                    log.warning(f"{name}.produce_failed", error=type(exc).__name__, detail=str(exc)[:300])
                    consumer.seek(tp, r.offset)
                    await asyncio.sleep(2.0)
                    break


def _gate_pauses(gate: DestinationGate, emit: Emit, name: str, config: Any) -> bool:
    """Tell the gate how the delivery went; True when the destination is now paused."""
    if emit.failure is None:
        if emit.delivered:
            recovering = gate.pauses_in_a_row > 0
            gate.record_success()
            if recovering:
                log.info("destination.resumed", destination=config.authority, adapter=config.id,
                         correlation_id=emit.melding_id)
        return False
    error = emit.failure
    decision = gate.record_failure(transient=error.transient, auth=isinstance(error, VendorAuthFailed))
    if decision.verdict is Verdict.PAUSE:
        until = datetime.now(UTC).timestamp() + decision.seconds
        log.error("destination.paused", destination=config.authority, adapter=config.id, correlation_id=emit.melding_id,
                  error_class=str(error.error_class.value), reason=error.reason[:300], pause_s=round(decision.seconds, 1),
                  until=datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"))
        return True
    log.warning(f"{name}.deadlettered", correlation_id=emit.melding_id, error_class=str(error.error_class.value),
                reason=error.reason[:300])
    return False


async def poll_loop(poll_once: Callable[[], Awaitable[Emit]], producer: AIOKafkaProducer, interval_s: float,
                    stopping: asyncio.Event, name: str) -> None:
    """Status back from a polled tool: every ``interval_s`` one poll, its outputs acknowledged
    before its cursor moves (a poll that fails is simply repeated)."""
    while not stopping.is_set():
        try:
            await produce(producer, await poll_once())
        except asyncio.CancelledError:
            raise
        except VendorError as error:
            log.warning(f"{name}.poll_failed", error_class=str(error.error_class.value), reason=error.reason[:300])
        except Exception as exc:  # noqa: BLE001 - keep polling
            log.error(f"{name}.poll_bug", error=type(exc).__name__, detail=str(exc)[:300])
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except asyncio.TimeoutError:
            pass


# ---------------------------------------------------------------------------------------------
# the process
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """What a vendor needs to build its worker: the authority, its identity's keys, the runtime."""

    authority_iri: str
    authority_name: str
    contacts: ContactKeys | None
    runtime: Runtime


AppFactory = Callable[[Any, Publisher], Any]
"""(worker, publisher) → an ASGI app served on the adapter's host:port."""


async def ensure_authority_topics(runtime: Runtime, authority: str) -> None:
    from hub.settings import HubSettings

    limit = HubSettings().topic_max_message_bytes
    big = {"max.message.bytes": str(limit)}
    await ensure_topics(runtime.bootstrap_servers, [authority_topic(authority), STATUS, DEADLETTER, REFUSALS],
                        partitions=runtime.partitions, configs={DEADLETTER: big, REFUSALS: big})
    # a melding near the hub's size limit must fit in a dead letter or a refusal, whoever made the topic
    await asyncio.to_thread(raise_message_size_limits, runtime.bootstrap_servers, {DEADLETTER: limit, REFUSALS: limit})


def authority_consumer(config: AuthorityConfig, runtime: Runtime) -> AIOKafkaConsumer:
    # a melding's delivery may take all its retries: keep the group membership meanwhile
    delivery_ms = int(config.retry.max_attempts * (config.retry.max_delay_s + config.timeout_s * 2) * 1000 * 2)
    return AIOKafkaConsumer(
        authority_topic(config.authority),
        bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(),
        group_id=f"adapter-{config.id}",
        enable_auto_commit=False,
        auto_offset_reset=config.start_from,
        isolation_level="read_committed",
        max_poll_interval_ms=max(300_000, delivery_ms),
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


async def run_authority(config: AuthorityConfig, runtime: Runtime, name: str,
                        make_worker: Callable[[Context], AuthorityWorker], app: AppFactory | None = None) -> None:
    """Run one authority adapter until SIGTERM/SIGINT: the consume loop, the vendor's status poll
    (when the worker has ``poll_once`` and the config ``poll_interval_s``) and its web app."""
    authority = runtime.registry().authority(config.authority)
    if runtime.create_topics:
        await ensure_authority_topics(runtime, config.authority)
    contacts = ContactKeys.from_env(config.authority, runtime.bootstrap_servers)
    worker = make_worker(Context(authority.identifier, authority.name, contacts, runtime))
    try:
        metrics.serve()  # MELDHUB_METRICS_PORT; not served when unset
    except OSError as exc:  # e.g. the hub on this host already serves that port: run without /metrics
        log.warning(f"{name}.metrics_not_served", error=type(exc).__name__, detail=str(exc)[:200])
    producer = AIOKafkaProducer(bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(), acks="all",
                                enable_idempotence=True)
    await producer.start()
    stopping = asyncio.Event()
    server = None
    if app is not None:
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app(worker, Publisher(producer, config.id)),
                                               host=runtime.host or getattr(config, "host", "127.0.0.1"),
                                               port=runtime.port or getattr(config, "port", 0),
                                               log_config=None, access_log=False, lifespan="off"))

    def stop() -> None:
        stopping.set()
        if server is not None:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signals.SIGTERM, signals.SIGINT):
        loop.add_signal_handler(sig, stop)
    consumer = authority_consumer(config, runtime)
    await consumer.start()
    tasks: list[asyncio.Task[Any]] = []
    if server is not None:
        server_task = asyncio.create_task(server.serve())
        # uvicorn takes SIGTERM/SIGINT while it serves (and re-raises them when done): either way both halves stop
        server_task.add_done_callback(lambda _: stopping.set())
        tasks.append(server_task)
        log.info(f"{name}.starting", adapter=config.id, host=server.config.host, port=server.config.port)
    poll_once = getattr(worker, "poll_once", None)
    interval = getattr(config, "poll_interval_s", None)
    if poll_once is not None and interval:
        tasks.append(asyncio.create_task(poll_loop(poll_once, producer, interval, stopping, name)))
    try:
        await consume(worker.handle, consumer, producer, stopping, name, config, gate_for(config))
    finally:
        stop()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10)
        await consumer.stop()
        await producer.stop()
        await worker.aclose()
        log.info(f"{name}.stopped", adapter=config.id)
