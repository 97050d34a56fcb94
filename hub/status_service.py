"""The status stage on Kafka: ``meldingen.status`` → ``meldingen.status.<source>``, exactly once.

:class:`StatusService` is the hub's transactional loop (:class:`hub.service.TransactionalLoop`)
around the pure :class:`hub.status.StatusStage`: per input partition batch one Kafka transaction
holds the forwarded events (or dead letters) and the consumed offsets, consumers read with
``read_committed``; order per melding (key) kept; a bad event never stops the loop (it becomes a
dead letter). Workers of one consumer group share the partitions, as the route stage's do.

A channel's status topic is created the first time a status for it passes (the broker runs
with ``auto.create.topics.enable=false``); ``--no-create-topics`` leaves that to operators, and a
missing topic then aborts the batch's transaction and retries it (logged) instead of losing it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub import logs
from hub.kafka_admin import ensure_topics
from hub.pipeline import Record
from hub.service import TransactionalLoop, freeze_startup_objects, record_of
from hub.settings import HubSettings
from hub.status import StatusOutcome, StatusStage
from hub.topics import DEADLETTER, STATUS

log = logs.get_logger("hub.status")

__all__ = ["StatusService", "StatusSettings", "record_of", "serve"]


class StatusSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MELDHUB_STATUS_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("MELDHUB_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"),
    )
    group_id: str = "meldingen-hub-status"
    """Also the prefix of the stage's transactional ids (one per input partition)."""
    create_topics: bool = True
    partitions: int = Field(default=3, validation_alias=AliasChoices("MELDHUB_PARTITIONS", "partitions"))
    replication_factor: int = 1
    batch_size: int = Field(default=HubSettings.model_fields["batch_size"].default, ge=1)
    """As the route stage's (``hub.settings.HubSettings.batch_size``)."""
    log_level: str = "INFO"
    shacl: bool = True
    """Validate every event against the hub's Meldingstatus shape (off: the compact-form check only)."""
    validator: Literal["pyshacl", "compiled"] = "compiled"
    """SHACL engine for that check: the compiled validator (default; the same reports as pyshacl on
    status events too, tests/test_status.py) or pyshacl, the reference (~2-5 ms an event)."""

    def loop_settings(self) -> HubSettings:
        """The transactional loop's settings (client tuning as the route stage's)."""
        return HubSettings(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            create_topics=self.create_topics,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            batch_size=self.batch_size,
            log_level=self.log_level,
        )


class StatusService(TransactionalLoop):
    """The status stage: checked status events to the channel the melding came from."""

    name = "status"
    input_topics = (STATUS,)

    def __init__(self, settings: StatusSettings, stage: StatusStage) -> None:
        super().__init__(settings.loop_settings(), {STATUS, DEADLETTER})
        self.stage = stage

    def process(self, record: Record) -> StatusOutcome:
        return self.stage.process(record)

    def log_outcome(self, outcome: StatusOutcome, partition: int, offset: int) -> None:
        ids = logs.melding_fields(outcome.melding_id)
        if outcome.dead_lettered:
            log.warning(
                "status.deadlettered",
                **ids,
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
                **ids,
                status=outcome.change.status.notation,
                topic=outcome.output.topic,
                partition=partition,
                offset=offset,
            )


async def serve(settings: StatusSettings) -> None:
    """Entry point of ``meldhub hub status-run``."""
    validator = None
    if settings.shacl:
        from hub.validation import make_validator

        validator = make_validator(settings.validator)
    if settings.create_topics:
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
    freeze_startup_objects()
    service.install_signal_handlers()
    await service.run()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(serve(StatusSettings()))
