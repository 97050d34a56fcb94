"""``meldhub adapters run webhook-<authority>``: each melding of the authority → one signed POST to
the system; its signed status changes → ``meldingen.status``. One process: the Kafka worker and the
inbound endpoint (uvicorn) on ``host``:``port``.

Delivering a melding, at least once, accepted once:

1. a melding the store has as ``delivered`` is not POSTed again;
2. otherwise the attempt is recorded (``sending``) and the melding POSTed with
   ``Idempotency-Key: <melding id>`` — retried with back-off on 5xx/429/timeouts, each attempt
   signed anew. A POST whose answer was lost is repeated with the same key, and the receiver keeps
   one (2xx or 409 for the repeat);
3. ``Toegewezen aan`` ("bezorgd aan"), dated by the first successful delivery, then the offset
   is committed. Permanent failures are dead-lettered with their class; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals
from collections.abc import Callable
from datetime import UTC, datetime

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters.base import Runtime, with_retries
from adapters.signalen.service import consume
from adapters.topdesk.service import Emit, last_status
from adapters.webhook import translate as t
from adapters.webhook.client import WebhookClient
from adapters.webhook.config import Config
from adapters.webhook.server import InboundApp
from adapters.webhook.store import Store
from hub import logs
from hub.errors import BugError, HubError
from hub.kafka_admin import ensure_topics
from hub.melding import Envelope
from hub.pipeline import Output, Record, dead_letter
from hub.status import STATUSES, TOEGEWEZEN, StatusChange
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from hub.kafka_auth import client_kwargs

log = logs.get_logger("adapters.webhook")


class WebhookWorker:
    def __init__(self, config: Config, client: WebhookClient, store: Store, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.door = authority_iri
        self.authority_name = authority_name
        self.clock = clock

    async def handle(self, record: Record) -> Emit:
        melding_id: str | None = None
        try:
            melding = Envelope.from_kafka(record.key, record.value or b"", record.headers).value
            melding_id = mid = melding.melding_id
            previous = last_status(melding)
            row = self.store.get(mid)
            if row is None or row["state"] != "delivered":
                attempt = self.store.sending(mid, record.header(Header.SOURCE), previous)
                body = record.value or b""
                code = await with_retries(lambda: self.client.deliver(body, mid), self.config.retry, "webhook.deliver")
                self.store.delivered(mid, self.clock())
                log.info("webhook.delivered", correlation_id=mid, attempt=attempt, http_status=code)
            else:
                log.info("webhook.already_delivered", correlation_id=mid)
            row = self.store.get(mid)
            assert row is not None and row["delivered_at"]
            if row["oslo_status"] != previous:
                return Emit()
            change = StatusChange.create(mid, STATUSES[TOEGEWEZEN], self.door, t.delivered_text(self.authority_name, self.config),
                                         datetime.fromisoformat(row["delivered_at"]))
            out = Output(STATUS, mid.encode(), change.to_bytes(),
                         change.kafka_headers(row["source"], previous, reported_by=self.config.id))
            return Emit([out], [lambda: self.store.advance(mid, previous, TOEGEWEZEN)])
        except HubError as error:
            log.warning("webhook.deadlettered", correlation_id=melding_id, error_class=str(error.error_class.value),
                        reason=error.reason[:300])
            return Emit([dead_letter(record, error, melding_id or _key(record))])
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the worker
            error = BugError.from_exception(exc)
            log.error("webhook.bug", correlation_id=melding_id, reason=error.reason)
            return Emit([dead_letter(record, error, melding_id or _key(record))])


def _key(record: Record) -> str | None:
    return record.key.decode("utf-8", errors="replace")[:100] if record.key else None


async def run(config: Config, runtime: Runtime) -> None:
    authority = runtime.registry().authority(config.authority)
    out_key, in_key = config.outbound_key(), config.inbound_key()
    topic = authority_topic(config.authority)
    if runtime.create_topics:
        from hub.settings import HubSettings

        big = {"max.message.bytes": str(HubSettings().topic_max_message_bytes)}
        await ensure_topics(runtime.bootstrap_servers, [topic, STATUS, DEADLETTER], partitions=runtime.partitions,
                            configs={DEADLETTER: big})
    store = Store(config.state_path(runtime.state_dir))
    client = WebhookClient(config.url, out_key, timeout=config.timeout_s)
    worker = WebhookWorker(config, client, store, authority.identifier, authority.name)
    producer = AIOKafkaProducer(bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()

    async def report(change: StatusChange, source: str | None, previous: str) -> None:
        await asyncio.wait_for(producer.send_and_wait(
            STATUS, value=change.to_bytes(), key=change.melding_id.encode(),
            headers=list(change.kafka_headers(source, previous, reported_by=config.id)),
        ), 15)

    app = InboundApp(config, store, in_key, report, authority.identifier).app()
    server = uvicorn.Server(uvicorn.Config(app, host=runtime.host or config.host, port=runtime.port or config.port,
                                           log_config=None, access_log=False, lifespan="off"))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        stopping.set()
        server.should_exit = True

    for sig in (signals.SIGTERM, signals.SIGINT):
        loop.add_signal_handler(sig, stop)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(), group_id=f"adapter-{config.id}",
        enable_auto_commit=False, auto_offset_reset=config.start_from, isolation_level="read_committed",
        max_poll_interval_ms=max(300_000, int(config.retry.max_attempts * (config.retry.max_delay_s + config.timeout_s * 2) * 1000 * 2)),
    )
    await consumer.start()
    server_task = asyncio.create_task(server.serve())
    # uvicorn takes SIGTERM/SIGINT while it serves (and re-raises them when done): either way both halves stop
    server_task.add_done_callback(lambda _: stopping.set())
    log.info("webhook.starting", adapter=config.id, host=server.config.host, port=server.config.port)
    try:
        await consume(worker.handle, consumer, producer, stopping, "webhook", config)
    finally:
        stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(server_task, 10)
        await consumer.stop()
        await producer.stop()
        await client.aclose()
        store.close()
        log.info("webhook.stopped", adapter=config.id)
