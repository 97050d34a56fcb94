"""``meldhub adapters run email-<authority>``: each melding of the authority → one e-mail; the
receiver's status (signed link → form) → ``meldingen.status``. One process: the Kafka worker and
the status form (uvicorn) on ``host``:``port``.

Delivering a melding, at least once, never a second mail:

1. a melding the store has as ``sent`` is not mailed again (a redelivery only re-reports
   ``Toegewezen aan`` if that was never acknowledged, with the same date, so the same event id);
2. otherwise the attempt is recorded (``sending``), the message goes to the SMTP server (retried
   with back-off on 4xx/timeouts), and only then is it recorded ``sent``. A crash between the
   server's acceptance and that record re-sends the message with the same Message-ID (at least
   once: the receiver's mail client can recognise it);
3. ``Toegewezen aan`` ("per e-mail bezorgd"), then the offset is committed. Permanent failures
   (5xx, authentication) are dead-lettered with their class; nothing is lost.
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
from adapters.email import translate as t
from adapters.email.client import SmtpClient
from adapters.email.config import Config
from adapters.email.server import StatusApp
from adapters.email.store import Store
from adapters.signalen.service import consume
from adapters.topdesk.service import Emit, last_status
from hub import logs
from hub.errors import BugError, HubError
from hub.kafka_admin import ensure_topics
from hub.melding import Envelope
from hub.pipeline import Output, Record, dead_letter
from hub.status import STATUSES, TOEGEWEZEN, StatusChange
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from hub.kafka_auth import client_kwargs

log = logs.get_logger("adapters.email")


class EmailWorker:
    def __init__(self, config: Config, client: SmtpClient, store: Store, key: bytes, authority_iri: str,
                 authority_name: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.client = client
        self.store = store
        self.key = key
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
            if row is None or row["state"] != "sent":
                attempt = self.store.sending(mid, record.header(Header.SOURCE), t.summary(melding),
                                             t.message_id(mid, self.config), previous)
                now = self.clock()
                link, expires = t.status_link(mid, self.config, self.key, now)
                message = t.compose(melding, self.config, self.authority_name, link, expires, now)
                to = t.recipients(melding, self.config)
                refused = await with_retries(
                    lambda: self.client.send(message, t.reply_address(mid, self.config), to),
                    self.config.retry, "email.send",
                )
                self.store.sent(mid, self.clock())
                log.info("email.sent", correlation_id=mid, attempt=attempt, recipients=len(to) - refused,
                         refused=refused, message_id=message["Message-ID"])
            else:
                log.info("email.already_sent", correlation_id=mid)
            row = self.store.get(mid)
            assert row is not None and row["sent_at"]
            if row["oslo_status"] != previous:
                return Emit()  # Toegewezen aan (or later) was already reported
            change = StatusChange.create(mid, STATUSES[TOEGEWEZEN], self.door, t.sent_text(self.authority_name, self.config),
                                         datetime.fromisoformat(row["sent_at"]))
            out = Output(STATUS, mid.encode(), change.to_bytes(),
                         change.kafka_headers(row["source"], previous, reported_by=self.config.id))
            return Emit([out], [lambda: self.store.advance(mid, previous, TOEGEWEZEN)])
        except HubError as error:
            log.warning("email.deadlettered", correlation_id=melding_id, error_class=str(error.error_class.value),
                        reason=error.reason[:300])
            return Emit([dead_letter(record, error, melding_id or _key(record))])
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the worker
            error = BugError.from_exception(exc)
            log.error("email.bug", correlation_id=melding_id, reason=error.reason)
            return Emit([dead_letter(record, error, melding_id or _key(record))])


def _key(record: Record) -> str | None:
    return record.key.decode("utf-8", errors="replace")[:100] if record.key else None


async def run(config: Config, runtime: Runtime) -> None:
    authority = runtime.registry().authority(config.authority)
    key = config.link_key()
    login = config.smtp_login()
    topic = authority_topic(config.authority)
    if runtime.create_topics:
        from hub.settings import HubSettings

        big = {"max.message.bytes": str(HubSettings().topic_max_message_bytes)}
        await ensure_topics(runtime.bootstrap_servers, [topic, STATUS, DEADLETTER], partitions=runtime.partitions,
                            configs={DEADLETTER: big})
    store = Store(config.state_path(runtime.state_dir))
    client = SmtpClient(config.smtp_host, config.smtp_port, config.smtp_security, login, config.timeout_s)
    worker = EmailWorker(config, client, store, key, authority.identifier, authority.name)
    producer = AIOKafkaProducer(bootstrap_servers=runtime.bootstrap_servers, **client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()

    async def report(change: StatusChange, source: str | None, previous: str) -> None:
        await asyncio.wait_for(producer.send_and_wait(
            STATUS, value=change.to_bytes(), key=change.melding_id.encode(),
            headers=list(change.kafka_headers(source, previous, reported_by=config.id)),
        ), 15)

    app = StatusApp(config, store, key, report, authority.identifier).app()
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
    log.info("email.starting", adapter=config.id, host=server.config.host, port=server.config.port)
    try:
        await consume(worker.handle, consumer, producer, stopping, "email", config)
    finally:
        stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(server_task, 10)
        await consumer.stop()
        await producer.stop()
        store.close()
        log.info("email.stopped", adapter=config.id)
