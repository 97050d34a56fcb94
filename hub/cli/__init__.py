"""The ``meldhub`` command line: one entry point for operators and the demo."""

from __future__ import annotations

import typer

from hub.cli import (
    acl_cmd,
    adapters_cmd,
    demo_cmd,
    dlq_cmd,
    gdpr_cmd,
    hub_cmd,
    kafka_cmd,
    route_cmd,
    status_cmd,
    validate_cmd,
)

app = typer.Typer(
    name="meldhub",
    help="Meldingen Hub: validate, route and dead-letter OSLO meldingen over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka_cmd.app, name="kafka", help="Run a local single-node Apache Kafka (no Docker).")
hub_cmd.app.add_typer(status_cmd.app)
app.add_typer(hub_cmd.app, name="hub", help="Run the hub's stages.")
app.add_typer(demo_cmd.app, name="demo", help="Run the demo: Kafka, the hub and a feed of meldingen.")
app.add_typer(route_cmd.app, name="route", help="Explain and check routing decisions.")
app.add_typer(dlq_cmd.app, name="dlq", help="Inspect, replay, discard and export dead letters.")
app.add_typer(adapters_cmd.app, name="adapters", help="List and check vendor adapters.")
app.add_typer(acl_cmd.app, name="acl", help="Kafka principals, SCRAM users and ACLs from the registry.")
app.add_typer(gdpr_cmd.app, name="gdpr", help="Personal data: erase a reporter's contact details, authority keys.")
app.command("validate", help="Validate melding files against the hub's SHACL shapes.")(validate_cmd.validate)


def main() -> None:
    app()
