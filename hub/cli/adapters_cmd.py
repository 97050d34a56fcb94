"""``meldhub adapters ...``: list, check, and run vendor adapters (``docs/adapters.md``).

- ``list``  — installed adapters (folders under ``adapters/``) and the configured instances of
  the region's ``adapters.yaml``, with whether their secrets are set;
- ``check`` — every vendor status mapped, every mapped change a legal transition of the status
  life cycle (``hub/status.py``), authorities known to the registry; exit 1 on any problem;
- ``serve ADAPTER`` / ``run ADAPTER`` — start an adapter's service (the HTTP endpoint of a
  channel such as Open311, the worker of an authority's system such as TOPdesk). ADAPTER is an
  adapter id, or a vendor name when exactly one such adapter is configured.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="adapters.yaml (env MELDHUB_ADAPTERS; default: the example region's).")
]
RegistryOpt = Annotated[Path | None, typer.Option("--registry", help="Authority registry YAML (env MELDHUB_REGISTRY).")]


def _console():  # noqa: ANN202
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _load(config: Path | None):  # noqa: ANN202
    from adapters import registry

    try:
        return registry.load(config)
    except registry.AdapterConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@app.command("list")
def list_adapters(config: ConfigOpt = None) -> None:
    """Show installed adapters and the configured instances."""
    from rich.table import Table

    from adapters import registry

    console = _console()
    table = Table(title="Installed adapters (adapters/<vendor>/ with client, translate, config)", title_justify="left")
    for col in ("vendor", "role", "folder", "service"):
        table.add_column(col)
    for a in registry.installed().values():
        table.add_row(a.vendor, a.role, str(a.path.relative_to(registry.PROJECT_ROOT)), "yes" if a.has_service else "—")
    console.print(table)

    configured = _load(config)
    table = Table(title=f"Configured adapters ({config or registry.default_config_path()})", title_justify="left")
    for col in ("id", "vendor", "role", "enabled", "serves", "secrets", "problem"):
        table.add_column(col)
    for c in configured:
        serves = "—"
        if c.config is not None:
            authority = getattr(c.config, "authority", None)
            serves = f"authority {authority}" if authority else f"port {getattr(c.config, 'port', '?')}"
        missing = c.missing_secrets()
        secrets = "—" if c.config is None or not c.config.secret_envs() else ("set" if not missing else "missing: " + ", ".join(missing))
        table.add_row(
            c.id,
            c.vendor,
            c.installed.role if c.installed else "?",
            "yes" if c.enabled else "no",
            serves,
            secrets,
            c.error or "",
        )
    console.print(table)


@app.command("check")
def check(
    config: ConfigOpt = None,
    registry_path: RegistryOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the life cycle and each mapping.")] = False,
) -> None:
    """Prove every vendor status is mapped and every mapped change is a legal life-cycle transition."""
    from rich.table import Table

    from adapters import registry
    from hub.registry import Registry, RegistryError
    from hub.status import STATUSES, lifecycle_rows

    console = _console()
    configured = _load(config)
    try:
        reg = Registry.load(registry_path)
    except RegistryError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if verbose:
        table = Table(title="Status life cycle (hub/status.py)", title_justify="left")
        for col in ("MeldingStatuswaarde", "Vlaamse fase", "Vlaamse code", "kind", "allowed next"):
            table.add_column(col)
        for row in lifecycle_rows():
            table.add_row(*row)
        console.print(table)
        for c in configured:
            if c.config is None or c.installed is None:
                continue
            mapping = c.installed.module("translate").status_mapping(c.config)
            table = Table(title=f"{c.id}: {mapping.vendor} status → MeldingStatuswaarde", title_justify="left")
            table.add_column(f"{mapping.vendor} status")
            table.add_column("MeldingStatuswaarde")
            for vendor_status, notation in mapping.to_oslo.items():
                table.add_row(vendor_status, str(STATUSES[notation]) if notation in STATUSES else "(no change)")
            console.print(table)
    refusals = registry.refusals(configured)
    if verbose:
        table = Table(title='Refusal ("not ours" → meldingen.refusals, re-routed by the hub)', title_justify="left")
        for col in ("adapter", "how the system says it", "reason sent"):
            table.add_column(col)
        for aid, rows in refusals.items():
            for how, reason in rows or [("(none: the system cannot refuse)", "—")]:
                table.add_row(aid, how, reason)
        console.print(table)
    problems = registry.check(configured, reg)
    total = 0
    for name, found in problems.items():
        if found:
            total += len(found)
            console.print(f"[red]✗[/] {name}")
            for p in found:
                console.print(f"    - {p}")
        else:
            console.print(f"[green]✓[/] {name}")
        if name in refusals:
            ways = "; ".join(how for how, _ in refusals[name]) or "none configured (the system cannot say 'not ours')"
            console.print(f"    refusal: {ways}")
    if total:
        console.print(f"{total} problem(s)")
        raise typer.Exit(1)
    console.print("all adapters sound: every vendor status mapped, every mapped change a legal transition")


def _start(
    adapter: str,
    config: Path | None,
    registry_path: Path | None,
    bootstrap_servers: str | None,
    state_dir: Path | None,
    host: str | None,
    port: int | None,
    create_topics: bool,
    log_level: str,
) -> None:
    from adapters import registry
    from adapters.base import MissingSecret, Runtime
    from hub import logs
    from hub.settings import HubSettings

    configured = _load(config)
    try:
        found = registry.find(configured, adapter)
    except LookupError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if found.error or found.config is None or found.installed is None:
        typer.echo(f"error: {found.error}", err=True)
        raise typer.Exit(2)
    if not found.installed.has_service:
        typer.echo(f"error: the {found.vendor} adapter has no service to run", err=True)
        raise typer.Exit(2)
    problems = [p for p in registry.check([found]).get(found.id, [])]
    if problems:
        typer.echo(f"error: {found.id} fails `meldhub adapters check`:\n  - " + "\n  - ".join(problems), err=True)
        raise typer.Exit(2)
    logs.configure(log_level)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per vendor call is noise; errors are logged by the adapter
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    settings = HubSettings(**({"bootstrap_servers": bootstrap_servers} if bootstrap_servers else {}))
    runtime = Runtime(
        bootstrap_servers=settings.bootstrap_servers,
        state_dir=state_dir or Path(os.environ.get("MELDHUB_STATE_DIR", ".run/adapters")),
        registry_path=registry_path,
        create_topics=create_topics,
        partitions=settings.partitions,
        host=host,
        port=port,
    )
    service = found.installed.module("service")
    try:
        asyncio.run(service.run(found.config, runtime))
    except MissingSecret as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


BootstrapOpt = Annotated[str | None, typer.Option(help="Kafka bootstrap servers (env MELDHUB_BOOTSTRAP_SERVERS).")]
StateDirOpt = Annotated[Path | None, typer.Option(help="Adapter state (SQLite) directory (env MELDHUB_STATE_DIR; default .run/adapters).")]


@app.command("serve")
def serve(
    adapter: Annotated[str, typer.Argument(help="Adapter id (e.g. open311-zwvl) or vendor (open311).")],
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: the adapter's config).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: the adapter's config).")] = None,
    config: ConfigOpt = None,
    registry_path: RegistryOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    state_dir: StateDirOpt = None,
    create_topics: Annotated[bool, typer.Option(help="Create the topics the adapter uses.")] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
) -> None:
    """Serve a channel adapter's endpoint (e.g. Open311 GeoReport v2)."""
    _start(adapter, config, registry_path, bootstrap_servers, state_dir, host, port, create_topics, log_level)


@app.command("run")
def run(
    adapter: Annotated[str, typer.Argument(help="Adapter id (e.g. topdesk-kortrijk) or vendor (topdesk).")],
    config: ConfigOpt = None,
    registry_path: RegistryOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    state_dir: StateDirOpt = None,
    create_topics: Annotated[bool, typer.Option(help="Create the topics the adapter uses.")] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
) -> None:
    """Run an adapter's worker (e.g. TOPdesk: authority topic → incidents, status back)."""
    _start(adapter, config, registry_path, bootstrap_servers, state_dir, None, None, create_topics, log_level)
