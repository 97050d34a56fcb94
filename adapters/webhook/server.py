"""The inbound webhook (Starlette): a home-grown system POSTs a status change, signed.

Order of checks: size (413) → signature and its time window (401) → replay of an accepted
signature (409) → JSON and fields (400/422) → a melding this adapter delivered (404) → a legal
life-cycle transition from the status the citizen was last told (422) → the status event on
``meldingen.status``, answered 202 after the broker acknowledged it (503 if it could not be: the
signature is then released, the same request may be sent again). The same status again with the
same text is 200 ``unchanged``. Answers are JSON ``{"result": …}`` or ``{"error": …}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from adapters.base import door_verdict
from adapters.webhook import translate as t
from adapters.webhook.config import Config
from adapters.webhook.store import Store
from hub import logs
from hub.errors import HubError
from hub.status import STATUSES, StatusChange, is_legal

log = logs.get_logger("adapters.webhook")

Report = Callable[[StatusChange, "str | None", str], Awaitable[None]]
Refuse = Callable[[str, str], Awaitable[None]]
"""(melding id, reason) → the melding is back with the hub (acknowledged), or an exception."""


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


class InboundApp:
    def __init__(self, config: Config, store: Store, key: bytes, report: Report, door: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), refuse: Refuse | None = None) -> None:
        self.refuse = refuse
        self.config = config
        self.store = store
        self.key = key
        self.report = report
        self.door = door
        self.clock = clock
        self._lock = asyncio.Lock()
        self.limiter = config.limiter()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(self.config.status_path, self.receive, methods=["POST"]),
            Route("/health", lambda _: PlainTextResponse("ok"), methods=["GET"]),
        ])

    async def receive(self, request: Request) -> JSONResponse:
        peer = request.client.host if request.client else "unknown"
        wait = door_verdict(self.limiter, peer)
        if wait is not None:
            log.warning("webhook.rate_limited", retry_after_s=wait)
            response = _error(429, f"too many requests or bad signatures from this address; retry after {wait} s")
            response.headers["Retry-After"] = str(wait)
            return response
        limit = self.config.max_body_bytes
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, f"body over {limit} bytes")
        now = self.clock()
        try:
            ts, sig = t.verify(request.headers.get(t.SIGNATURE_HEADER), self.key, body, now, self.config.tolerance_s)
        except t.BadSignature as e:
            self.limiter.hit("auth-failure", peer)
            log.warning("webhook.bad_signature", reason=str(e))
            return _error(401, f"signature refused: {e}")
        if not self.store.accept_signature(sig, ts, int(now.timestamp()) - 2 * self.config.tolerance_s):
            log.warning("webhook.replayed_signature")
            return _error(409, "this signature was already used; sign every request anew")
        try:
            doc = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        try:
            incoming = t.parse_incoming(doc, self.config, now)
        except t.BadStatus as e:
            return _error(422, str(e))
        async with self._lock:
            row = self.store.get(incoming.melding_id)
            if row is None or row["state"] != "delivered":
                return _error(404, "no melding with this id was delivered to you")
            if self.store.kept.handed_over(incoming.melding_id):
                return _error(410, "this melding was given back to the hub; it is no longer yours")
            if isinstance(incoming, t.IncomingRefusal):
                return await self._refuse(incoming, sig)
            current, new = row["oslo_status"], incoming.status
            if new.notation == current and incoming.text == row["status_text"]:
                return JSONResponse({"result": "unchanged", "status": new.notation})
            if not is_legal(current, new.notation):
                return _error(422, f"status change {STATUSES[current]} → {new} is not allowed")
            change = StatusChange.create(incoming.melding_id, new, self.door,
                                         t.text_for(new, self.config, incoming.text), incoming.when or now)
            try:
                await self.report(change, row["source"], current)
            except Exception as exc:  # noqa: BLE001 - broker trouble: nothing changed, the sender retries
                self.store.db.execute("DELETE FROM signatures WHERE signature = ?", (sig,))
                log.warning("webhook.status_report_failed", correlation_id=incoming.melding_id, error=type(exc).__name__)
                return _error(503, "the hub cannot take the status right now; try again later")
            self.store.advance(incoming.melding_id, current, new.notation, incoming.text)
        log.info("webhook.status_received", correlation_id=incoming.melding_id, status=new.notation, previous=current)
        return JSONResponse({"result": "accepted", "status": new.notation, "event": change.event_id}, status_code=202)

    async def _refuse(self, incoming: t.IncomingRefusal, sig: str) -> JSONResponse:
        """"Not ours": the melding goes back to the hub, which finds the next owner and tells the citizen."""
        if self.refuse is None:
            return _error(422, "refusals are not accepted by this adapter")
        try:
            await self.refuse(incoming.melding_id, incoming.reason)
        except HubError as exc:  # the adapter no longer has the melding as it received it
            self.store.db.execute("DELETE FROM signatures WHERE signature = ?", (sig,))
            log.warning("webhook.refusal_impossible", correlation_id=incoming.melding_id, reason=exc.reason[:300])
            return _error(409, "this melding cannot be given back automatically; contact the hub's administrators")
        except Exception as exc:  # noqa: BLE001 - broker trouble: nothing changed, the sender retries
            self.store.db.execute("DELETE FROM signatures WHERE signature = ?", (sig,))
            log.warning("webhook.refusal_failed", correlation_id=incoming.melding_id, error=type(exc).__name__)
            return _error(503, "the hub cannot take the refusal right now; try again later")
        return JSONResponse({"result": "refused", "melding_id": incoming.melding_id}, status_code=202)
