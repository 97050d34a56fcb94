"""``meldhub hub ...``: run the hub's stages as a member of a Kafka consumer group."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from hub import logs

app = typer.Typer(no_args_is_help=True)


@app.command("run")
def run(
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (env MELDHUB_BOOTSTRAP_SERVERS).")
    ] = None,
    registry: Annotated[Path | None, typer.Option(help="Authority registry YAML (env MELDHUB_REGISTRY).")] = None,
    group_id: Annotated[str | None, typer.Option(help="Consumer group; start more workers to scale out.")] = None,
    create_topics: Annotated[bool, typer.Option(help="Create missing topics at start.")] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
) -> None:
    """Consume meldingen.inbound, validate, route and forward every melding; dead-letter the rest."""
    from hub.service import serve
    from hub.settings import HubSettings

    overrides: dict[str, object] = {"create_topics": create_topics, "log_level": log_level}
    if bootstrap_servers:
        overrides["bootstrap_servers"] = bootstrap_servers
    if registry:
        overrides["registry"] = registry
    if group_id:
        overrides["group_id"] = group_id
    settings = HubSettings(**overrides)
    logs.configure(settings.log_level)
    asyncio.run(serve(settings))
