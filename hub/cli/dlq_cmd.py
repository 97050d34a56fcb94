"""``meldhub dlq ...``: inspect, replay, discard and export dead letters (``docs/deadletters.md``).

Dead letters are never changed: replay produces a new message on ``meldingen.inbound`` and
records the action; discard only records it. Personal data is redacted in every output unless
``--reveal-personal-data`` is given, which is written to the audit trail (``meldingen.audit``)
before anything is shown.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from hub.deadletters import DeadLetterFilter, DeadLetterStore, DeadLetterView, EditCheck, Entry

app = typer.Typer(no_args_is_help=True)

# -- shared options ------------------------------------------------------------------------------
Bootstrap = Annotated[
    str | None, typer.Option("--bootstrap-servers", help="Kafka bootstrap servers (env MELDHUB_BOOTSTRAP_SERVERS).")
]
ErrorClassOpt = Annotated[
    list[str] | None, typer.Option("--error-class", "-e", help="Error class (repeatable), e.g. shape-violation.")
]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Source adapter (shell pattern: meldingsapp-*).")]
DestinationOpt = Annotated[
    str | None, typer.Option("--destination", help="Authority a routed melding failed at (shell pattern).")
]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Dead-lettered at/after: 2026-11-20, 2026-11-20T08:00+01:00, 6h, 2d.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Dead-lettered at/before (same forms as --since).")]
MeldingIdOpt = Annotated[str | None, typer.Option("--melding-id", help="The melding's id (identificator.notatie).")]
StateOpt = Annotated[list[str] | None, typer.Option("--state", help="open, replayed or discarded (repeatable).")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Admin acting (env MELDHUB_ADMIN, else the OS user).")]
RevealOpt = Annotated[
    bool,
    typer.Option("--reveal-personal-data", help="Show personal data unredacted. Audited (meldingen.audit)."),
]
ReasonForRevealOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit trail).")]


def _bootstrap(value: str | None) -> str:
    if value:
        return value
    from hub.settings import HubSettings

    return HubSettings().bootstrap_servers


def _console() -> Console:
    from rich.console import Console

    # Wide output when piped (CI logs, tests): rich would otherwise wrap at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _fail(message: str, code: int = 1) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True, highlight=False, width=200).print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code)


def _filter(
    error_class: list[str] | None,
    source: str | None,
    destination: str | None,
    since: str | None,
    until: str | None,
    melding_id: str | None,
    state: list[str] | None,
    ids: list[str] | None = None,
) -> DeadLetterFilter:
    from hub.deadletters import DeadLetterFilter, State, dead_letter_id, parse_dead_letter_id, parse_when

    try:
        states = frozenset(State(s.strip().lower()) for s in (state or []))
    except ValueError:
        raise _fail(f"--state must be one of: {', '.join(s.value for s in State)}") from None
    try:
        return DeadLetterFilter(
            error_classes=frozenset(c.strip() for c in (error_class or []) if c.strip()),
            source=source,
            destination=destination,
            since=parse_when(since),
            until=parse_when(until),
            melding_id=melding_id,
            states=states,
            ids=frozenset(dead_letter_id(*parse_dead_letter_id(i)) for i in (ids or [])),
        )
    except ValueError as e:
        raise _fail(str(e)) from None


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except (OSError, TimeoutError) as e:
        raise _fail(f"Kafka: {type(e).__name__}: {e}") from None
    except Exception as e:
        if type(e).__module__.startswith("aiokafka"):
            raise _fail(f"Kafka: {type(e).__name__}: {e}") from None
        raise


async def _open(bootstrap: str) -> DeadLetterStore:
    from hub.deadletters import DeadLetterStore

    store = DeadLetterStore(bootstrap, channel="cli")
    await store.start()
    return store


# -- list -----------------------------------------------------------------------------------------
@app.command("list")
def list_(
    error_class: ErrorClassOpt = None,
    source: SourceOpt = None,
    destination: DestinationOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    melding_id: MeldingIdOpt = None,
    state: StateOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (newest first); 0: all.")] = 200,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """List dead letters (newest first) with their state; personal data never shown."""
    from rich.table import Table

    from hub.logs import scrub

    flt = _filter(error_class, source, destination, since, until, melding_id, state)

    async def go() -> list[Entry]:
        store = await _open(_bootstrap(bootstrap_servers))
        try:
            return store.entries(flt)
        finally:
            await store.stop()

    entries = _run(go())
    console = _console()
    shown = entries if limit <= 0 else entries[:limit]
    table = Table(title=f"Dead letters ({len(entries)} matching)", title_justify="left")
    for col, kw in (
        ("id", {"no_wrap": True}),
        ("state", {"no_wrap": True}),
        ("error class", {"no_wrap": True}),
        ("dead-lettered (UTC)", {"no_wrap": True}),
        ("source", {}),
        ("destination", {}),
        ("melding id", {"no_wrap": True}),
        ("reason", {"ratio": 3}),
    ):
        table.add_column(col, **kw)
    for e in shown:
        dl = e.dead_letter
        table.add_row(
            dl.id,
            _state_text(e),
            dl.error_class,
            dl.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            dl.source or "",
            dl.destination or "",
            dl.melding_id or "",
            scrub(dl.reason)[:160],
            style=None,
        )
    console.print(table)
    if len(shown) < len(entries):
        console.print(f"(showing {len(shown)} of {len(entries)}; use --limit 0 for all)")
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.state.value] = counts.get(e.state.value, 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no dead letters")


def _state_text(e: Entry) -> str:
    if e.action is None:
        return e.state.value
    return f"{e.state.value} ({e.action.by})"


# -- show -----------------------------------------------------------------------------------------
@app.command("show")
def show(
    dead_letter: Annotated[str, typer.Argument(help="Dead-letter id <partition>/<offset>, e.g. 0/17.")],
    reveal_personal_data: RevealOpt = False,
    reason: ReasonForRevealOpt = None,
    as_: AsOpt = None,
    payload_only: Annotated[
        bool, typer.Option("--payload-only", help="Print only the payload (JSON-LD to edit and replay with --edited).")
    ] = False,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Headers, SHACL violations against fields, state, and the (redacted) payload."""
    from hub.audit import principal
    from hub.deadletters import DeadLetterNotFound

    by = principal(as_)

    async def go() -> tuple[Entry, DeadLetterView]:
        store = await _open(_bootstrap(bootstrap_servers))
        try:
            entry = store.get(dead_letter)
            if reveal_personal_data:
                view = await store.reveal(entry, by, reason)  # audited before it is shown
            else:
                view = entry.dead_letter.redacted()
            return entry, view
        finally:
            await store.stop()

    try:
        entry, view = _run(go())
    except (DeadLetterNotFound, ValueError) as e:
        raise _fail(str(e)) from None
    if payload_only:
        sys.stdout.write(_payload_for_edit(view) + "\n")
        return
    _print_view(_console(), entry, view, by)


def _payload_for_edit(view: DeadLetterView) -> str:
    if view.payload_kind == "json":
        return json.dumps(view.document, ensure_ascii=False, indent=2)
    return view.payload


def _print_view(console: Console, entry: Entry, view: DeadLetterView, by: str) -> None:
    from rich.table import Table

    if view.revealed:
        console.print(f"[bold red]PERSONAL DATA SHOWN[/bold red] — recorded in the audit trail as {by}")
    console.print(f"[bold]Dead letter {view.ref}[/bold] — {entry.state.value}")
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    if entry.action is not None:
        a = entry.action
        done = f"{a.action} by {a.by} at {a.at}" + (f": {a.reason}" if a.reason else "")
        if a.replay:
            done += f" → {a.replay.get('topic')}/{a.replay.get('partition')}/{a.replay.get('offset')}"
            done += " (edited)" if a.replay.get("edited") else ""
        facts.add_row("action", done)
    for label, value in (
        ("melding id", view.melding_id),
        ("error class", f"{view.error_class} (stage: {view.stage})"),
        ("reason", view.reason),
        ("source", view.source),
        ("destination", view.destination),
        ("original", view.original),
        ("first seen", view.first_seen),
        ("dead-lettered", view.dead_lettered_at),
        ("replayed from", view.replayed_from),
        ("size", f"{view.size:,} bytes ({view.payload_kind})"),
    ):
        if value:
            facts.add_row(label, str(value))
    console.print(facts)

    headers = Table(title="Headers", title_justify="left")
    headers.add_column("header", no_wrap=True)
    headers.add_column("value", overflow="fold")
    for k, v in view.headers.items():
        headers.add_row(k, v if len(v) <= 300 else v[:300] + f"… (+{len(v) - 300} chars)")
    console.print(headers)

    if view.violations:
        console.print(_violations_table(view.violations, "SHACL violations"))
    elif view.details is not None:
        console.print("Details:", json.dumps(view.details, ensure_ascii=False)[:1000], markup=False)

    console.print(
        f"[bold]Payload[/bold] ({'unredacted' if view.revealed else 'personal data redacted'}):",
    )
    console.print(view.payload or "(empty)", markup=False, highlight=False, soft_wrap=True)


def _violations_table(violations: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("problem", ratio=3)
    table.add_column("value", overflow="fold", ratio=2)
    table.add_column("where", overflow="fold", ratio=2)
    for v in violations:
        table.add_row(
            str(v.get("field") or v.get("path") or "(node)"),
            str(v.get("component") or "").removesuffix("ConstraintComponent"),
            str(v.get("message") or ""),
            str(v.get("value") or ""),
            str(v.get("focus_node") or ""),
        )
    return table


# -- replay ---------------------------------------------------------------------------------------
@app.command("replay")
def replay(
    dead_letters: Annotated[
        list[str] | None, typer.Argument(help="Dead-letter ids (<partition>/<offset>); or select with filters.")
    ] = None,
    error_class: ErrorClassOpt = None,
    source: SourceOpt = None,
    destination: DestinationOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    melding_id: MeldingIdOpt = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="With filters: which states (default: open).")
    ] = None,
    edited: Annotated[
        Path | None,
        typer.Option("--edited", help="Replay this corrected JSON-LD instead (one id; validated first; «redacted» values are restored)."),
    ] = None,
    rate: Annotated[float, typer.Option(help="At most this many replays per second (bulk).")] = 5.0,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded with the action).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be replayed.")] = False,
    as_: AsOpt = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Replay dead letters to meldingen.inbound as new messages (idempotent: a dead letter is
    replayed at most once)."""
    from hub.audit import principal

    ids = list(dead_letters or [])
    has_filter = any((error_class, source, destination, since, until, melding_id, state))
    if not ids and not has_filter:
        raise _fail("give dead-letter ids, or a filter (e.g. --error-class no-owner --since 1d)")
    if edited is not None and (len(ids) != 1 or has_filter):
        raise _fail("--edited replays exactly one dead letter: give its id and no filter")
    flt = _filter(error_class, source, destination, since, until, melding_id, state or (["open"] if not ids else None), ids)
    by = principal(as_)
    console = _console()
    edited_text: str | None = None
    if edited is not None:
        try:
            edited_text = edited.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"cannot read {edited}: {e}") from None

    async def go() -> int:
        from hub.deadletters import DeadLetterNotFound, EditedInvalid, ReplayRefused

        store = await _open(_bootstrap(bootstrap_servers))
        try:
            if ids:
                missing = [i for i in flt.ids if i not in {e.id for e in store.entries()}]
                if missing:
                    raise DeadLetterNotFound(f"no dead letter(s): {', '.join(sorted(missing))}")
            # oldest first: replays keep the order in which the meldingen failed
            chosen = list(reversed(store.entries(flt)))
            if dry_run or not chosen:
                for e in chosen:
                    console.print(f"would replay {e.id} ({e.dead_letter.error_class}, {e.state.value})")
                console.print(f"{len(chosen)} dead letter(s) selected" + (" (dry run)" if dry_run else ""))
                return 0
            if edited_text is not None:
                from hub.validation import ShaclValidator

                try:
                    res = await store.replay(chosen[0].id, by, edited=edited_text, validator=ShaclValidator(), reason=reason)
                except EditedInvalid as e:
                    _print_check(console, e.check)
                    console.print(f"[red]refused[/red]: {chosen[0].id} not replayed")
                    return 1
                except ReplayRefused as e:
                    console.print(f"[red]refused[/red] {chosen[0].id}: {e}", markup=True)
                    return 1
                _print_result(console, res.entry.id, res.status, res.new_ref, res.action)
                return 0

            def report(dl_id: str, status: str, detail: str | None) -> None:
                if status == "refused":
                    console.print(f"[red]refused[/red] {dl_id}: {detail}")
                elif status == "already-replayed":
                    console.print(f"already-replayed {dl_id} ({detail})")
                else:
                    console.print(f"{status} {dl_id}" + (f" → {detail}" if detail else ""))

            outcome = await store.replay_many([e.id for e in chosen], by, rate=rate, reason=reason, on_result=report)
            console.print(
                f"{len(outcome.replayed)} replayed, {len(outcome.skipped)} already replayed, {len(outcome.refused)} refused"
            )
            return 1 if outcome.refused else 0
        finally:
            await store.stop()

    try:
        code = _run(go())
    except LookupError as e:
        raise _fail(str(e)) from None
    if code:
        raise typer.Exit(code)


def _print_result(console: Console, dl_id: str, status: str, new_ref: str | None, action: Any) -> None:
    if status == "already-replayed":
        console.print(f"already-replayed {dl_id} (by {action.by} at {action.at}; nothing produced)")
    else:
        console.print(f"replayed {dl_id} → {new_ref}" + (" (edited)" if (action.replay or {}).get("edited") else ""))


def _print_check(console: Console, check: EditCheck) -> None:
    console.print(f"[red]invalid[/red] ({check.error_class}): {check.reason}", soft_wrap=True)
    if check.violations:
        console.print(_violations_table(check.violations, "Violations of the edited melding"))


# -- discard --------------------------------------------------------------------------------------
@app.command("discard")
def discard(
    dead_letters: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids; or select with filters.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why it is not replayed (required; audited).")] = "",
    error_class: ErrorClassOpt = None,
    source: SourceOpt = None,
    destination: DestinationOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    melding_id: MeldingIdOpt = None,
    as_: AsOpt = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Mark dead letters as handled without replaying them. The dead letters stay as they are."""
    from hub.audit import principal
    from hub.deadletters import State

    if not reason.strip():
        raise _fail('a discard needs a reason: --reason "..."')
    ids = list(dead_letters or [])
    has_filter = any((error_class, source, destination, since, until, melding_id))
    if not ids and not has_filter:
        raise _fail("give dead-letter ids, or a filter")
    flt = _filter(error_class, source, destination, since, until, melding_id, None if ids else ["open"], ids)
    by = principal(as_)
    console = _console()

    async def go() -> int:
        from hub.deadletters import ReplayRefused

        store = await _open(_bootstrap(bootstrap_servers))
        failed = 0
        try:
            chosen = list(reversed(store.entries(flt)))
            if ids and len(chosen) < len(flt.ids):
                missing = sorted(flt.ids - {e.id for e in chosen})
                console.print(f"[red]not found[/red]: {', '.join(missing)}")
                failed += len(missing)
            for e in chosen:
                try:
                    action = await store.discard(e.id, by, reason)
                except ReplayRefused as err:
                    console.print(f"[red]refused[/red] {e.id}: {err}")
                    failed += 1
                    continue
                same = e.state is State.DISCARDED
                console.print(f"{'already discarded' if same else 'discarded'} {e.id} (by {action.by}: {action.reason})")
            return 1 if failed else 0
        finally:
            await store.stop()

    code = _run(go())
    if code:
        raise typer.Exit(code)


# -- export ---------------------------------------------------------------------------------------
@app.command("export")
def export(
    format_: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    error_class: ErrorClassOpt = None,
    source: SourceOpt = None,
    destination: DestinationOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    melding_id: MeldingIdOpt = None,
    state: StateOpt = None,
    reveal_personal_data: RevealOpt = False,
    reason: ReasonForRevealOpt = None,
    as_: AsOpt = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Export dead letters (redacted unless --reveal-personal-data) as JSON lines or CSV. Audited."""
    from hub.audit import AuditAction, AuditEvent, principal

    fmt = format_.lower()
    if fmt not in ("jsonl", "csv"):
        raise _fail("--format must be jsonl or csv")
    flt = _filter(error_class, source, destination, since, until, melding_id, state)
    by = principal(as_)

    async def go() -> list[tuple[Entry, DeadLetterView]]:
        store = await _open(_bootstrap(bootstrap_servers))
        try:
            entries = list(reversed(store.entries(flt)))
            action = AuditAction.REVEALED if reveal_personal_data else AuditAction.EXPORTED
            await store.audit(
                AuditEvent(
                    action,
                    by,
                    channel="cli",
                    target=f"export {flt.describe()}",
                    reason=reason,
                    details={"format": fmt, "count": len(entries), "revealed": reveal_personal_data},
                )
            )
            return [(e, e.dead_letter.revealed() if reveal_personal_data else e.dead_letter.redacted()) for e in entries]
        finally:
            await store.stop()

    rows = _run(go())
    text = _jsonl(rows) if fmt == "jsonl" else _csv(rows)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        _console().print(f"exported {len(rows)} dead letter(s) to {output}" + (" (UNREDACTED)" if reveal_personal_data else ""))


def _record(entry: Entry, view: DeadLetterView) -> dict[str, Any]:
    out = view.as_dict(full_document=True)
    out["state"] = entry.state.value
    out["action"] = None
    if entry.action is not None:
        from dataclasses import asdict

        out["action"] = asdict(entry.action)
    if view.payload_kind == "json":
        out.pop("payload", None)  # the document carries it, not shortened
    return out


def _jsonl(rows: list[tuple[Entry, DeadLetterView]]) -> str:
    return "".join(json.dumps(_record(e, v), ensure_ascii=False) + "\n" for e, v in rows)


CSV_COLUMNS = (
    "id", "ref", "state", "error_class", "stage", "reason", "melding_id", "source", "destination", "original",
    "first_seen", "dead_lettered_at", "replayed_from", "violations", "action_by", "action_at", "action_reason",
    "payload",
)  # fmt: skip


def _csv(rows: list[tuple[Entry, DeadLetterView]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for e, v in rows:
        violations = " | ".join(f"{x.get('field') or x.get('path') or 'node'}: {x.get('message')}" for x in v.violations)
        payload = json.dumps(v.document, ensure_ascii=False) if v.payload_kind == "json" else v.payload
        a = e.action
        w.writerow(
            [
                v.id, v.ref, e.state.value, v.error_class, v.stage, v.reason, v.melding_id or "", v.source or "",
                v.destination or "", v.original or "", v.first_seen or "", v.dead_lettered_at, v.replayed_from or "",
                violations, a.by if a else "", a.at if a else "", (a.reason or "") if a else "", payload,
            ]
        )  # fmt: skip
    return buf.getvalue()


# -- console --------------------------------------------------------------------------------------
@app.command("console")
def console(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (env MELDHUB_CONSOLE_PORT).", envvar="MELDHUB_CONSOLE_PORT")] = 8470,
    users: Annotated[
        Path | None, typer.Option(help="Users file: name:role:hash lines (env MELDHUB_CONSOLE_USERS).")
    ] = None,
    bootstrap_servers: Bootstrap = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the admin web console (Dutch UI): dead letters, edit and replay, audit log, destinations."""
    import uvicorn

    from hub.console.app import create_app
    from hub.console.auth import UsersError, load_users_from_env

    try:
        user_db = load_users_from_env(users)
    except UsersError as e:
        raise _fail(str(e)) from None
    application = create_app(_bootstrap(bootstrap_servers), user_db)
    print(f"meldhub console on http://{host}:{port}/ ({len(user_db)} user(s))", flush=True)
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False, server_header=False)


@app.command("console-user")
def console_user(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin or read-only.")] = "read-only",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Print a users-file line (name:role:pbkdf2 hash) for the console's users file."""
    from hub.console.auth import ROLES, UsersError, hash_password, user_line

    if role not in ROLES:
        raise _fail(f"--role must be one of: {', '.join(ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        print(user_line(name, role, hash_password(password)))
    except UsersError as e:
        raise _fail(str(e)) from None
