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
   is committed. What the system rejects is dead-lettered with its class; an outage or a 401/403
   pauses the destination (the melding stays queued); nothing is lost. The system may answer
   ``{"actie": "weigeren", "reden": …}``: the melding goes back to the hub (:mod:`adapters.refusals`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.base import Runtime, with_retries
from adapters.contact import ContactKeys
from adapters.loop import AuthorityWorker, Context, Emit, Incoming, Publisher, last_status, refuser, run_authority
from adapters.webhook import translate as t
from adapters.webhook.client import WebhookClient
from adapters.webhook.config import Config
from adapters.webhook.server import InboundApp
from adapters.webhook.store import Store
from hub import logs
from hub.pipeline import Output
from hub.status import STATUSES, TOEGEWEZEN, StatusChange
from hub.topics import STATUS, Header

log = logs.get_logger("adapters.webhook")


class WebhookWorker(AuthorityWorker):
    name = "webhook"

    def __init__(self, config: Config, client: WebhookClient, store: Store, authority_iri: str, authority_name: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), contacts: ContactKeys | None = None) -> None:
        super().__init__(config, store, authority_iri, authority_name, clock, contacts)
        self.config: Config = config
        self.store: Store = store
        self.client = client

    async def deliver(self, incoming: Incoming) -> Emit:
        melding, record = incoming.melding, incoming.record
        mid = melding.melding_id
        previous = last_status(melding)
        row = self.store.get(mid)
        if row is None or row["state"] != "delivered":
            attempt = self.store.sending(mid, record.header(Header.SOURCE), previous)
            body = incoming.value  # the routed melding; contact details decrypted for the owner
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


async def run(config: Config, runtime: Runtime) -> None:
    out_key, in_key = config.outbound_key(), config.inbound_key()

    def make(ctx: Context) -> WebhookWorker:
        client = WebhookClient(config.url, out_key, timeout=config.timeout_s)
        store = Store(config.state_path(runtime.state_dir))
        return WebhookWorker(config, client, store, ctx.authority_iri, ctx.authority_name, contacts=ctx.contacts)

    def app(worker: WebhookWorker, publisher: Publisher) -> Any:
        return InboundApp(config, worker.store, in_key, publisher.report, worker.door,
                          refuse=refuser(worker, publisher)).app()

    await run_authority(config, runtime, "webhook", make, app)
