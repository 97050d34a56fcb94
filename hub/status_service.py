"""The Kafka loop around :class:`hub.status.StatusStage`: ``meldingen.status`` → ``meldingen.status.<source>``.

Same shape and guarantees as :mod:`hub.service`: ``getmany`` a batch, run the (CPU-bound,
SHACL) stage in a worker thread, produce every output with an idempotent producer
(``acks=all``), wait for all acknowledgements, then commit. At least once; order per melding
(key) kept; a bad event never stops the loop (it becomes a dead letter).

A channel's status topic is created the first time a status for it passes (the broker runs
with ``auto.create.topics.enable=false``); ``--no-create-topics`` leaves that to operators, and a
missing topic then holds the batch (retried and logged) instead of losing it.
"""

from __future__ import annotations

import asyncio
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub import logs
from hub.kafka_admin import ensure_topics
from hub.pipeline import Record
from hub.status import StatusOutcome, StatusStage
from hub.topics import DEADLETTER, STATUS, STATUS_PREFIX
from hub.kafka_auth import client_kwargs

log = logs.get_logger("hub.status")

RETRY_DELAY_S = 2.0


class StatusSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MELDHUB_STATUS_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("MELDHUB_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"),
    )
    group_id: str = "meldingen-hub-status"
    create_topics: bool = True
    partitions: int = Field(default=3, validation_alias=AliasChoices("MELDHUB_PARTITIONS", "partitions"))
    replication_factor: int = 1
    batch_size: int = 200
    log_level: str = "INFO"
    shacl: bool = True
    """Validate every event against the hub's Meldingstatus shape (off: the compact-form check only)."""


class StatusService:
    def __init__(self, settings: StatusSettings, stage: StatusStage) -> None:
        self.settings = settings
        self.stage = stage
        self.stopping = asyncio.Event()
        self.processed = 0
        self._topics: set[str] = set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        log.info("status.stopping")
        self.stopping.set()

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            STATUS,
            bootstrap_servers=s.bootstrap_servers, **client_kwargs(),
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, **client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            await consumer.start()
            try:
                log.info("status.ready", bootstrap_servers=s.bootstrap_servers, group_id=s.group_id, topic=STATUS)
                await self._loop(consumer, producer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
            log.info("status.stopped", processed=self.processed)

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while not self.stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.batch_size)
            if not batches:
                continue
            try:
                await self._handle(consumer, producer, batches)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker trouble: redo the batch
                log.warning("status.batch_failed", error=type(exc).__name__, detail=str(exc)[:300])
                for tp, records in batches.items():
                    consumer.seek(tp, records[0].offset)
                await asyncio.sleep(RETRY_DELAY_S)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
    ) -> None:
        outcomes = await asyncio.to_thread(self._process_all, batches)
        await self._ensure_topics({o.output.topic for o in outcomes})
        pending = []
        for outcome in outcomes:
            out = outcome.output
            pending.append(await producer.send(out.topic, value=out.value, key=out.key, headers=list(out.headers)))
        acks = await asyncio.gather(*pending)
        for outcome, meta in zip(outcomes, acks, strict=True):
            self._log(outcome, meta.partition, meta.offset)
        await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        self.processed += len(outcomes)

    async def _ensure_topics(self, topics: set[str]) -> None:
        new = {t for t in topics if t.startswith(STATUS_PREFIX) and t not in self._topics}
        if new and self.settings.create_topics:
            await ensure_topics(
                self.settings.bootstrap_servers,
                sorted(new),
                partitions=self.settings.partitions,
                replication_factor=self.settings.replication_factor,
            )
        self._topics |= new

    def _process_all(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> list[StatusOutcome]:
        return [self.stage.process(record_of(r)) for records in batches.values() for r in records]

    @staticmethod
    def _log(outcome: StatusOutcome, partition: int, offset: int) -> None:
        with logs.bind_melding(outcome.melding_id):
            if outcome.dead_lettered:
                log.warning(
                    "status.deadlettered",
                    error_class=outcome.error_class,
                    reason=outcome.reason,
                    topic=outcome.output.topic,
                    partition=partition,
                    offset=offset,
                )
            else:
                assert outcome.change is not None
                log.info(
                    "status.forwarded",
                    status=outcome.change.status.notation,
                    topic=outcome.output.topic,
                    partition=partition,
                    offset=offset,
                )


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


async def serve(settings: StatusSettings) -> None:
    """Entry point of ``meldhub hub status-run``."""
    validator = None
    if settings.shacl:
        from hub.validation import make_validator

        validator = make_validator("pyshacl")
    if settings.create_topics:
        from hub.settings import HubSettings

        # the dead-letter topic with the hub's own size limit, whoever creates it first
        big = {"max.message.bytes": str(HubSettings().topic_max_message_bytes)}
        await ensure_topics(
            settings.bootstrap_servers,
            [STATUS, DEADLETTER],
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            configs={DEADLETTER: big},
        )
    service = StatusService(settings, StatusStage(validator))
    service.install_signal_handlers()
    await service.run()
