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
   (5xx) are dead-lettered with their class; authentication failures and exhausted retries pause
   the destination (the melding stays queued); nothing is lost. The form also offers
   "Niet onze bevoegdheid": the melding goes back to the hub (:mod:`adapters.refusals`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.base import Runtime, with_retries
from adapters.contact import ContactKeys
from adapters.email import translate as t
from adapters.email.client import SmtpClient
from adapters.email.config import Config
from adapters.email.server import StatusApp
from adapters.email.store import Store
from adapters.loop import AuthorityWorker, Context, Emit, Incoming, Publisher, last_status, refuser, run_authority
from hub import logs
from hub.pipeline import Output
from hub.status import STATUSES, TOEGEWEZEN, StatusChange
from hub.topics import STATUS, Header

log = logs.get_logger("adapters.email")


class EmailWorker(AuthorityWorker):
    name = "email"

    def __init__(self, config: Config, client: SmtpClient, store: Store, key: bytes, authority_iri: str,
                 authority_name: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 contacts: ContactKeys | None = None) -> None:
        super().__init__(config, store, authority_iri, authority_name, clock, contacts)
        self.config: Config = config
        self.store: Store = store
        self.client = client
        self.key = key

    async def deliver(self, incoming: Incoming) -> Emit:
        melding, record = incoming.melding, incoming.record
        mid = melding.melding_id
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


async def run(config: Config, runtime: Runtime) -> None:
    key = config.link_key()
    login = config.smtp_login()

    def make(ctx: Context) -> EmailWorker:
        client = SmtpClient(config.smtp_host, config.smtp_port, config.smtp_security, login, config.timeout_s)
        store = Store(config.state_path(runtime.state_dir))
        return EmailWorker(config, client, store, key, ctx.authority_iri, ctx.authority_name, contacts=ctx.contacts)

    def app(worker: EmailWorker, publisher: Publisher) -> Any:
        return StatusApp(config, worker.store, key, publisher.report, worker.door, refuse=refuser(worker, publisher)).app()

    await run_authority(config, runtime, "email", make, app)

