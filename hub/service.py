"""The hub's Kafka loop: consume, process, produce, commit — exactly once.

:class:`TransactionalLoop` is the one loop of every hub stage: the route stage
(:class:`HubService` around :class:`hub.pipeline.Pipeline`, ``meldhub hub run``) and the status
stage (:class:`hub.status_service.StatusService`, ``meldhub hub status-run``). A stage only says
which topics it reads, how it turns one record into its outputs (a pure function) and how it logs
and counts the result.

Delivery guarantee: exactly once for consumers that read with ``read_committed``. Outputs and
the consumed offsets are written in one Kafka transaction per input partition and batch
(aiokafka directly: faststream has no transactions). See docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from hub import logs, metrics, privacy
from hub.geo import MunicipalityIndex
from hub.kafka_admin import ensure_topics, raise_message_size_limits
from hub.pipeline import Outcome, Pipeline, Record
from hub.registry import Registry
from hub.settings import HubSettings
from hub.topics import DEADLETTER, INBOUND, KEYS, REFUSALS, STATUS, TRIAGE, authority_topic
from hub.validation import make_validator
from hub.kafka_auth import client_kwargs

log = logs.get_logger("hub.service")


class StageOutcome(Protocol):
    """What a stage returns per record: the record to produce and any that go with it."""

    output: Any  # hub.pipeline.Output
    extra: tuple[Any, ...]

RETRY_DELAY_S = 2.0
ABORT_WAIT_S = 10.0
"""Longest a given-up transaction's abort (and a producer's stop) is waited for; after that the
producer is abandoned and the next one with its transactional id fences it."""
FORCE_CLOSE_S = 1.0
"""Longest each step of closing an abandoned producer (its sender, its connections) is waited for."""
SLICE_S = 0.005
"""The stages run on the event loop and yield to it after about this long, so heartbeats, fetches
and other partitions' commits go on while a large batch is processed (pyshacl: ~5 ms a melding)."""


def tune_aiokafka(settings: HubSettings) -> None:
    """Set the one aiokafka behaviour the hub cannot set per client: the wait before a new
    transaction retries AddPartitionsToTxn after CONCURRENT_TRANSACTIONS (a module constant,
    20 ms; see ``HubSettings.txn_start_retry_ms``). Process-wide, so it is applied by the
    stages' loop, never on import. Logged and skipped if aiokafka no longer has that constant."""
    from aiokafka.producer import sender

    if not isinstance(getattr(sender, "BACKOFF_OVERRIDE", None), float):
        log.warning("hub.aiokafka_tuning_skipped", reason="aiokafka.producer.sender.BACKOFF_OVERRIDE not found")
        return
    sender.BACKOFF_OVERRIDE = settings.txn_start_retry_ms / 1000


def set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> bool:
    """Change a started consumer's fetch wait for its next fetches. aiokafka takes it from its
    fetcher for each fetch request it builds (``Fetcher._fetch_max_wait_ms``) but has no setter.
    False, and nothing changed, if that attribute is gone (a newer aiokafka)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    return True


def build_pipeline(settings: HubSettings) -> tuple[Pipeline, Registry]:
    """Load shapes, polygons and the registry once, at start-up, not per message.

    The router follows the registry file (and its layers): a saved change that loads and carries
    a new version is routed with within ``registry_reload_s`` seconds, without a restart.
    """
    from hub.registry import default_registry_path
    from hub.routing import ReloadingRouter

    interval = settings.registry_reload_s
    router = ReloadingRouter(
        settings.registry or default_registry_path(),
        MunicipalityIndex.load(),
        interval_s=float(interval),
    )
    keyring = privacy.KeyRing.from_env() if settings.protect_contact_details else None
    pipeline = Pipeline(
        make_validator(settings.validator), router, settings.max_message_bytes, keyring, settings.max_route_hops
    )
    return pipeline, router.registry


def topics_for(settings: HubSettings, registry: Registry) -> dict[str, dict[str, str]]:
    big = {"max.message.bytes": str(settings.topic_max_message_bytes)}
    topics: dict[str, dict[str, str]] = {
        INBOUND: big,
        DEADLETTER: dict(big),
        STATUS: {},
        REFUSALS: dict(big),
        TRIAGE: dict(big),
    }
    if settings.protect_contact_details:
        topics[KEYS] = {"cleanup.policy": "compact"}
    for authority in registry.authorities:
        topics[authority_topic(authority.id)] = {}
    return topics


class _FenceOnAssign(ConsumerRebalanceListener):
    """Hands partitions over safely between workers of the consumer group.

    On revoke it waits for the batch in progress (its transaction commits or aborts) and closes
    that partition's producer. On assign it first starts the partition's transactional producer —
    ``InitProducerId`` fences any zombie still holding the same transactional id and settles its
    open transaction — and only then reads the committed offset and seeks to it, so the new owner
    starts exactly after the last committed transaction, never before it (no duplicates) and never
    after it (nothing lost). aiokafka has no KIP-447, hence one transactional id per partition.
    """

    def __init__(self, service: TransactionalLoop, event: str = "partitions_assigned") -> None:
        self.service = service
        self.event = event

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.service.assignment_changed(self.event, done=False)
        self.service.revoking |= revoked  # a batch starting over stops retrying for these
        try:
            async with self.service.lock:
                await self.service.finish_inflight(revoked)  # each transaction commits or aborts first
                await self.service.close_producers(revoked)
        finally:
            self.service.revoking -= revoked

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.service.lock:
            # every partition's producer at once: each start is a bootstrap, a coordinator look-up
            # and InitProducerId (6-15 ms on the local broker; a TLS and SASL handshake more on a
            # cluster), which one after the other add up over a worker's partitions
            order = sorted(assigned)
            started = await asyncio.gather(*(self.service.producer_for(tp) for tp in order), return_exceptions=True)
            for tp, result in zip(order, started, strict=True):
                if not isinstance(result, BaseException):
                    await self.service.seek_to_committed(tp)  # only after its producer fenced the last owner
            failed = next((r for r in started if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed  # aiokafka logs it; the partitions without a producer wait, unsought, for the next rebalance
        log.info(
            f"{self.service.name}.{self.event}",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
        )
        self.service.assignment_changed(self.event, done=True)


class TransactionalLoop:
    """Consume → process → produce, exactly once, one Kafka transaction per partition batch.

    For each input partition of a batch the outputs (owner topic or dead letter) and the
    consumer offset are written in one transaction of that partition's transactional producer;
    consumers of the outputs read with ``isolation_level=read_committed``. A crash before the
    commit aborts the transaction: the batch is read again from the committed offset, and its
    earlier outputs were never visible. The pipeline itself stays pure; only this loop knows Kafka.

    Partitions do not wait for each other: a partition's batch runs as its own task while the
    partition is paused, so the next fetch serves the other partitions and one partition's commit
    (several broker round trips) never delays another's records. Within a partition, batches stay
    strictly one after the other (paused until its transaction ended), which keeps the order per
    melding and the offset bookkeeping of one transactional id per partition.
    """

    name = "loop"
    """Prefix of the loop's log events: ``<name>.ready`` once subscribed, ``<name>.partitions_assigned``
    after each rebalance, ``<name>.joined`` once every consumer of the worker has its assignment
    set up (:meth:`assignment_changed`), …"""
    input_topics: tuple[str, ...] = ()
    side_topics: tuple[str, ...] = ()
    """Inputs that are mostly idle (``meldingen.refusals``), read by a second consumer in the same
    group with a long fetch wait (``side_fetch_max_wait_ms``). A consumer has one fetch per broker
    in flight and every unpaused partition is in it: read by the main consumer, these idle
    partitions kept a fetch waiting that a main partition resuming after its commit had to wait
    for, which forced a 10 ms fetch wait; idle, that polling cost the broker 0.08–0.11 cores per
    hub against ~0.03 now (bench/)."""

    def __init__(self, settings: HubSettings, known_topics: set[str] | None = None) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self.lock = asyncio.Lock()
        self.floor: dict[TopicPartition, int] = {}
        """Per partition, the committed offset it was last sought to: records below it are done."""
        self.processed = 0
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self.known_topics = set(known_topics or ())
        self.consumer: AIOKafkaConsumer | None = None
        self.side_consumer: AIOKafkaConsumer | None = None
        self.revoking: set[TopicPartition] = set()
        """Partitions whose revocation is waiting for their batch in progress."""
        self.inflight: dict[TopicPartition, asyncio.Task[None]] = {}
        """Per partition, the batch being processed and committed (the partition is paused)."""
        self._assigned: dict[str, bool] = {}
        """Per consumer (its listener's event name): whether its latest assignment is set up."""
        self._joined = False
        self._fetch_wait_warned = False

    def assignment_changed(self, event: str, done: bool) -> None:
        """Log ``<name>.joined``, once, the first time every consumer (main, and side when there is
        one) has its assignment set up at the same time (producers started, partitions sought to
        their committed offsets): not while one of them is between a revocation and its next
        assignment. Until then a fed melding waits for the group, or for the other consumer's
        set-up, which holds the lock the batches need: whoever starts a worker and then feeds it
        (the demo, the tests, the benchmark) waits for this event, not for ``<name>.ready``."""
        self._assigned[event] = done
        expected = ("partitions_assigned", *(("side_partitions_assigned",) if self.side_topics else ()))
        if not self._joined and all(self._assigned.get(e) for e in expected):
            self._joined = True
            consumers = [c for c in (self.consumer, self.side_consumer) if c is not None]
            log.info(
                f"{self.name}.joined",
                group_id=self.settings.group_id,
                partitions=sorted(f"{tp.topic}/{tp.partition}" for c in consumers for tp in c.assignment()),
            )

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        log.info(f"{self.name}.stopping")
        self.stopping.set()

    # --- what a stage defines ----------------------------------------------------------------

    def process(self, record: Record) -> Any:
        """One consumed record → its outcome (a :class:`StageOutcome`); pure, never raises."""
        raise NotImplementedError

    def log_outcome(self, outcome: Any, partition: int, offset: int) -> None:
        """Log one committed outcome (no personal data); ``partition``/``offset`` of its output."""

    def count(self, outcome: Any) -> None:
        """Count one committed outcome in the metrics."""

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.settings.group_id}.{tp.topic}.{tp.partition}"

    async def producer_for(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self.producers.get(tp)
        if producer is None:
            s = self.settings
            producer = AIOKafkaProducer(
                bootstrap_servers=s.bootstrap_servers, **client_kwargs(),
                transactional_id=self.transactional_id(tp),
                enable_idempotence=True,
                acks="all",
                max_request_size=s.topic_max_message_bytes + 256 * 1024,
                linger_ms=s.producer_linger_ms,
                max_batch_size=s.producer_batch_bytes,
                retry_backoff_ms=s.producer_retry_backoff_ms,
                transaction_timeout_ms=int(s.transaction_timeout_s * 1000),
            )
            try:
                await producer.start()  # InitProducerId: fences a zombie with the same id
            except BaseException:
                # failed or given up (``_start_over`` bounds it): closed, not left behind with its
                # sender retrying InitProducerId for the rest of the process's life
                await _bounded_quietly(producer.stop())
                raise
            self.producers[tp] = producer
        return producer

    async def close_producers(self, tps: set[TopicPartition] | None = None) -> None:
        """Stop the producers of ``tps`` (or all) at once: each stop is bounded (``_stop_producer``),
        but one after the other a revocation of many partitions would add those bounds up. Cancelled
        (a consumer stopping during its revoke listener), the producers not yet stopped are put back
        for the last ``close_producers()`` of :meth:`run`."""
        popped = [(tp, self.producers.pop(tp, None)) for tp in list(self.producers if tps is None else tps)]
        stops = {tp: asyncio.ensure_future(_stop_producer(producer, tp)) for tp, producer in popped if producer is not None}
        try:
            await asyncio.gather(*stops.values())
        except asyncio.CancelledError:
            for tp, producer in popped:
                task = stops.get(tp)
                if producer is not None and task is not None and (not task.done() or task.cancelled()):
                    self.producers.setdefault(tp, producer)
            raise

    def consumer_of(self, tp: TopicPartition) -> AIOKafkaConsumer | None:
        """The consumer that reads ``tp`` (the side consumer for a side topic)."""
        return self.side_consumer if tp.topic in self.side_topics else self.consumer

    async def seek_to_committed(self, tp: TopicPartition) -> None:
        consumer = self.consumer_of(tp)
        assert consumer is not None
        committed = await consumer.committed(tp)
        if committed is not None:
            consumer.seek(tp, committed)
        else:
            await consumer.seek_to_beginning(tp)
        self.floor[tp] = committed or 0

    def _new_consumer(self, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, **client_kwargs(),
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(s.session_timeout_ms // 3, 1000),
            max_partition_fetch_bytes=s.topic_max_message_bytes + 64 * 1024,
            fetch_max_bytes=max(52428800, s.topic_max_message_bytes * 2),
            fetch_max_wait_ms=fetch_max_wait_ms,
            consumer_timeout_ms=s.fetcher_wakeup_ms,
        )

    async def run(self) -> None:
        s = self.settings
        tune_aiokafka(s)
        self.consumer = consumer = self._new_consumer(s.fetch_max_wait_ms)
        if self.side_topics:
            self.side_consumer = self._new_consumer(s.side_fetch_max_wait_ms)
        consumers = [c for c in (consumer, self.side_consumer) if c is not None]
        started: list[AIOKafkaConsumer] = []
        try:
            for c in consumers:
                await c.start()
                started.append(c)
            consumer.subscribe(list(self.input_topics), listener=_FenceOnAssign(self))
            if self.side_consumer is not None:
                self.side_consumer.subscribe(
                    list(self.side_topics), listener=_FenceOnAssign(self, "side_partitions_assigned")
                )
            log.info(
                f"{self.name}.ready",
                bootstrap_servers=s.bootstrap_servers,
                group_id=s.group_id,
                topics=[*self.input_topics, *self.side_topics],
            )
            await _first_failure(*(self._loop(c) for c in consumers))
        finally:
            await self.finish_inflight()
            # both leave the group (aiokafka calls no revoke listener here) at once: one after the
            # other, the second would take part in the rebalance the first one's leaving started,
            # and the other workers would rebalance twice
            for failed in await asyncio.gather(*(c.stop() for c in started), return_exceptions=True):
                if isinstance(failed, BaseException):  # the producers are closed all the same
                    log.warning(f"{self.name}.consumer_stop_failed", error=type(failed).__name__)
            await self.close_producers()
            log.info(f"{self.name}.stopped", processed=self.processed)

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.batch_size)
            if not batches:
                continue
            async with self.lock:
                for tp, records in (await self._current(consumer, batches, self.floor)).items():
                    consumer.pause(tp)  # its next batch waits until this one's transaction ended
                    self.inflight[tp] = asyncio.create_task(self._partition_batch(tp, records))
                self._adjust_fetch_wait(consumer)

    def _adjust_fetch_wait(self, consumer: AIOKafkaConsumer) -> None:
        """A short fetch wait while a partition of ``consumer`` is paused for its transaction, the
        configured one otherwise (``HubSettings.committing_fetch_max_wait_ms``): the consumer has
        one fetch per broker in flight, and a partition that resumes joins only the next one."""
        s = self.settings
        if any(self.consumer_of(tp) is consumer for tp in self.inflight):
            wait = s.committing_fetch_max_wait_ms
        else:
            wait = s.side_fetch_max_wait_ms if consumer is self.side_consumer else s.fetch_max_wait_ms
        if not set_fetch_wait(consumer, wait) and not self._fetch_wait_warned:
            self._fetch_wait_warned = True
            log.warning(f"{self.name}.aiokafka_tuning_skipped", reason="aiokafka Fetcher._fetch_max_wait_ms not found")

    async def finish_inflight(self, tps: set[TopicPartition] | None = None) -> None:
        """Wait until the batches in progress (of ``tps``, or all) have committed or aborted."""
        tasks = [t for tp, t in list(self.inflight.items()) if tps is None or tp in tps]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _partition_batch(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        try:
            await self._handle({tp: records})
            metrics.record_batch(len(records), time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - never skip a batch: read it again from the committed offset
            log.error(f"{self.name}.batch_failed", partition=f"{tp.topic}/{tp.partition}", error=type(exc).__name__)
            await self._start_over(tp)
        finally:
            self.inflight.pop(tp, None)
            consumer = self.consumer_of(tp)
            if consumer is not None:
                if tp in consumer.assignment():
                    consumer.resume(tp)
                self._adjust_fetch_wait(consumer)

    @staticmethod
    async def _current(
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        floor: dict[TopicPartition, int],
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Drop the part of a batch that a rebalance made stale while it waited for the lock.

        ``getmany`` leaves each position after the records it returned (past any transaction
        markers too). If a rebalance then sought the partition back to its committed offset, the
        position is at or before the batch's last record: the records come again from there, so
        they are dropped here. Records below the committed offset last sought to were already
        committed by some worker: dropped as well. Processing either would repeat work.
        """
        owned = consumer.assignment()
        current = {}
        for tp, records in batches.items():
            if (
                tp in owned
                and await consumer.position(tp) > records[-1].offset
                and records[0].offset >= floor.get(tp, 0)
            ):
                current[tp] = records
        return current

    async def _handle(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        outcomes = await self._process_all(batches)

        async def commit(tp: TopicPartition) -> None:
            await self._ensure_output_topics(t.topic for o in outcomes[tp] for t in (o.output, *o.extra))
            await _bounded(
                self._commit_partition(tp, batches[tp], outcomes[tp]),
                self.settings.transaction_timeout_s,
                min(ABORT_WAIT_S, self.settings.transaction_timeout_s),
            )

        results = await asyncio.gather(*(commit(tp) for tp in batches), return_exceptions=True)
        for tp, result in zip(batches, results, strict=True):
            if isinstance(result, BaseException):
                # Aborted: nothing of this batch is visible downstream; start over.
                log.warning(
                    f"{self.name}.transaction_aborted",
                    partition=f"{tp.topic}/{tp.partition}",
                    error=type(result).__name__,
                    detail=str(result)[:300],
                )
                await self._start_over(tp)

    async def _start_over(self, tp: TopicPartition) -> None:
        """After a batch that did not commit: a fresh producer (re-fencing is harmless if we still
        own the partition), the partition sought back to its committed offset, then a pause.

        Retried until both succeed: the caller resumes the partition afterwards, and resumed
        without the seek its position would be after the batch that did not commit, so the next
        transaction's offsets would skip it (a broker away longer than the transaction timeout
        makes the producer's start fail). Given up only when the partition is no longer ours
        (being revoked or gone: its next owner seeks to the committed offset) or the loop stops."""
        while True:
            await self.close_producers({tp})
            consumer = self.consumer_of(tp)
            if consumer is None or tp not in consumer.assignment() or tp in self.revoking or self.stopping.is_set():
                break
            try:
                await asyncio.wait_for(self.producer_for(tp), ABORT_WAIT_S)
                await self.seek_to_committed(tp)
                break
            except Exception as exc:  # noqa: BLE001 - keep the partition paused and try again
                log.warning(
                    f"{self.name}.start_over_failed", partition=f"{tp.topic}/{tp.partition}", error=type(exc).__name__
                )
                await asyncio.sleep(RETRY_DELAY_S)
        await asyncio.sleep(RETRY_DELAY_S)

    async def _commit_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord], outcomes: list[Any]
    ) -> None:
        producer = await self.producer_for(tp)
        with metrics.time_stage("commit"):
            async with producer.transaction():
                pending = []
                for o in outcomes:
                    for extra in o.extra:  # e.g. the key record: visible together with the melding
                        await producer.send(extra.topic, value=extra.value, key=extra.key, headers=list(extra.headers))
                    out = o.output
                    pending.append(await producer.send(out.topic, value=out.value, key=out.key, headers=list(out.headers)))
                # The outputs first, the offsets after: a broker (3.6+) checks each transactional
                # write with the coordinator, which answers "busy" while it records the
                # AddOffsetsToTxn; aiokafka then sees NOT_ENOUGH_REPLICAS and retries after its
                # back-off. Sent together, about half the transactions paid that retry (bench/).
                acks = await asyncio.gather(*pending)
                await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, self.settings.group_id)
        for outcome, meta in zip(outcomes, acks, strict=True):
            self.log_outcome(outcome, meta.partition, meta.offset)
            self.count(outcome)
        self.processed += len(outcomes)

    async def _ensure_output_topics(self, topics: Iterable[str]) -> None:
        """A registry reload can name a new authority: create its topic before producing to it
        (with auto-creation off, a send to a missing topic would only time out)."""
        missing = sorted(set(topics) - self.known_topics)
        if missing and self.settings.create_topics:
            s = self.settings
            await ensure_topics(s.bootstrap_servers, missing, s.partitions, s.replication_factor)
            self.known_topics.update(missing)

    async def _process_all(
        self, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[Any]]:
        """The stage over every record, on the event loop, yielding every ``SLICE_S``. Not in a
        worker thread: the stages hold the GIL almost all the time, and each release (shapely's
        predicates release it) handed it to the loop thread for up to the switch interval."""
        outcomes: dict[TopicPartition, list[Any]] = {}
        until = time.perf_counter() + SLICE_S
        for tp, records in batches.items():
            done = outcomes[tp] = []
            for r in records:
                done.append(self.process(record_of(r)))
                if time.perf_counter() >= until:
                    await asyncio.sleep(0)
                    until = time.perf_counter() + SLICE_S
        return outcomes


class HubService(TransactionalLoop):
    """The route stage: ``meldingen.inbound`` and ``meldingen.refusals`` → owner topics, triage,
    dead letters (:class:`hub.pipeline.Pipeline`)."""

    name = "hub"
    input_topics = (INBOUND,)
    side_topics = (REFUSALS,)

    def __init__(self, settings: HubSettings, pipeline: Pipeline, known_topics: set[str] | None = None) -> None:
        super().__init__(settings, known_topics)
        self.pipeline = pipeline

    def process(self, record: Record) -> Outcome:
        started = time.perf_counter()
        outcome = self.pipeline.process(record)
        metrics.observe_stage("pipeline", time.perf_counter() - started)
        return outcome

    def count(self, outcome: Outcome) -> None:
        metrics.record_outcome(outcome)

    def log_outcome(self, outcome: Outcome, partition: int, offset: int) -> None:
        ids = logs.melding_fields(outcome.melding_id)
        if outcome.dead_lettered:
            log.warning(
                "melding.deadlettered",
                **ids,
                error_class=str(outcome.error_class),
                reason=outcome.reason,
                topic=outcome.output.topic,
                partition=partition,
                offset=offset,
            )
        elif outcome.triaged:
            rfs = outcome.refusal
            log.warning(
                "melding.triaged",
                **ids,
                refused_by=rfs.refused_by if rfs else None,
                hops=rfs.hops if rfs else None,
                reason=outcome.reason,
                topic=outcome.output.topic,
                partition=partition,
                offset=offset,
            )
        else:
            d = outcome.decision
            assert d is not None
            if outcome.refusal is not None:
                log.info("melding.refused", **ids, refused_by=outcome.refusal.refused_by, hops=outcome.refusal.hops)
            log.info(
                "melding.routed",
                **ids,
                authority=d.authority_id,
                rule=d.rule_id,
                ruleset_version=d.ruleset_version,
                municipality=d.municipality_nis,
                topic=outcome.output.topic,
                partition=partition,
                offset=offset,
            )


async def _bounded(commit: Any, timeout_s: float, abort_wait_s: float) -> None:
    """Await a partition's commit for at most ``timeout_s``, then give it up: a hanging request
    (tests/integration/test_loop_timeout.py) would otherwise hold the partition (paused) for ever.

    Giving up cancels the commit; leaving the transaction, aiokafka aborts it and waits for the
    abort to end — which waits for the pending batches, and an idempotent producer never expires
    them (a broker that refuses every produce). That wait is bounded by ``abort_wait_s``: then a
    second cancellation leaves it. Either way TimeoutError: the caller starts over from the
    committed offset with a new producer, which fences this one; nothing of the batch was visible."""
    task = asyncio.ensure_future(commit)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if task in done:
            task.result()
            return
        task.cancel()
        await asyncio.wait({task}, timeout=abort_wait_s)
        if not task.done():
            task.cancel()  # the abort did not end: leave it (its producer is replaced and fenced)
        elif not task.cancelled() and task.exception() is not None:
            error = task.exception()  # retrieved, so it is reported here and not lost
            raise TimeoutError(f"transaction not committed within {timeout_s:g} s; given up ({type(error).__name__})")
        raise TimeoutError(f"transaction not committed within {timeout_s:g} s; given up")
    except asyncio.CancelledError:
        task.cancel()  # the loop itself is being cancelled: take the commit along
        raise


async def _first_failure(*loops: Any) -> None:
    """Run the loops until all end; the first that fails cancels the others and its exception is
    raised as it is (not wrapped in an ExceptionGroup, as a TaskGroup would)."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stop_producer(producer: AIOKafkaProducer, tp: TopicPartition) -> None:
    """Stop a partition's producer, in bounded time.

    ``stop()`` first waits for the pending batches to be sent, which a broker refusing every
    produce never acknowledges; the next producer with this transactional id fences this one, so
    giving up loses nothing. What ``stop()`` would have done after that wait is then done here,
    each step bounded by ``FORCE_CLOSE_S``: the pending batches are failed (their data released),
    the sender task (which would retry them for as long as the process lives) is cancelled and the
    client's connections are closed."""
    try:
        await asyncio.wait_for(producer.stop(), ABORT_WAIT_S)
        return
    except Exception as exc:  # noqa: BLE001 - TimeoutError, or a broken connection: close what is left
        log.warning("producer.stop_abandoned", topic=tp.topic, partition=tp.partition, error=type(exc).__name__)
    # aiokafka's own parts, as its stop() uses them
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is not None:
        with contextlib.suppress(Exception):
            accumulator.fail_all(KafkaError("the producer was abandoned: its transaction was given up"))
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        await _bounded_quietly(sender.close())
    await _bounded_quietly(producer.client.close())


async def _bounded_quietly(step: Any) -> None:
    """Await a clean-up step for at most ``FORCE_CLOSE_S``; its failure is no failure of the caller.
    A CancelledError that does not cancel this task (a connection's close future cancelled when
    ``stop()`` was left) is such a failure; one that does is passed on."""
    try:
        await asyncio.wait_for(step, FORCE_CLOSE_S)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception:  # noqa: BLE001 - best effort: the producer is fenced and dropped anyway
        pass


def record_of(r: ConsumerRecord) -> Record:
    """A consumed aiokafka record as the pure stages' :class:`hub.pipeline.Record`."""
    return Record(
        value=r.value,
        key=r.key,
        headers=tuple((k, v if v is not None else b"") for k, v in (r.headers or ())),
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
    )


def freeze_startup_objects() -> None:
    """Move everything loaded so far (shapes, codelists, polygons, layers, the registry) out of the
    garbage collector's reach: it lives as long as the process, and every full collection would
    walk it again — 60 ms on the bench machine, a pause in the middle of a batch (bench/).
    Called once by the stages' entry points, never by library code."""
    gc.collect()
    gc.freeze()


async def serve(settings: HubSettings) -> None:
    """Entry point of ``meldhub hub run``."""
    pipeline, registry = build_pipeline(settings)
    metrics.serve()  # MELDHUB_METRICS_PORT; not served when unset
    if settings.create_topics:
        topics = topics_for(settings, registry)
        await ensure_topics(
            settings.bootstrap_servers,
            list(topics),
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            configs=topics,
        )
        # topics someone else created first may refuse what the hub must write (an oversized
        # melding's dead letter): raise their limit rather than abort that transaction forever
        limits = {t: int(c["max.message.bytes"]) for t, c in topics.items() if "max.message.bytes" in c}
        raised = await asyncio.to_thread(raise_message_size_limits, settings.bootstrap_servers, limits)
        for topic, old in raised.items():
            log.warning("hub.topic_limit_raised", topic=topic, was=old, now=limits[topic])
    service = HubService(settings, pipeline, set(topics_for(settings, registry)))
    freeze_startup_objects()
    service.install_signal_handlers()
    await service.run()
