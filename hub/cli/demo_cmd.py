"""``meldhub demo ...``: see the hub work on realistic meldingen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("run")
def run(
    count: Annotated[int, typer.Option(help="Valid meldingen to feed (plus one of each broken kind).")] = 60,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps Kafka's data and the hub log.")] = Path(
        ".run/demo"
    ),
    port: Annotated[int | None, typer.Option(help="Kafka port (default: a free one).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the generated meldingen.")] = None,
) -> None:
    """Start Kafka and the hub, feed meldingen, print what went where, stop everything."""
    from hub.demo_run import run_demo

    if not run_demo(count, workdir, port, seed):
        raise typer.Exit(1)
