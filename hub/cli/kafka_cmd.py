"""``meldhub kafka up|down|status``: a local single-node Apache Kafka without Docker.

Thin wrapper over :class:`hub.kafka_local.LocalKafka`, so the demo, developers and CI
start the same broker (version pinned in ``deploy/kafka/pom.xml``) the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.kafka_local import DEFAULT_PORT, LocalKafka, LocalKafkaError, pinned_version, resolve_jars

app = typer.Typer(no_args_is_help=True)

WorkdirOption = Annotated[
    Path | None,
    typer.Option(
        "--workdir",
        help="Broker work dir (config, data, logs, pid). Default: $MELDHUB_KAFKA_DIR or <project>/.run/kafka.",
    ),
]


@app.command()
def up(
    port: Annotated[int, typer.Option("--port", help="Client (PLAINTEXT) port on 127.0.0.1.")] = DEFAULT_PORT,
    workdir: WorkdirOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait until the broker answers.")] = 90.0,
    controller_port: Annotated[
        int | None, typer.Option("--controller-port", help="KRaft controller port (default: a free one).")
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="SASL/SCRAM-SHA-256 client listener, StandardAuthorizer, deny by default (docs/security.md). "
            "Admin password: $MELDHUB_KAFKA_ADMIN_PASSWORD(_FILE), else generated into <workdir>/admin.password.",
        ),
    ] = False,
    tls: Annotated[
        bool, typer.Option("--tls", help="With --secure: SASL_SSL with a generated local CA (PEM in <workdir>/tls).")
    ] = False,
) -> None:
    """Start the broker (resolving its jars on first use) and wait until it answers metadata."""
    if tls and not secure:
        typer.echo("error: --tls needs --secure", err=True)
        raise typer.Exit(2)
    kafka = LocalKafka(workdir, port=port, controller_port=controller_port, secure=secure, tls=tls)
    current = kafka.status()
    if current["running"]:
        typer.echo(
            f"Kafka {current['version']} is already running at {current['bootstrap']} "
            f"(pid {current['pid']}, work dir {current['workdir']})"
        )
        return
    typer.echo(f"starting Kafka in {kafka.workdir} ...", err=True)
    try:
        bootstrap = kafka.up(timeout=timeout)
    except LocalKafkaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    state = kafka.status()
    typer.echo(f"Kafka {state['version']} is running at {bootstrap} (pid {state['pid']}, work dir {state['workdir']})")
    if secure:
        typer.echo(_secure_hint(kafka))


def _secure_hint(kafka: LocalKafka) -> str:
    """How to connect as the admin; names the password's file or variable, never the password."""
    import os

    from hub.kafka_local import ADMIN_PASSWORD_ENV, ADMIN_PASSWORD_FILE_ENV, ADMIN_USER

    if os.environ.get(ADMIN_PASSWORD_ENV):
        where = f"MELDHUB_KAFKA_SASL_PASSWORD=${ADMIN_PASSWORD_ENV}"
    else:
        source = os.environ.get(ADMIN_PASSWORD_FILE_ENV) or str(kafka.admin_password_file)
        where = f"MELDHUB_KAFKA_SASL_PASSWORD_FILE={source}"
    lines = [
        f"security: {kafka.security_protocol} (SCRAM-SHA-256), StandardAuthorizer, deny unless an ACL allows",
        f"admin password: {where.split('=', 1)[1]}",
        "connect as the admin with:",
        f"  export MELDHUB_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol} MELDHUB_KAFKA_SASL_USERNAME={ADMIN_USER}",
        f"  export {where}",
    ]
    if kafka.tls:
        lines.append(f"  export MELDHUB_KAFKA_SSL_CAFILE={kafka.ca_file}")
    lines.append("then: meldhub acl apply --secrets <file>   (docs/security.md)")
    return "\n".join(lines)


@app.command()
def down(
    workdir: WorkdirOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait after SIGTERM before SIGKILL.")] = 30.0,
) -> None:
    """Stop the broker of this work dir (harmless when it is not running)."""
    kafka = LocalKafka(workdir)
    try:
        stopped = kafka.down(timeout=timeout)
    except LocalKafkaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo("Kafka stopped" if stopped else f"Kafka is not running (work dir {kafka.workdir})")


@app.command()
def status(workdir: WorkdirOption = None) -> None:
    """Print bootstrap, pid, version and work dir; exit 0 when running, 1 when not."""
    state = LocalKafka(workdir).status()
    typer.echo(f"running:   {'yes' if state['running'] else 'no'}")
    typer.echo(f"bootstrap: {state['bootstrap']}")
    typer.echo(f"pid:       {state['pid'] if state['pid'] is not None else '-'}")
    typer.echo(f"version:   {state['version']}")
    typer.echo(f"work dir:  {state['workdir']}")
    typer.echo(f"log:       {state['log']}")
    typer.echo(f"security:  {state.get('security_protocol', 'PLAINTEXT')}")
    raise typer.Exit(0 if state["running"] else 1)


@app.command()
def jars() -> None:
    """Resolve the pinned broker jars from Maven Central (once; cached in deploy/kafka/lib)."""
    try:
        lib = resolve_jars()
    except LocalKafkaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Kafka {pinned_version()} jars in {lib}")
