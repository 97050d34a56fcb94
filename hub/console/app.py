"""The admin console (Starlette + Jinja2, served by uvicorn): ``create_app(bootstrap, users)``.

Pages (Dutch labels; admins are civil servants):

- ``/``                       overview: open dead letters per error class and per destination
- ``/deadletters``            list with filters; admins select and replay in bulk at a rate
- ``/deadletters/<p>/<o>``    one dead letter: headers, SHACL violations against fields, the
                              redacted JSON-LD in an editor → re-validate → replay; discard
- ``/jobs/<id>``              progress of a bulk replay
- ``/audit``                  every admin action (``meldingen.audit``)
- ``/destinations``           backlog per authority topic, oldest waiting message, last error, paused

Security: login with the users file (:mod:`hub.console.auth`), signed session cookie (HttpOnly,
SameSite=strict), a CSRF token on every form, role ``read-only`` gets 403 on every change,
showing personal data is audited before it is shown, strict CSP, no caching of pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub import logs
from hub.audit import AuditAction, AuditEvent
from hub.console.auth import User, UserDB
from hub.deadletters import (
    MAX_RECORD_BYTES,
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetterStore,
    EditCheck,
    EditedInvalid,
    Entry,
    ReplayRefused,
    State,
    parse_when,
    scrub_text,
)
from hub.errors import ErrorClass
from hub.logs import scrub

log = logs.get_logger("hub.console")

HERE = Path(__file__).parent
SECRET_ENV = "MELDHUB_CONSOLE_SECRET"
HTTPS_ENV = "MELDHUB_CONSOLE_HTTPS_ONLY"
SESSION_MAX_AGE = 8 * 3600
MAX_LIST = 500
LOGIN_FAILURES_ALLOWED = 5
LOGIN_LOCKOUT_S = 300.0

try:
    from zoneinfo import ZoneInfo

    LOCAL_TZ: Any = ZoneInfo("Europe/Brussels")
except Exception:  # noqa: BLE001 - no tz database: show UTC
    LOCAL_TZ = UTC

ERROR_CLASS_NL: dict[str, str] = {
    ErrorClass.TOO_LARGE: "Te groot (meer dan 1 MiB)",
    ErrorClass.NOT_UTF8: "Geen UTF-8-tekst",
    ErrorClass.NOT_JSON: "Geen JSON",
    ErrorClass.NOT_JSONLD: "Geen JSON-LD-melding",
    ErrorClass.SHAPE_VIOLATION: "Voldoet niet aan de regels (SHACL)",
    ErrorClass.UNKNOWN_CATEGORY: "Onbekende categorie",
    ErrorClass.MISSING_LOCATION: "Geen locatie",
    ErrorClass.OUTSIDE_REGION: "Buiten het werkgebied",
    ErrorClass.NO_OWNER: "Geen behandelaar gevonden",
    ErrorClass.NOT_A_REFUSAL: "Onvolledige weigering door behandelaar",
    ErrorClass.BUG: "Fout in de hub",
    "vendor-unavailable": "Bestemming niet bereikbaar",
    "vendor-timeout": "Bestemming antwoordt niet op tijd",
    "vendor-auth": "Aanmelden bij bestemming mislukt",
    "vendor-rejected": "Geweigerd door bestemming",
    "vendor-malformed": "Onverwacht antwoord van bestemming",
    "vendor-unknown-status": "Onbekende status van bestemming",
}
RULE_NL = {
    "MinCount": "verplicht",
    "MaxCount": "maximum aantal",
    "Datatype": "gegevenstype",
    "In": "toegelaten waarden",
    "LanguageIn": "taal",
    "MinLength": "niet leeg",
    "NodeKind": "soort waarde",
    "Class": "soort object",
    "Pattern": "formaat",
}
STATE_NL = {"open": "open", "replayed": "opnieuw aangeboden", "discarded": "afgevoerd"}
ACTION_NL = {
    AuditAction.REPLAYED: "opnieuw aangeboden",
    AuditAction.DISCARDED: "afgevoerd",
    AuditAction.REVEALED: "persoonsgegevens getoond",
    AuditAction.EXPORTED: "geëxporteerd",
    AuditAction.LOGIN: "aangemeld",
    AuditAction.LOGIN_FAILED: "aanmelding mislukt",
}
STAGE_NL = {"decode": "inlezen", "validate": "valideren", "route": "routeren", "hub": "hub", "delivery": "leveren"}


class LoginRequired(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# state shared by the requests
# ---------------------------------------------------------------------------------------------
@dataclass
class Job:
    """A bulk replay running in the background of the console."""

    id: str
    by: str
    ids: list[str]
    rate: float
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    results: list[tuple[str, str, str | None]] = field(default_factory=list)
    finished: datetime | None = None
    error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        out = {"replayed": 0, "already-replayed": 0, "refused": 0}
        for _, status, _ in self.results:
            out[status] = out.get(status, 0) + 1
        return out


class Console:
    def __init__(self, bootstrap: str, users: UserDB) -> None:
        self.bootstrap = bootstrap
        self.users = users
        self._store: DeadLetterStore | None = None
        self._store_lock = asyncio.Lock()
        self._validator: Any = None
        self._router: Any = None
        self._router_tried = False
        self._tools_lock = asyncio.Lock()
        self.jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures: dict[str, list[float]] = {}

    async def store(self) -> DeadLetterStore:
        """The dead-letter store, started on first use and brought up to date on every call."""
        async with self._store_lock:
            if self._store is None:
                store = DeadLetterStore(self.bootstrap, channel="console")
                try:
                    await store.start()
                except Exception as e:
                    with contextlib.suppress(Exception):
                        await store.stop()
                    raise HTTPException(503, f"Kafka is niet bereikbaar ({type(e).__name__})") from e
                self._store = store
            else:
                try:
                    await self._store.refresh()
                except Exception as e:
                    raise HTTPException(503, f"Kafka is niet bereikbaar ({type(e).__name__})") from e
            return self._store

    async def validator(self) -> Any:
        async with self._tools_lock:
            if self._validator is None:
                from hub.validation import ShaclValidator

                self._validator = await asyncio.to_thread(ShaclValidator)
            return self._validator

    async def router(self) -> Any:
        """For a route preview after re-validation; None when the registry cannot be loaded here."""
        async with self._tools_lock:
            if not self._router_tried:
                self._router_tried = True
                self._router = await asyncio.to_thread(_make_router)
            return self._router

    def start_job(self, job: Job) -> None:
        self.jobs[job.id] = job

        async def run() -> None:
            try:
                store = await self.store()
                await store.replay_many(
                    job.ids, job.by, rate=job.rate, on_result=lambda i, s, d: job.results.append((i, s, d))
                )
            except Exception as e:  # noqa: BLE001 - shown on the job page
                job.error = f"{type(e).__name__}: {scrub(str(e))[:300]}"
            finally:
                job.finished = datetime.now(UTC)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def login_blocked(self, key: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(key, []) if now - t < LOGIN_LOCKOUT_S]
        self._failures[key] = recent
        return len(recent) >= LOGIN_FAILURES_ALLOWED

    def login_failed(self, key: str) -> None:
        self._failures.setdefault(key, []).append(time.monotonic())

    async def audit_best_effort(self, event: AuditEvent) -> None:
        try:
            async with asyncio.timeout(10):
                await (await self.store()).audit(event)
        except Exception as e:  # noqa: BLE001 - a login is not refused because Kafka is slow
            log.warning("console.audit_failed", action=event.action, error=type(e).__name__)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._store is not None:
            await self._store.stop()
            self._store = None


def _make_router() -> Any:
    try:
        from hub.geo import MunicipalityIndex
        from hub.registry import Registry
        from hub.routing import Router

        return Router(Registry.load(None), MunicipalityIndex.load())
    except Exception:  # noqa: BLE001 - the preview is optional
        return None


def _load_registry() -> Any:
    try:
        from hub.registry import Registry

        return Registry.load(None)
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------------
# helpers for the views
# ---------------------------------------------------------------------------------------------
def local_time(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        from hub.audit import parse_time

        parsed = parse_time(value)
        if parsed is None:
            return value
        value = parsed
    return value.astimezone(LOCAL_TZ).strftime("%d-%m-%Y %H:%M:%S")


def age(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = max(0, int((datetime.now(UTC) - value).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} u"
    return f"{seconds // 86400} d"


def rule_nl(component: str | None) -> str:
    short = (component or "").removesuffix("ConstraintComponent")
    return RULE_NL.get(short, short)


def user_of(request: Request) -> User | None:
    name = request.session.get("user")
    if not name:
        return None
    return request.app.state.console.users.get(name)


def require_user(request: Request) -> User:
    user = user_of(request)
    if user is None:
        raise LoginRequired()
    return user


def require_admin(request: Request) -> User:
    user = require_user(request)
    if not user.is_admin:
        raise HTTPException(403, "Alleen beheerders mogen dit doen; je hebt leesrechten.")
    return user


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData:
    form = await request.form(max_part_size=MAX_RECORD_BYTES + 64 * 1024, max_files=0, max_fields=MAX_LIST + 50)
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        raise HTTPException(403, "Het formulier is verlopen of ongeldig (CSRF). Laad de pagina opnieuw.")
    return form


def flash(request: Request, kind: str, text: str) -> None:
    messages = request.session.get("flash", [])
    messages.append([kind, text])
    request.session["flash"] = messages[-5:]


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    user = user_of(request)
    base = {
        "user": user,
        "csrf": csrf_token(request),
        "flashes": request.session.pop("flash", []),
        "ERROR_CLASS_NL": ERROR_CLASS_NL,
        "STATE_NL": STATE_NL,
        "ACTION_NL": ACTION_NL,
        "STAGE_NL": STAGE_NL,
    }
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code)


def filter_from(params: Any) -> tuple[DeadLetterFilter, dict[str, str], str | None]:
    """A filter from query or form fields; also the values to put back in the form, and a problem."""
    raw = {k: (params.get(k) or "").strip() for k in ("error_class", "source", "destination", "state", "melding_id", "since", "until")}
    problem = None
    try:
        since = _local_when(raw["since"])
        until = _local_when(raw["until"])
    except ValueError as e:
        since = until = None
        problem = str(e)
    states = frozenset({State(raw["state"])}) if raw["state"] in {s.value for s in State} else frozenset()
    flt = DeadLetterFilter(
        error_classes=frozenset({raw["error_class"]}) if raw["error_class"] else frozenset(),
        source=raw["source"] or None,
        destination=raw["destination"] or None,
        since=since,
        until=until,
        melding_id=raw["melding_id"] or None,
        states=states,
    )
    return flt, raw, problem


def _local_when(text: str) -> datetime | None:
    """Form times are Brussels time unless they carry a zone (``datetime-local`` inputs do not)."""
    t = parse_when(text)
    if t is None:
        return None
    if "T" in text and not any(c in text[10:] for c in "+Z") and text[10:].count("-") == 0:
        t = t.replace(tzinfo=LOCAL_TZ)
    return t


# ---------------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------------
async def login_page(request: Request) -> Response:
    if user_of(request) is not None:
        return RedirectResponse("/", 303)
    return render(request, "login.html", {"next": _safe_next(request.query_params.get("next")), "error": None})


async def login_submit(request: Request) -> Response:
    console: Console = request.app.state.console
    form = await checked_form(request)
    name = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    client = request.client.host if request.client else "?"
    key = f"{name.lower()}|{client}"
    if console.login_blocked(key):
        return render(request, "login.html", {"next": target, "error": "Te veel mislukte pogingen. Probeer over enkele minuten opnieuw."}, 429)
    user = await asyncio.to_thread(console.users.authenticate, name, password)
    if user is None:
        console.login_failed(key)
        await console.audit_best_effort(
            AuditEvent(AuditAction.LOGIN_FAILED, scrub(name) or "?", channel="console", details={"client": client})
        )
        return render(request, "login.html", {"next": target, "error": "Onbekende gebruiker of verkeerd wachtwoord."}, 401)
    request.session.clear()
    request.session["user"] = user.name
    request.session["csrf"] = secrets.token_urlsafe(32)
    await console.audit_best_effort(
        AuditEvent(AuditAction.LOGIN, user.name, channel="console", details={"role": user.role, "client": client})
    )
    return RedirectResponse(target, 303)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


async def logout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return RedirectResponse("/login", 303)


async def overview(request: Request) -> Response:
    require_user(request)
    store = await request.app.state.console.store()
    entries = store.entries()
    open_entries = [e for e in entries if e.state is State.OPEN]
    by_class: dict[str, list[Entry]] = {}
    by_dest: dict[str, list[Entry]] = {}
    for e in open_entries:
        by_class.setdefault(e.dead_letter.error_class, []).append(e)
        by_dest.setdefault(e.dead_letter.destination or "", []).append(e)
    matrix: dict[tuple[str, str], int] = {}
    for e in open_entries:
        k = (e.dead_letter.error_class, e.dead_letter.destination or "")
        matrix[k] = matrix.get(k, 0) + 1
    states = {s.value: sum(1 for e in entries if e.state is s) for s in State}
    return render(
        request,
        "overview.html",
        {
            "by_class": sorted(by_class.items(), key=lambda kv: -len(kv[1])),
            "by_dest": sorted(by_dest.items(), key=lambda kv: (kv[0] == "", -len(kv[1]))),
            "matrix": matrix,
            "destinations": sorted(by_dest),
            "states": states,
            "total": len(entries),
            "oldest": lambda es: min(e.dead_letter.timestamp for e in es),
            "local_time": local_time,
            "age": age,
        },
    )


async def list_page(request: Request) -> Response:
    require_user(request)
    store = await request.app.state.console.store()
    flt, values, problem = filter_from(request.query_params)
    entries = store.entries(flt)
    known_classes = sorted({*ERROR_CLASS_NL, *(e.dead_letter.error_class for e in store.entries())})
    return render(
        request,
        "list.html",
        {
            "entries": entries[:MAX_LIST],
            "total": len(entries),
            "open_total": sum(1 for e in entries if e.state is State.OPEN),
            "values": values,
            "problem": problem,
            "classes": known_classes,
            "query": urlencode({k: v for k, v in values.items() if v}),
            "local_time": local_time,
            "max_list": MAX_LIST,
            "scrub": scrub_text,
        },
    )


def _entry_or_404(store: DeadLetterStore, p: int, o: int) -> Entry:
    try:
        return store.get(f"{p}/{o}")
    except DeadLetterNotFound:
        raise HTTPException(404, f"Niet-verwerkte melding {p}/{o} bestaat niet.") from None


def _editor_text(view: Any) -> str:
    if view.payload_kind == "json":
        return json.dumps(view.document, ensure_ascii=False, indent=2)
    return view.payload


def _detail(
    request: Request,
    entry: Entry,
    *,
    revealed: bool = False,
    view: Any = None,
    editor: str | None = None,
    check: EditCheck | None = None,
    status_code: int = 200,
) -> Response:
    view = view or entry.dead_letter.redacted()
    return render(
        request,
        "detail.html",
        {
            "entry": entry,
            "view": view,
            "revealed": revealed,
            "editor": editor if editor is not None else _editor_text(view),
            "check": check,
            "rule_nl": rule_nl,
            "local_time": local_time,
        },
        status_code,
    )


async def detail_page(request: Request) -> Response:
    require_user(request)
    store = await request.app.state.console.store()
    entry = _entry_or_404(store, request.path_params["p"], request.path_params["o"])
    return _detail(request, entry)


async def reveal(request: Request) -> Response:
    user = require_admin(request)
    form = await checked_form(request)
    store = await request.app.state.console.store()
    entry = _entry_or_404(store, request.path_params["p"], request.path_params["o"])
    reason = str(form.get("reason") or "").strip() or None
    try:
        view = await store.reveal(entry, user.name, reason)  # audited first
    except Exception as e:  # noqa: BLE001 - no audit record: nothing is revealed
        flash(request, "error", f"Persoonsgegevens niet getoond: de audit kon niet worden geschreven ({type(e).__name__}).")
        return RedirectResponse(request.url_for("detail", p=entry.dead_letter.partition, o=entry.dead_letter.offset).path, 303)
    return _detail(request, entry, revealed=True, view=view)


async def validate_edit(request: Request) -> Response:
    require_admin(request)
    form = await checked_form(request)
    console: Console = request.app.state.console
    store = await console.store()
    entry = _entry_or_404(store, request.path_params["p"], request.path_params["o"])
    text = str(form.get("document") or "")
    from hub.deadletters import check_edited

    check = check_edited(text, entry.dead_letter, await console.validator(), await console.router())
    return _detail(request, entry, editor=text, check=check, status_code=200 if check.ok else 422)


async def replay(request: Request) -> Response:
    user = require_admin(request)
    form = await checked_form(request)
    console: Console = request.app.state.console
    store = await console.store()
    entry = _entry_or_404(store, request.path_params["p"], request.path_params["o"])
    use_edit = form.get("use_edit") == "1"
    text = str(form.get("document") or "")
    reason = str(form.get("reason") or "").strip() or None
    here = request.url_for("detail", p=entry.dead_letter.partition, o=entry.dead_letter.offset).path
    try:
        if use_edit:
            result = await store.replay(entry.id, user.name, edited=text, validator=await console.validator(), reason=reason)
        else:
            result = await store.replay(entry.id, user.name, reason=reason)
    except EditedInvalid as e:
        flash(request, "error", "Niet opnieuw aangeboden: de aangepaste melding is nog ongeldig.")
        return _detail(request, entry, editor=text, check=e.check, status_code=422)
    except ReplayRefused as e:
        flash(request, "error", f"Niet opnieuw aangeboden: {e}")
        return RedirectResponse(here, 303)
    if result.status == "already-replayed":
        flash(request, "info", f"Was al opnieuw aangeboden door {result.action.by}; er is niets nieuws verstuurd.")
    else:
        flash(request, "ok", f"Opnieuw aangeboden als nieuw bericht {result.new_ref}" + (" (aangepast)." if use_edit else "."))
    return RedirectResponse(here, 303)


async def discard(request: Request) -> Response:
    user = require_admin(request)
    form = await checked_form(request)
    store = await request.app.state.console.store()
    entry = _entry_or_404(store, request.path_params["p"], request.path_params["o"])
    here = request.url_for("detail", p=entry.dead_letter.partition, o=entry.dead_letter.offset).path
    reason = str(form.get("reason") or "").strip()
    if not reason:
        flash(request, "error", "Geef een reden om af te voeren.")
        return RedirectResponse(here, 303)
    try:
        await store.discard(entry.id, user.name, reason)
    except ReplayRefused as e:
        flash(request, "error", f"Niet afgevoerd: {e}")
        return RedirectResponse(here, 303)
    flash(request, "ok", "Afgevoerd. De melding blijft bewaard; de beslissing staat in de auditlog.")
    return RedirectResponse(here, 303)


async def bulk_replay(request: Request) -> Response:
    user = require_admin(request)
    form = await checked_form(request)
    console: Console = request.app.state.console
    store = await console.store()
    try:
        rate = float(str(form.get("rate") or "5").replace(",", "."))
    except ValueError:
        rate = 5.0
    rate = min(max(rate, 0.1), 50.0)
    if form.get("scope") == "filter":
        flt, _, problem = filter_from(form)
        if problem:
            raise HTTPException(400, problem)
        flt = DeadLetterFilter(**{**flt.__dict__, "states": frozenset({State.OPEN})})
        ids = [e.id for e in reversed(store.entries(flt))]
    else:
        ids = [str(i) for i in form.getlist("ids")]
        known = {e.id for e in store.entries()}
        ids = [i for i in ids if i in known]
    if not ids:
        flash(request, "error", "Niets geselecteerd om opnieuw aan te bieden.")
        return RedirectResponse(str(form.get("back") or "/deadletters"), 303)
    job = Job(uuid.uuid4().hex[:12], user.name, ids, rate)
    console.start_job(job)
    return RedirectResponse(f"/jobs/{job.id}", 303)


async def job_page(request: Request) -> Response:
    require_user(request)
    job = request.app.state.console.jobs.get(request.path_params["job"])
    if job is None:
        raise HTTPException(404, "Deze taak bestaat niet (meer).")
    return render(request, "job.html", {"job": job, "local_time": local_time})


async def audit_page(request: Request) -> Response:
    require_user(request)
    console: Console = request.app.state.console
    await console.store()  # creates the topics if needed
    from hub import audit

    events = await audit.read(console.bootstrap, limit=500)
    return render(request, "audit.html", {"events": events, "local_time": local_time})


async def destinations_page(request: Request) -> Response:
    require_user(request)
    console: Console = request.app.state.console
    store = await console.store()
    from hub.console import health

    registry = await asyncio.to_thread(_load_registry)
    try:
        overview_ = await health.compute(console.bootstrap, store.entries(), registry)
    except Exception as e:
        raise HTTPException(503, f"Gezondheid van de bestemmingen niet leesbaar ({type(e).__name__})") from e
    return render(request, "destinations.html", {"o": overview_, "local_time": local_time, "age": age})


async def healthz(request: Request) -> Response:
    return Response("ok", media_type="text/plain")


# ---------------------------------------------------------------------------------------------
# errors and middleware
# ---------------------------------------------------------------------------------------------
async def on_login_required(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        return RedirectResponse("/login?" + urlencode({"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}), 303)
    return Response("Aanmelden vereist", status_code=401, media_type="text/plain")


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {400: "Ongeldige vraag", 403: "Geen toegang", 404: "Niet gevonden", 413: "Te groot", 503: "Niet beschikbaar"}
    return render(
        request,
        "error.html",
        {"status": exc.status_code, "title": titles.get(exc.status_code, "Fout"), "detail": exc.detail},
        exc.status_code,
    )


class SecurityHeaders:
    """Strict CSP (no scripts at all), no framing, no caching of pages with data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault(
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                    "frame-ancestors 'none'; base-uri 'none'",
                )
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("X-Frame-Options", "DENY")
                h.setdefault("Referrer-Policy", "same-origin")
                if not scope["path"].startswith("/static/"):
                    h.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    bootstrap: str,
    users: UserDB,
    *,
    secret: str | None = None,
    https_only: bool | None = None,
) -> Starlette:
    """The console app. ``secret`` signs session cookies (``MELDHUB_CONSOLE_SECRET``; random per
    process when unset: sessions then end when the console restarts)."""
    console = Console(bootstrap, users)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await console.close()

    secure = https_only if https_only is not None else os.environ.get(HTTPS_ENV, "").lower() in ("1", "true", "yes")
    app = Starlette(
        routes=[
            Route("/", overview, name="overview"),
            Route("/login", login_page, methods=["GET"], name="login"),
            Route("/login", login_submit, methods=["POST"]),
            Route("/logout", logout, methods=["POST"], name="logout"),
            Route("/deadletters", list_page, name="list"),
            Route("/deadletters/bulk-replay", bulk_replay, methods=["POST"], name="bulk_replay"),
            Route("/deadletters/{p:int}/{o:int}", detail_page, name="detail"),
            Route("/deadletters/{p:int}/{o:int}/reveal", reveal, methods=["POST"], name="reveal"),
            Route("/deadletters/{p:int}/{o:int}/validate", validate_edit, methods=["POST"], name="validate"),
            Route("/deadletters/{p:int}/{o:int}/replay", replay, methods=["POST"], name="replay"),
            Route("/deadletters/{p:int}/{o:int}/discard", discard, methods=["POST"], name="discard"),
            Route("/jobs/{job}", job_page, name="job"),
            Route("/audit", audit_page, name="audit"),
            Route("/destinations", destinations_page, name="destinations"),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret or os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32),
                session_cookie="meldhub_console",
                max_age=SESSION_MAX_AGE,
                same_site="strict",
                https_only=secure,
            ),
        ],
        exception_handlers={LoginRequired: on_login_required, HTTPException: on_http_error},
        lifespan=lifespan,
    )
    app.state.console = console
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True, undefined=jinja2.StrictUndefined
    )
    app.state.templates = Jinja2Templates(env=env)
    return app
