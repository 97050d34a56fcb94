"""``meldhub gdpr erase|keygen``: crypto-shred a reporter's contact details; make authority keys.

``erase`` writes a tombstone for the melding's key record on ``meldingen.keys`` and an audit
record (who, when, why — no personal data) on ``meldingen.audit``, in one transaction. From then
on no reader can decrypt that melding's ``melder``; other meldingen are unaffected. It connects
with the ``MELDHUB_KAFKA_*`` settings (:mod:`hub.kafka_auth`). See docs/security.md.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Annotated

import typer

from hub import privacy
from hub.kafka_auth import KafkaAuthError, client_kwargs

app = typer.Typer(no_args_is_help=True, help="Personal data: erase a reporter's contact details, manage keys.")


@app.command()
def erase(
    melding_id: Annotated[str, typer.Argument(help="The melding's id (identificator.notatie).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: the request's reference, never the person's details.")],
    by: Annotated[str | None, typer.Option("--by", help="Who erases (default: the Kafka user, $MELDHUB_ADMIN or the OS user).")] = None,
    bootstrap_servers: Annotated[
        str, typer.Option("--bootstrap-servers", envvar=["MELDHUB_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"])
    ] = "127.0.0.1:9092",
) -> None:
    """Make the reporter's contact details of one melding unrecoverable (tombstone + audit)."""
    try:
        auth = client_kwargs()
        done = asyncio.run(privacy.erase(bootstrap_servers, melding_id, reason=reason, by=by, auth=auth))
    except (KafkaAuthError, privacy.PrivacyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - broker errors: Kafka's text names topics and codes only
        from aiokafka.errors import KafkaError

        detail = f": {str(exc)[:200]}" if isinstance(exc, KafkaError) else ""
        typer.echo(
            f"error: erasing {melding_id} failed ({type(exc).__name__}{detail}); the transaction was not committed",
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(
        f"erased the contact details of melding {done.melding_id} "
        f"({privacy.KEYS} partition {done.keys_partition} offset {done.keys_offset}; audited as {done.by} at {done.at})"
    )


@app.command()
def keygen(
    authority: Annotated[str, typer.Argument(help="The authority id (registry) the key pair is for.")],
    private_key_file: Annotated[Path, typer.Option("--private-key-file", help="Where to write the private key (0600).")],
) -> None:
    """Make an X25519 key pair for an authority: the private key to a 0600 file (give it to the
    authority), the public key on stdout (for the hub's recipients file)."""
    from hub.topics import authority_topic

    authority_topic(authority)
    if private_key_file.exists():
        typer.echo(f"error: {private_key_file} exists; refusing to overwrite a key", err=True)
        raise typer.Exit(1)
    private, public = privacy.generate_keypair()
    fd = os.open(private_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(base64.b64encode(private).decode() + "\n")
    typer.echo(f"# private key of {authority} written to {private_key_file} (mode 0600)")
    typer.echo(f"# add to $MELDHUB_PRIVACY_RECIPIENTS:\nauthorities:\n  {authority}: {{x25519_public: \"{base64.b64encode(public).decode()}\"}}")
