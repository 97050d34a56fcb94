"""``meldhub acl apply|show|plan``: principals, SCRAM users, ACLs and topic configs from the registry.

Connects as the admin with the ``MELDHUB_KAFKA_*`` settings (:mod:`hub.kafka_auth`), e.g. for the
local secure broker::

    export MELDHUB_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT MELDHUB_KAFKA_SASL_USERNAME=admin
    export MELDHUB_KAFKA_SASL_PASSWORD_FILE=.run/kafka/admin.password
    meldhub acl apply --secrets secrets/kafka-users.yaml

Passwords are read from ``$MELDHUB_KAFKA_PASSWORD_<USER>`` or the secrets file; they are never
printed. See docs/security.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hub import acl
from hub.kafka_auth import KafkaAuthError, confluent_config

app = typer.Typer(no_args_is_help=True, help="Kafka principals and ACLs: who may read and write which topic.")

BootstrapOption = Annotated[
    str,
    typer.Option(
        "--bootstrap-servers",
        envvar=["MELDHUB_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"],
        help="Kafka bootstrap servers.",
    ),
]
RegistryOption = Annotated[
    Path | None, typer.Option("--registry", help="Authority registry (default: $MELDHUB_REGISTRY or the example region).")
]
AdaptersOption = Annotated[
    Path | None, typer.Option("--adapters", help="Adapters file (default: $MELDHUB_ADAPTERS or the example region).")
]
RetentionOption = Annotated[
    list[str] | None,
    typer.Option("--retention", help="Authority topic retention per agreement, as <authority>=<days> (repeatable)."),
]


def _plan(registry: Path | None, adapters: Path | None, retention: list[str] | None) -> acl.Plan:
    from hub.registry import Registry, RegistryError
    from hub.settings import HubSettings

    try:
        reg = Registry.load(registry)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    days: dict[str, int] = {}
    for item in retention or []:
        name, _, value = item.partition("=")
        if not value.isdigit() or int(value) < 1:
            raise _fail(f"--retention {item!r}: expected <authority>=<days>")
        days[name] = int(value)
    unknown = sorted(set(days) - {a.id for a in reg.authorities})
    if unknown:
        raise _fail(f"--retention names unknown authorities: {', '.join(unknown)}")
    try:
        return acl.plan(
            [a.id for a in reg.authorities],
            acl.adapters_from_file(adapters),
            authority_retention_days=days,
            max_message_bytes=HubSettings().topic_max_message_bytes,
        )
    except (acl.AclError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _admin(bootstrap: str) -> object:
    try:
        return acl.admin_client(bootstrap, confluent_config())
    except KafkaAuthError as exc:
        raise _fail(str(exc)) from None


@app.command("plan")
def plan_cmd(
    registry: RegistryOption = None,
    adapters: AdaptersOption = None,
    retention: RetentionOption = None,
) -> None:
    """Print the principals, ACLs and topic configs the registry asks for (no cluster needed)."""
    wanted = _plan(registry, adapters, retention)
    for p in wanted.principals:
        typer.echo(f"{p.principal}  ({p.role}: {p.subject})")
        for binding in wanted.for_user(p.user):
            typer.echo(f"    {binding.operation:<16} {binding.resource_type.lower()}:{binding.name}"
                       f"{'*' if binding.pattern == 'PREFIXED' else ''}")  # fmt: skip
    typer.echo("topics:")
    for name, config in sorted(wanted.topics.items()):
        typer.echo(f"    {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(config.items())))


@app.command()
def apply(
    bootstrap_servers: BootstrapOption = "127.0.0.1:9092",
    registry: RegistryOption = None,
    adapters: AdaptersOption = None,
    secrets: Annotated[
        Path | None,
        typer.Option("--secrets", envvar=acl.SECRETS_FILE_ENV, help="YAML {user: password} (mode 0600)."),
    ] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Delete ACLs and users of principals no longer planned.")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="Reset existing users' passwords from the secrets.")] = False,
    topics: Annotated[bool, typer.Option("--topics/--no-topics", help="Create topics and align their configs.")] = True,
    partitions: Annotated[int, typer.Option("--partitions", envvar="MELDHUB_PARTITIONS")] = 3,
    replication_factor: Annotated[int, typer.Option("--replication-factor", envvar="MELDHUB_REPLICATION_FACTOR")] = 1,
    retention: RetentionOption = None,
) -> None:
    """Provision SCRAM users, ACLs and topics so each party reads only what is its own. Idempotent."""
    wanted = _plan(registry, adapters, retention)
    try:
        loaded = acl.load_secrets(secrets)
        report = acl.apply(
            _admin(bootstrap_servers),
            wanted,
            secrets=loaded,
            env=os.environ,
            prune=prune,
            rotate=rotate,
            topics=topics,
            partitions=partitions,
            replication_factor=replication_factor,
        )
    except acl.AclError as exc:
        raise _fail(str(exc)) from None
    for name in report.topics_created:
        typer.echo(f"created topic   {name}")
    for name, changed in sorted(report.configs_changed.items()):
        typer.echo(f"configured      {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
    for user in report.users_created:
        typer.echo(f"created user    {user}")
    for user in report.users_updated:
        typer.echo(f"new password    {user}")
    for binding in report.created:
        typer.echo(f"allowed         {binding}")
    for binding in report.deleted:
        typer.echo(f"revoked         {binding}")
    for user in report.users_deleted:
        typer.echo(f"deleted user    {user}")
    for binding in report.stale:
        typer.echo(f"stale (--prune) {binding}")
    for user in report.users_stale:
        typer.echo(f"stale user      {user} (--prune deletes it)")
    for user in report.users_without_password:
        typer.echo(
            f"no password     {user}: set ${acl.password_env(user)} or add it to the secrets file "
            "(ACLs are in place; the user cannot log in yet)",
            err=True,
        )
    typer.echo("changed" if report.changed else "nothing to change")


@app.command()
def show(bootstrap_servers: BootstrapOption = "127.0.0.1:9092") -> None:
    """List every ACL binding and every SCRAM user on the cluster."""
    try:
        bindings, users = acl.show(_admin(bootstrap_servers))
    except acl.AclError as exc:
        raise _fail(str(exc)) from None
    for binding in bindings:
        typer.echo(str(binding))
    typer.echo("users:")
    for user, mechanisms in sorted(users.items()):
        typer.echo(f"    {user}: {', '.join(mechanisms)}")
