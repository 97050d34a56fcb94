"""``meldhub adapters serve open311``: the HTTP endpoint, the producer to ``meldingen.inbound``
and the consumer of ``meldingen.status.<adapter id>``, in one process.

- A POSTed request is answered only after the broker acknowledged its melding (``acks=all``,
  idempotent producer): a 200 means the hub has it. Broker trouble → 503, the client retries.
- Status events are applied to the local store, then the offset is committed (at least once;
  applying is idempotent on the event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters.base import Runtime
from adapters.open311.config import Config
from adapters.open311.server import Open311App
from adapters.open311.store import Store
from hub import logs
from hub.kafka_admin import ensure_topics
from hub.status import StatusChange
from hub.topics import INBOUND, status_topic
from hub.kafka_auth import client_kwargs

log = logs.get_logger("adapters.open311")

PUBLISH_TIMEOUT_S = 15.0


def _shape_check() -> Any:
    from hub.validation import ShaclValidator

    validator = ShaclValidator()

    def check(doc: dict[str, Any]) -> str | None:
        result = validator.validate(doc)
        return None if result.conforms else result.summary()

    return check


def _region_check(runtime: Runtime) -> Any:
    from hub.geo import MunicipalityIndex

    registry = runtime.registry()
    index = MunicipalityIndex.load()
    served = registry.region_municipalities

    def check(lon: float, lat: float) -> str | None:
        place = index.locate(lon, lat)
        if place is None or place.nis not in served:
            where = f" ({place.name})" if place else ""
            return f"the point lies outside the area this endpoint serves{where}; check lat/long"
        return None

    return check


async def consume_status(config: Config, runtime: Runtime, store: Store, stopping: asyncio.Event) -> None:
    """Apply ``meldingen.status.<id>`` to the store; commit after applying."""
    agencies = {a.identifier: a.name for a in runtime.registry().authorities}
    consumer = AIOKafkaConsumer(
        status_topic(config.id),
        bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(),
        group_id=f"adapter-{config.id}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            for tp, records in batches.items():
                for r in records:
                    try:
                        change = StatusChange.from_jsonld(json.loads(r.value or b"null"))
                    except Exception as exc:  # noqa: BLE001 - the status stage validated it; skip, never stop
                        log.warning("open311.status_unreadable", offset=r.offset, error=type(exc).__name__)
                        continue
                    applied = store.apply(change, agencies.get(change.door))
                    log.info(
                        "open311.status_applied" if applied else "open311.status_skipped",
                        correlation_id=change.melding_id,
                        status=change.status.notation,
                    )
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


async def run(config: Config, runtime: Runtime) -> None:
    store = Store(config.state_path(runtime.state_dir))
    keys = {client.api_key(): client.name for client in config.clients}
    if not keys:
        raise SystemExit(f"adapter {config.id}: no clients configured; nobody could submit")
    if runtime.create_topics:
        from hub.settings import HubSettings

        big = {"max.message.bytes": str(HubSettings().topic_max_message_bytes)}
        await ensure_topics(
            runtime.bootstrap_servers,
            [INBOUND, status_topic(config.id)],
            partitions=runtime.partitions,
            configs={INBOUND: big},
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(),
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(PUBLISH_TIMEOUT_S * 1000),
    )
    await producer.start()

    async def publish(key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        await asyncio.wait_for(
            producer.send_and_wait(INBOUND, value=value, key=key, headers=list(headers)), PUBLISH_TIMEOUT_S
        )

    app = Open311App(
        config,
        store,
        publish,
        keys,
        shape_check=_shape_check() if config.check_shapes else None,
        region_check=_region_check(runtime) if config.check_region else None,
    ).app()
    stopping = asyncio.Event()
    consumer_task = asyncio.create_task(consume_status(config, runtime, store, stopping))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=runtime.host or config.host,
            port=runtime.port or config.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )

    def _consumer_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("open311.status_consumer_failed", error=type(task.exception()).__name__)
            server.should_exit = True  # a endpoint whose statuses no longer update must not look healthy

    consumer_task.add_done_callback(_consumer_done)
    try:
        log.info("open311.starting", adapter=config.id, host=server.config.host, port=server.config.port)
        await server.serve()
    finally:
        stopping.set()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(consumer_task, 10)
        await producer.stop()
        store.close()
        log.info("open311.stopped", adapter=config.id)
