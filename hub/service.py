"""The Kafka loop around :class:`hub.pipeline.Pipeline`: consume, process, produce, commit.

Delivery guarantee (this version): at least once. A batch's offsets are committed only
after every output record of the batch was acknowledged by the broker (``acks=all``,
idempotent producer); if the hub dies in between, the batch is processed again on restart,
so a melding may reach its owner twice but is never lost. Exactly-once (transactions) is
the next step and keeps this shape: the pipeline stays pure, only this loop changes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from hub import logs
from hub.geo import MunicipalityIndex
from hub.kafka_admin import ensure_topics
from hub.pipeline import Outcome, Pipeline, Record
from hub.registry import Registry
from hub.routing import Router
from hub.settings import HubSettings
from hub.topics import DEADLETTER, INBOUND, STATUS, authority_topic
from hub.validation import make_validator

log = logs.get_logger("hub.service")

RETRY_DELAY_S = 2.0


def build_pipeline(settings: HubSettings) -> tuple[Pipeline, Registry]:
    """Load shapes, polygons and the registry once, at start-up, not per message."""
    registry = Registry.load(settings.registry)
    router = Router(registry, MunicipalityIndex.load())
    return Pipeline(make_validator(settings.validator), router, settings.max_message_bytes), registry


def topics_for(settings: HubSettings, registry: Registry) -> dict[str, dict[str, str]]:
    big = {"max.message.bytes": str(settings.topic_max_message_bytes)}
    topics: dict[str, dict[str, str]] = {INBOUND: big, DEADLETTER: dict(big), STATUS: {}}
    for authority in registry.authorities:
        topics[authority_topic(authority.id)] = {}
    return topics


class HubService:
    def __init__(self, settings: HubSettings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.stopping = asyncio.Event()
        self.processed = 0

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        log.info("hub.stopping")
        self.stopping.set()

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            INBOUND,
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=s.topic_max_message_bytes + 64 * 1024,
            fetch_max_bytes=max(52428800, s.topic_max_message_bytes * 2),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=s.topic_max_message_bytes + 256 * 1024,
            linger_ms=5,
        )
        await producer.start()
        try:
            await consumer.start()
            try:
                log.info("hub.ready", bootstrap_servers=s.bootstrap_servers, group_id=s.group_id, topic=INBOUND)
                await self._loop(consumer, producer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
            log.info("hub.stopped", processed=self.processed)

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while not self.stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.batch_size)
            if not batches:
                continue
            try:
                await self._handle(consumer, producer, batches)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker trouble while producing: redo the batch
                log.warning("hub.batch_failed", error=type(exc).__name__, detail=str(exc)[:300])
                for tp, records in batches.items():
                    consumer.seek(tp, records[0].offset)
                await asyncio.sleep(RETRY_DELAY_S)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
    ) -> None:
        # The stages are CPU-bound (SHACL): run them off the event loop so heartbeats continue.
        outcomes = await asyncio.to_thread(self._process_all, batches)
        pending = []
        for outcome in outcomes:
            out = outcome.output
            pending.append(await producer.send(out.topic, value=out.value, key=out.key, headers=list(out.headers)))
        acks = await asyncio.gather(*pending)
        for outcome, meta in zip(outcomes, acks, strict=True):
            self._log(outcome, meta.partition, meta.offset)
        await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        self.processed += len(outcomes)

    def _process_all(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> Sequence[Outcome]:
        return [self.pipeline.process(_record(r)) for records in batches.values() for r in records]

    @staticmethod
    def _log(outcome: Outcome, partition: int, offset: int) -> None:
        with logs.bind_melding(outcome.melding_id):
            if outcome.dead_lettered:
                log.warning(
                    "melding.deadlettered",
                    error_class=str(outcome.error_class),
                    reason=outcome.reason,
                    topic=outcome.output.topic,
                    partition=partition,
                    offset=offset,
                )
            else:
                d = outcome.decision
                assert d is not None
                log.info(
                    "melding.routed",
                    authority=d.authority_id,
                    rule=d.rule_id,
                    ruleset_version=d.ruleset_version,
                    municipality=d.municipality_nis,
                    topic=outcome.output.topic,
                    partition=partition,
                    offset=offset,
                )


def _record(r: ConsumerRecord) -> Record:
    return Record(
        value=r.value,
        key=r.key,
        headers=tuple((k, v if v is not None else b"") for k, v in (r.headers or ())),
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
    )


async def serve(settings: HubSettings) -> None:
    """Entry point of ``meldhub hub run``."""
    pipeline, registry = build_pipeline(settings)
    if settings.create_topics:
        topics = topics_for(settings, registry)
        await ensure_topics(
            settings.bootstrap_servers,
            list(topics),
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            configs=topics,
        )
    service = HubService(settings, pipeline)
    service.install_signal_handlers()
    await service.run()
