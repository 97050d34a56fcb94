"""On a real SASL/SCRAM broker with the StandardAuthorizer: only the owner sees a melding.

One secure broker for the module (``LocalKafka(secure=True)``, temp dir, free ports, stopped at
the end), provisioned with ``meldhub acl apply`` from the test registry. Every claim of
docs/security.md's role table is tried here against the broker itself, with each principal's own
credentials.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from typer.testing import CliRunner

from hub import acl, logs, privacy
from hub.cli.acl_cmd import app as acl_app
from hub.cli.gdpr_cmd import app as gdpr_app
from hub.kafka_auth import KafkaAuth
from hub.kafka_local import LocalKafka, LocalKafkaError, free_port
from tests.security.conftest import REGISTRY, Keys, assert_no_personal_data

pytestmark = pytest.mark.kafka

DENIED_WRITE = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError)
"""A principal with no Write anywhere is refused already at InitProducerId (idempotence)."""
CHANNEL = "open311-test"
AUTHORITY_ADAPTER = ("topdesk-kortrijk", "kortrijk")


class Secure:
    def __init__(self, kafka: LocalKafka, workdir: Path) -> None:
        self.kafka = kafka
        self.bootstrap = kafka.bootstrap_servers
        self.workdir = workdir
        self.first_apply_output = ""
        self.adapters_file = workdir / "adapters.yaml"
        self.adapters_file.write_text(
            "adapters:\n"
            f"  - {{id: {CHANNEL}, vendor: open311}}\n"
            f"  - {{id: {AUTHORITY_ADAPTER[0]}, vendor: topdesk, authority: {AUTHORITY_ADAPTER[1]}}}\n",
            encoding="utf-8",
        )
        self.plan = self._plan()
        self.passwords = {p.user: secrets.token_urlsafe(18) for p in self.plan.principals}
        self.secrets_file = workdir / "kafka-users.yaml"
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.passwords, handle)  # JSON is YAML

    def _plan(self) -> acl.Plan:
        from hub.registry import Registry

        return acl.plan([a.id for a in Registry.load(REGISTRY).authorities], acl.adapters_from_file(self.adapters_file))

    def admin_env(self) -> dict[str, str]:
        return {
            "MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "MELDHUB_KAFKA_SASL_USERNAME": "admin",
            "MELDHUB_KAFKA_SASL_PASSWORD_FILE": str(self.kafka.admin_password_file),
            "MELDHUB_BOOTSTRAP_SERVERS": self.bootstrap,
        }

    def auth(self, user: str, password: str | None = None) -> dict[str, Any]:
        password = password if password is not None else self.passwords[user]
        return KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-256", user, password).aiokafka_kwargs()

    def admin_auth(self) -> dict[str, Any]:
        return self.kafka.client_kwargs()

    def cli(self, app: Any, *args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=self.admin_env(), catch_exceptions=False)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    workdir = tmp_path_factory.mktemp("secure-kafka")
    kafka = LocalKafka(workdir / "kafka", port=free_port(), detach=False, secure=True)
    try:
        kafka.up(timeout=180)
    except LocalKafkaError as exc:
        kafka.down(timeout=10)
        pytest.fail(f"the secure local broker did not start: {exc}")
    try:
        s = Secure(kafka, workdir)
        first = s.cli(acl_app, "apply", "--registry", str(REGISTRY), "--adapters", str(s.adapters_file),
                      "--secrets", str(s.secrets_file))  # fmt: skip
        assert first.exit_code == 0, first.output
        assert "created user    meldhub-hub" in first.output and "changed" in first.output
        s.first_apply_output = first.output
        yield s
    finally:
        kafka.down(timeout=30)


# --- helpers ---------------------------------------------------------------------------------
async def _produce(bootstrap: str, auth: dict[str, Any], topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10000, **auth)
    try:
        await producer.start()
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, auth: dict[str, Any], topic: str, group: str | None, count: int = 1) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=10000,
        **auth,
    )
    records: list[Any] = []
    try:
        await consumer.start()
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records += batch
    finally:
        await consumer.stop()
    return records


async def _list_topics(bootstrap: str, auth: dict[str, Any]) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **auth)
    try:
        async with asyncio.timeout(20):
            await admin.start()
            return sorted(await admin.list_topics())
    finally:
        await admin.close()


# --- the broker itself ---------------------------------------------------------------------------
def test_secrets_are_private_files_and_never_in_the_broker_logs(secure: Secure) -> None:
    kafka = secure.kafka
    for path in (kafka.admin_password_file, kafka.controller_password_file, kafka.properties):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    properties = kafka.properties.read_text(encoding="utf-8")
    assert "allow.everyone.if.no.acl.found=false" in properties
    assert "super.users=User:admin;User:controller\n" in properties  # no ANONYMOUS super user
    assert "org.apache.kafka.metadata.authorizer.StandardAuthorizer" in properties
    assert "PLAINTEXT://" not in properties.replace("SASL_PLAINTEXT", "")
    password = kafka.admin_password()
    for log in [kafka.out_file, *kafka.logs_dir.glob("*.log")]:
        assert password not in log.read_text(encoding="utf-8", errors="replace"), log
    assert kafka.status()["security_protocol"] == "SASL_PLAINTEXT"


async def test_a_wrong_password_an_unknown_user_and_no_credentials_are_refused(secure: Secure) -> None:
    assert "meldingen.inbound" in await _list_topics(secure.bootstrap, secure.admin_auth())
    assert await _list_topics(secure.bootstrap, secure.auth("authority-kortrijk"))  # the right password works
    for auth in (
        secure.auth("authority-kortrijk", "not-the-password"),
        secure.auth("admin", "not-the-password"),
        secure.auth("nobody", "whatever-password"),
        {},  # PLAINTEXT: the listener speaks SASL only
    ):
        with pytest.raises((KafkaConnectionError, KafkaError, TimeoutError)):
            await _list_topics(secure.bootstrap, auth)


# --- the roles ---------------------------------------------------------------------------------------
async def test_an_authority_reads_only_its_own_topic_and_groups(secure: Secure) -> None:
    hub = secure.auth("meldhub-hub")
    await _produce(secure.bootstrap, hub, "meldingen.authority.kortrijk", b"voor kortrijk")
    await _produce(secure.bootstrap, hub, "meldingen.authority.imog", b"voor imog")
    kortrijk = secure.auth("authority-kortrijk")

    own = await _consume(secure.bootstrap, kortrijk, "meldingen.authority.kortrijk", "authority-kortrijk-app")
    assert own[0].value == b"voor kortrijk"
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(secure.bootstrap, kortrijk, "meldingen.authority.imog", "authority-kortrijk-app")
    with pytest.raises(GroupAuthorizationFailedError):  # B's group, even on A's own topic
        await _consume(secure.bootstrap, kortrijk, "meldingen.authority.kortrijk", "authority-imog")
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(secure.bootstrap, kortrijk, "meldingen.inbound", None)
    with pytest.raises(TopicAuthorizationFailedError):  # nor dead letters (original bytes in clear)
        await _consume(secure.bootstrap, kortrijk, "meldingen.deadletter", None)
    with pytest.raises(DENIED_WRITE):  # read-only
        await _produce(secure.bootstrap, kortrijk, "meldingen.authority.kortrijk", b"forged")
    # the topic list itself is filtered: B's topic is not even visible
    visible = await _list_topics(secure.bootstrap, kortrijk)
    assert "meldingen.authority.imog" not in visible and "meldingen.authority.kortrijk" in visible


async def test_a_channel_adapter_writes_inbound_only(secure: Secure) -> None:
    channel = secure.auth(f"adapter-{CHANNEL}")
    await _produce(secure.bootstrap, channel, "meldingen.inbound", b"{}")
    for topic in ("meldingen.authority.kortrijk", "meldingen.keys", "meldingen.deadletter", "meldingen.status"):
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(secure.bootstrap, channel, topic, b"forged")
    with pytest.raises(TopicAuthorizationFailedError):  # cannot read back what citizens sent
        await _consume(secure.bootstrap, channel, "meldingen.inbound", f"adapter-{CHANNEL}")
    await _produce(secure.bootstrap, secure.auth("meldhub-hub"), f"meldingen.status.{CHANNEL}", b"status")
    got = await _consume(secure.bootstrap, channel, f"meldingen.status.{CHANNEL}", f"adapter-{CHANNEL}")
    assert got[0].value == b"status"


async def test_an_authority_adapter_reads_its_authority_and_writes_status(secure: Secure) -> None:
    adapter_id, authority = AUTHORITY_ADAPTER
    adapter = secure.auth(f"adapter-{adapter_id}")
    await _produce(secure.bootstrap, secure.auth("meldhub-hub"), f"meldingen.authority.{authority}", b"m")
    assert await _consume(secure.bootstrap, adapter, f"meldingen.authority.{authority}", f"adapter-{adapter_id}")
    await _produce(secure.bootstrap, adapter, "meldingen.status", b"status")
    for topic in ("meldingen.inbound", "meldingen.authority.imog"):
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(secure.bootstrap, adapter, topic, b"forged")
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(secure.bootstrap, adapter, "meldingen.authority.imog", f"adapter-{adapter_id}")


async def test_the_hub_reads_inbound_writes_outputs_and_uses_only_its_own_transactional_ids(secure: Secure) -> None:
    hub = secure.auth("meldhub-hub")
    await _produce(secure.bootstrap, secure.auth(f"adapter-{CHANNEL}"), "meldingen.inbound", b"for the hub")
    assert await _consume(secure.bootstrap, hub, "meldingen.inbound", "meldingen-hub-test")
    await _produce(secure.bootstrap, hub, "meldingen.deadletter", b"dead")
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume(secure.bootstrap, hub, "meldingen.inbound", "authority-kortrijk")
    for topic in ("meldingen.authority.kortrijk", "meldingen.deadletter", "meldingen.audit"):
        with pytest.raises(TopicAuthorizationFailedError):  # writes the owners' topics, never reads them
            await _consume(secure.bootstrap, hub, topic, None)
    good = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, transactional_id="meldingen-hub.meldingen.inbound.0", **hub)
    await good.start()
    try:
        async with good.transaction():
            await good.send("meldingen.authority.kortrijk", b"in a transaction", key=b"t")
    finally:
        await good.stop()
    bad = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, transactional_id="someone-else.0", **hub)
    try:
        with pytest.raises(TransactionalIdAuthorizationFailed):
            await bad.start()
    finally:
        await bad.stop()
    kortrijk = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap, transactional_id="meldingen-hub.x", **secure.auth("authority-kortrijk")
    )
    try:
        with pytest.raises(TransactionalIdAuthorizationFailed):
            await kortrijk.start()
    finally:
        await kortrijk.stop()


# --- provisioning ------------------------------------------------------------------------------------
def test_acl_apply_twice_changes_nothing_and_show_lists_the_bindings(secure: Secure) -> None:
    again = secure.cli(acl_app, "apply", "--registry", str(REGISTRY), "--adapters", str(secure.adapters_file),
                       "--secrets", str(secure.secrets_file))  # fmt: skip
    assert again.exit_code == 0, again.output
    assert again.output.strip().splitlines() == ["nothing to change"]
    shown = secure.cli(acl_app, "show")
    assert shown.exit_code == 0, shown.output
    for binding in secure.plan.bindings:
        assert str(binding) in shown.output
    assert "authority-kortrijk: SCRAM_SHA_256" in shown.output
    for text in (secure.first_apply_output, again.output, shown.output):
        for password in [*secure.passwords.values(), secure.kafka.admin_password()]:
            assert password not in text


async def test_topics_are_provisioned_with_their_retention(secure: Secure) -> None:
    admin = acl.admin_client(secure.bootstrap, KafkaAuth.from_env(secure.admin_env()).confluent_config())
    from confluent_kafka.admin import ConfigResource, ResourceType

    for topic, expected in (
        ("meldingen.inbound", {"retention.ms": str(3 * privacy.DAY_MS)}),
        ("meldingen.keys", {"cleanup.policy": "compact"}),
        ("meldingen.audit", {"retention.ms": "-1"}),
        ("meldingen.authority.kortrijk", {"retention.ms": str(30 * privacy.DAY_MS)}),
    ):
        (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
        config = future.result(timeout=30)
        assert {k: config[k].value for k in expected} == expected, topic


# --- personal data: protect on the hub, reveal at the owner, erase -----------------------------------
@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log line (the hub's JSON lines and library logs) of one test, then logging as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


async def test_gdpr_erase_makes_one_meldings_contact_details_unrecoverable(
    secure: Secure, feed, keys: Keys, capfd: pytest.CaptureFixture[str], log_lines: io.StringIO
) -> None:
    docs, published = [], []
    for _ in range(3):
        doc, reporter, _nis = feed.melding(anonymous=False)
        assert reporter is not None
        docs.append(doc)
        published.append(privacy.protect(doc, doc["identificator"]["notatie"], "kortrijk", keys.ring))
    erased_id = docs[0]["identificator"]["notatie"]

    # the hub: each melding and its key record in one transaction (as forward() will)
    hub = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap, transactional_id="meldingen-hub.test-forward.0", **secure.auth("meldhub-hub")
    )
    await hub.start()
    try:
        async with hub.transaction():
            for doc, out in zip(docs, published, strict=True):
                mid = doc["identificator"]["notatie"]
                await hub.send("meldingen.authority.kortrijk", json.dumps(out["melding"]).encode(), key=mid.encode())
                topic, key, value, headers = privacy.key_output(mid, out["key"])
                await hub.send(topic, value, key=key, headers=list(headers))
    finally:
        await hub.stop()

    kortrijk = secure.auth("authority-kortrijk")
    table = await privacy.load_keys(secure.bootstrap, keys.kortrijk, auth=kortrijk)
    for doc, out in zip(docs, published, strict=True):
        assert privacy.reveal(out["melding"], table) == doc

    result = await asyncio.to_thread(
        secure.cli, gdpr_app, "erase", erased_id, "--reason", "AVG-verzoek 2026-114", "--by", "dpo-kortrijk"
    )
    assert result.exit_code == 0, result.output
    assert f"erased the contact details of melding {erased_id}" in result.output

    # a fresh reader (the owner, and the hub itself) and an incremental one (the table above)
    fresh = await privacy.load_keys(secure.bootstrap, keys.kortrijk, auth=kortrijk)
    hub_table = await privacy.load_keys(secure.bootstrap, keys.hub_identity, auth=secure.auth("meldhub-hub"))
    incremental = await privacy.load_keys(secure.bootstrap, table, auth=kortrijk)
    for reader in (fresh, hub_table, incremental):
        assert reader.state(erased_id) == "erased"
        assert "melder" not in privacy.reveal(published[0]["melding"], reader)
        with pytest.raises(privacy.Erased):
            privacy.reveal(published[0]["melding"], reader, strict=True)
        for doc, out in zip(docs[1:], published[1:], strict=True):
            assert privacy.reveal(out["melding"], reader) == doc  # the others still decrypt

    # the audit trail: who, when, why, no personal data (admins read it; authorities cannot)
    audit = await _consume(secure.bootstrap, secure.admin_auth(), "meldingen.audit", None)
    record = json.loads(audit[-1].value)
    assert record["action"] == "gdpr-erased" and record["melding_id"] == erased_id
    assert record["by"] == "dpo-kortrijk" and record["reason"] == "AVG-verzoek 2026-114" and record["at"]
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(secure.bootstrap, kortrijk, "meldingen.audit", None)
    with pytest.raises(DENIED_WRITE):  # an authority cannot erase (or forge keys)
        await _produce(secure.bootstrap, kortrijk, "meldingen.keys", b"x", key=erased_id.encode())

    captured = capfd.readouterr()
    assert "not authorized" in log_lines.getvalue()  # the gate below saw real log lines
    assert_no_personal_data(
        [
            result.output, audit[-1].value, captured.out, captured.err, log_lines.getvalue(),
            *(json.dumps(p["melding"]) for p in published),
        ],
        "erase flow",
    )  # fmt: skip


def test_erase_errors_are_reported_without_personal_data(secure: Secure) -> None:
    bad = secure.cli(gdpr_app, "erase", "sofie.vandenberghe@example.org", "--reason", "x")
    assert bad.exit_code == 1 and "invalid melding id" in bad.output
    assert "sofie" not in bad.output.lower()
    empty = secure.cli(gdpr_app, "erase", "8c0a1f0e-0000-4000-8000-000000000001", "--reason", " ")
    assert empty.exit_code == 1 and "reason" in empty.output


async def test_a_removed_authority_loses_its_access_with_prune(secure: Secure) -> None:
    admin = acl.admin_client(secure.bootstrap, KafkaAuth.from_env(secure.admin_env()).confluent_config())
    without = acl.plan(
        [a for a in {p.subject for p in secure.plan.principals if p.role == "authority"} if a != "imog"],
        acl.adapters_from_file(secure.adapters_file),
    )
    dry = acl.apply(admin, without, secrets=secure.passwords, env={}, topics=False)
    assert not dry.changed and {b.principal for b in dry.stale} == {"User:authority-imog"}
    assert dry.users_stale == ["authority-imog"]
    assert len(await _list_topics(secure.bootstrap, secure.auth("authority-imog"))) > 0  # still in, until pruned

    pruned = acl.apply(admin, without, secrets=secure.passwords, env={}, topics=False, prune=True)
    assert {b.principal for b in pruned.deleted} == {"User:authority-imog"} and pruned.users_deleted == ["authority-imog"]
    with pytest.raises((KafkaConnectionError, KafkaError, TimeoutError)):
        await _list_topics(secure.bootstrap, secure.auth("authority-imog"))
    assert not acl.apply(admin, without, secrets=secure.passwords, env={}, topics=False, prune=True).changed

    restored = acl.apply(admin, secure.plan, secrets=secure.passwords, env={}, topics=False)
    assert restored.users_created == ["authority-imog"]
    assert await _consume(secure.bootstrap, secure.auth("authority-imog"), "meldingen.authority.imog", "authority-imog")


# --- TLS --------------------------------------------------------------------------------------------
async def test_tls_listener_with_pem_files(tmp_path: Path) -> None:
    """``tls=True``: SASL_SSL with PEM key store and trust store; a client must verify the CA."""
    kafka = LocalKafka(tmp_path / "kafka-tls", port=free_port(), detach=False, secure=True, tls=True)
    try:
        await asyncio.to_thread(kafka.up, 180)
        properties = kafka.properties.read_text(encoding="utf-8")
        assert "listener.name.client.ssl.keystore.type=PEM" in properties and "CLIENT:SASL_SSL" in properties
        assert stat.S_IMODE((kafka.tls_dir / "server.pem").stat().st_mode) == 0o600
        assert await _list_topics(kafka.bootstrap_servers, kafka.client_kwargs()) == []
        env = {
            "MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "MELDHUB_KAFKA_SASL_USERNAME": "admin",
            "MELDHUB_KAFKA_SASL_PASSWORD_FILE": str(kafka.admin_password_file),
            "MELDHUB_KAFKA_SSL_CAFILE": str(kafka.ca_file),
        }
        assert await _list_topics(kafka.bootstrap_servers, KafkaAuth.from_env(env).aiokafka_kwargs()) == []
        plaintext_sasl = {**kafka.client_kwargs(), "security_protocol": "SASL_PLAINTEXT"}
        plaintext_sasl.pop("ssl_context")
        with pytest.raises((KafkaConnectionError, KafkaError, TimeoutError)):
            await _list_topics(kafka.bootstrap_servers, plaintext_sasl)
    finally:
        await asyncio.to_thread(kafka.down, 30)
