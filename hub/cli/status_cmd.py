"""``meldhub hub status-run``: the status stage (``meldingen.status`` → ``meldingen.status.<source>``).

Mounted under ``meldhub hub`` (``hub_cmd.app.add_typer(status_cmd.app)`` in ``hub/cli/__init__.py``);
also runnable as ``python -m hub.cli.status_cmd [OPTIONS]`` until it is mounted.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from hub import logs

app = typer.Typer(no_args_is_help=True)


@app.command("status-run")
def status_run(
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (env MELDHUB_BOOTSTRAP_SERVERS).")
    ] = None,
    group_id: Annotated[str | None, typer.Option(help="Consumer group; start more workers to scale out.")] = None,
    create_topics: Annotated[bool, typer.Option(help="Create meldingen.status and each channel's status topic.")] = True,
    shacl: Annotated[bool, typer.Option(help="Validate each event against the hub's Meldingstatus shape.")] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
) -> None:
    """Consume meldingen.status, validate each status event and forward it to its channel's topic."""
    from hub.status_service import StatusSettings, serve

    overrides: dict[str, object] = {"create_topics": create_topics, "log_level": log_level, "shacl": shacl}
    if bootstrap_servers:
        overrides["bootstrap_servers"] = bootstrap_servers
    if group_id:
        overrides["group_id"] = group_id
    settings = StatusSettings(**overrides)
    logs.configure(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    app()
