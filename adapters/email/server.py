"""The status form behind the signed link in each e-mail (Starlette), independent of Kafka.

``GET  /status/<token>``  a Dutch page: what the melding is about (category and place only), its
                          current status, and a form with the statuses the receiver may set and an
                          optional note for the citizen;
``POST /status/<token>``  sets the status: a legal life-cycle transition from the status the
                          citizen was last told becomes a status event on ``meldingen.status``
                          (answered after the broker acknowledged it); the same status again without
                          a note changes nothing.

The token is the credential (HMAC-signed, expiring): 403 for a forged or altered one, 410 once it
expired. Pages are ``no-store`` and send no referrer, so the token does not leak from them.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapters.base import door_verdict
from adapters.email import translate as t
from adapters.email.config import Config
from adapters.email.store import Store
from hub import logs
from hub.errors import HubError
from hub.refusal import MAX_REASON_CHARS as REASON_MAX
from hub.status import STATUSES, StatusChange, is_legal

log = logs.get_logger("adapters.email")

Report = Callable[[StatusChange, "str | None", str], Awaitable[None]]
"""Produce a status event (change, source, previous status) and wait for the broker's acknowledgement."""
Refuse = Callable[[str, str], Awaitable[None]]
"""(melding id, reason) → the melding is back with the hub (acknowledged), or an exception."""

REFUSE_CHOICE = "weigeren"
"""The form's value for "niet onze bevoegdheid" (not a status: the melding goes back to the hub)."""

MAX_FORM_BYTES = 16 * 1024
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    doc = (
        "<!DOCTYPE html><html lang=\"nl\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}"
        "label{display:block;margin:.3rem 0}textarea{width:100%}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status_code, headers=HEADERS)


class StatusApp:
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
            Route("/status/{token}", self.status, methods=["GET", "POST"]),
            Route("/health", lambda _: PlainTextResponse("ok"), methods=["GET"]),
        ])

    def _melding(self, token: str, peer: str) -> tuple[str | None, Response | None]:
        try:
            melding_id, _ = t.verify(token, self.key, self.config.id, self.clock())
        except t.LinkExpired:
            return None, _page("Link verlopen", "<p>Deze link is verlopen. Vraag een nieuwe aan bij Meldingen Hub.</p>", 410)
        except t.LinkInvalid:
            self.limiter.hit("auth-failure", peer)  # guessing links is cut off per address
            return None, _page("Ongeldige link", "<p>Deze link is niet geldig.</p>", 403)
        return melding_id, None

    async def status(self, request: Request) -> Response:
        peer = request.client.host if request.client else "unknown"
        wait = door_verdict(self.limiter, peer)
        if wait is not None:
            log.warning("email.rate_limited", retry_after_s=wait)
            response = _page("Te veel verzoeken", f"<p>Te veel verzoeken. Probeer opnieuw over {wait} seconden.</p>", 429)
            response.headers["Retry-After"] = str(wait)
            return response
        melding_id, problem = self._melding(request.path_params["token"], peer)
        if problem is not None:
            return problem
        assert melding_id is not None
        row = self.store.get(melding_id)
        if row is None or row["state"] != "sent":
            return _page("Onbekende melding", "<p>Deze melding is hier niet (meer) bekend.</p>", 404)
        if self.store.kept.handed_over(melding_id):
            return _page("Melding teruggegeven",
                         "<p>Deze melding werd teruggegeven aan Meldingen Hub als niet uw bevoegdheid. "
                         "U hoeft er niets meer mee te doen.</p>", 410)
        if request.method == "POST":
            return await self._set(request, row)
        return self._form(row)

    def _form(self, row: dict, notice: str = "", status_code: int = 200) -> Response:
        current = STATUSES[row["oslo_status"]]
        options = []
        for st in t.choices(self.config):
            disabled = "" if is_legal(current.notation, st.notation) else " disabled"
            options.append(
                f"<label><input type=\"radio\" name=\"status\" value=\"{st.notation}\"{disabled}> "
                f"{html.escape(st.label)} <small>— {html.escape(st.definition)}</small></label>"
            )
        body = (
            (f"<p><strong>{html.escape(notice)}</strong></p>" if notice else "")
            + f"<p>{html.escape(row['summary'])}<br><small>Melding-id {html.escape(row['melding_id'])}</small></p>"
            + f"<p>Huidige status: <strong>{html.escape(current.label)}</strong></p>"
            + "<form method=\"post\"><fieldset><legend>Nieuwe status</legend>" + "".join(options) + self._refuse_option()
            + "</fieldset>"
            + f"<p><label for=\"toelichting\">Toelichting voor de melder (optioneel, max. {self.config.max_note_chars} tekens)</label>"
            + f"<textarea id=\"toelichting\" name=\"toelichting\" rows=\"4\" maxlength=\"{self.config.max_note_chars}\"></textarea></p>"
            + self._reason_field()
            + "<p><button type=\"submit\">Status opslaan</button></p></form>"
        )
        return _page("Status van een melding", body, status_code)

    async def _set(self, request: Request, row: dict) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_FORM_BYTES:
                return _page("Te groot", "<p>Het formulier is te groot.</p>", 413)
        form = parse_qs(raw.decode("utf-8", errors="replace"))
        choice = (form.get("status") or [""])[0].strip()
        note = " ".join((form.get("toelichting") or [""])[0].split())
        if choice == REFUSE_CHOICE and self._refusable():
            return await self._refuse(row, " ".join((form.get("reden") or [""])[0].split()))
        if choice not in self.config.status_choices:
            return self._form(row, "Kies een van de statussen hieronder.", 400)
        if len(note) > self.config.max_note_chars:
            return self._form(row, f"De toelichting is langer dan {self.config.max_note_chars} tekens.", 400)
        melding_id = row["melding_id"]
        async with self._lock:
            row = self.store.get(melding_id) or row
            current = row["oslo_status"]
            new = STATUSES[choice]
            if choice == current and (not note or note == row["status_text"]):
                return _page("Ongewijzigd", f"<p>De status was al <strong>{html.escape(new.label)}</strong>.</p>")
            if not is_legal(current, choice):
                return self._form(
                    row, f"Van {STATUSES[current].label} kan de status niet naar {new.label}.", 409
                )
            change = StatusChange.create(melding_id, new, self.door, t.text_for(new, self.config, note or None), self.clock())
            try:
                await self.report(change, row["source"], current)
            except Exception as exc:  # noqa: BLE001 - broker trouble: nothing changed, the receiver retries
                log.warning("email.status_report_failed", correlation_id=melding_id, error=type(exc).__name__)
                return _page("Niet gelukt", "<p>De status kon nu niet worden doorgegeven. Probeer het later opnieuw.</p>", 503)
            self.store.advance(melding_id, current, choice, note or None)
        log.info("email.status_set", correlation_id=melding_id, status=choice, previous=current)
        return _page(
            "Status opgeslagen",
            f"<p>De status van de melding is nu <strong>{html.escape(new.label)}</strong>. De melder wordt op de hoogte gebracht.</p>",
        )

    # -- "niet onze bevoegdheid" ----------------------------------------------------------------
    def _refusable(self) -> bool:
        return self.config.allow_refusal and self.refuse is not None

    def _refuse_option(self) -> str:
        if not self._refusable():
            return ""
        return (
            f"<label><input type=\"radio\" name=\"status\" value=\"{REFUSE_CHOICE}\"> Niet onze bevoegdheid "
            "<small>— de melding gaat terug naar Meldingen Hub, die de juiste behandelaar zoekt; "
            "geef hieronder de reden</small></label>"
        )

    def _reason_field(self) -> str:
        if not self._refusable():
            return ""
        return (
            f"<p><label for=\"reden\">Reden waarom dit niet uw bevoegdheid is (bij 'Niet onze bevoegdheid'; "
            f"geen persoonsgegevens, max. {REASON_MAX} tekens)</label>"
            f"<input id=\"reden\" name=\"reden\" type=\"text\" maxlength=\"{REASON_MAX}\" style=\"width:100%\"></p>"
        )

    async def _refuse(self, row: dict, reason: str) -> Response:
        if not reason or len(reason) > REASON_MAX:
            return self._form(row, f"Geef in één regel (max. {REASON_MAX} tekens) de reden waarom dit niet uw bevoegdheid is.", 400)
        melding_id = row["melding_id"]
        assert self.refuse is not None
        async with self._lock:
            if self.store.kept.handed_over(melding_id):
                return _page("Melding teruggegeven", "<p>Deze melding was al teruggegeven aan Meldingen Hub.</p>")
            try:
                await self.refuse(melding_id, reason)
            except HubError as exc:
                log.warning("email.refusal_impossible", correlation_id=melding_id, reason=exc.reason[:300])
                return _page("Niet gelukt", "<p>Deze melding kan niet automatisch worden teruggegeven. "
                                            "Neem contact op met de beheerders van Meldingen Hub.</p>", 409)
            except Exception as exc:  # noqa: BLE001 - broker trouble: nothing changed, the receiver retries
                log.warning("email.refusal_failed", correlation_id=melding_id, error=type(exc).__name__)
                return _page("Niet gelukt", "<p>De melding kon nu niet worden teruggegeven. Probeer het later opnieuw.</p>", 503)
        return _page(
            "Melding teruggegeven",
            "<p>De melding werd teruggegeven aan Meldingen Hub. Die zoekt de juiste behandelaar en brengt de melder "
            "op de hoogte. U hoeft er niets meer mee te doen.</p>",
        )
