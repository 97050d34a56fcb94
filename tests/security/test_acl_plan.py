"""The ACL plan in isolation: least privilege per role, derived from the registry and adapters file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import acl
from hub.acl import AdapterSpec, Binding, plan
from hub.registry import Registry
from hub.topics import AUTHORITY_PREFIX, DEADLETTER, INBOUND, REFUSALS, STATUS, TRIAGE


def _ops(p: acl.Plan, user: str) -> set[tuple[str, str, str, str]]:
    return {(b.resource_type, b.name, b.pattern, b.operation) for b in p.for_user(user)}


@pytest.fixture(scope="module")
def example() -> acl.Plan:
    registry = Registry.load()
    return plan(
        [a.id for a in registry.authorities],
        [AdapterSpec("open311-zwvl"), AdapterSpec("topdesk-kortrijk", "kortrijk")],
    )


def test_every_authority_reads_only_its_own_topic_keys_and_groups(example: acl.Plan) -> None:
    registry = Registry.load()
    for authority in registry.authorities:
        user = f"authority-{authority.id}"
        assert _ops(example, user) == {
            ("TOPIC", f"meldingen.authority.{authority.id}", "LITERAL", "READ"),
            ("TOPIC", "meldingen.keys", "LITERAL", "READ"),
            ("TOPIC", REFUSALS, "LITERAL", "WRITE"),  # "not ours": the melding back to the hub
            ("GROUP", user, "PREFIXED", "READ"),
        }


def test_channel_adapter_writes_only_inbound_and_reads_only_its_status(example: acl.Plan) -> None:
    assert _ops(example, "adapter-open311-zwvl") == {
        ("TOPIC", INBOUND, "LITERAL", "WRITE"),
        ("TOPIC", "meldingen.status.open311-zwvl", "LITERAL", "READ"),
        ("GROUP", "adapter-open311-zwvl", "LITERAL", "READ"),
        ("BROKER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE"),
    }


def test_authority_adapter_reads_its_authority_and_writes_status(example: acl.Plan) -> None:
    assert _ops(example, "adapter-topdesk-kortrijk") == {
        ("TOPIC", "meldingen.authority.kortrijk", "LITERAL", "READ"),
        ("TOPIC", "meldingen.keys", "LITERAL", "READ"),
        ("TOPIC", STATUS, "LITERAL", "WRITE"),
        ("TOPIC", REFUSALS, "LITERAL", "WRITE"),
        ("GROUP", "adapter-topdesk-kortrijk", "LITERAL", "READ"),
        ("BROKER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE"),
    }


def test_only_the_hub_reads_inbound_and_writes_owner_topics_keys_and_dead_letters(example: acl.Plan) -> None:
    def who(rtype: str, name: str, op: str) -> set[str]:
        return {
            b.principal
            for b in example.bindings
            if b.resource_type == rtype and b.operation == op and (b.name == name or (b.pattern == "PREFIXED" and name.startswith(b.name)))
        }

    hub = {"User:meldhub-hub"}
    assert who("TOPIC", INBOUND, "READ") == hub
    assert who("TOPIC", "meldingen.authority.kortrijk", "WRITE") == hub
    assert who("TOPIC", "meldingen.keys", "WRITE") == hub
    assert who("TOPIC", DEADLETTER, "WRITE") == hub
    assert who("TOPIC", DEADLETTER, "READ") == set()  # admins only (super user)
    assert who("TOPIC", "meldingen.audit", "READ") == set() and who("TOPIC", "meldingen.audit", "WRITE") == set()
    assert who("TRANSACTIONAL_ID", "meldingen-hub.meldingen.inbound.0", "WRITE") == hub
    assert who("GROUP", "meldingen-hub", "READ") == hub
    assert who("TOPIC", REFUSALS, "READ") == hub and who("TOPIC", TRIAGE, "WRITE") == hub
    # refusals may come from any owner, never from a channel adapter
    assert "User:adapter-open311-zwvl" not in who("TOPIC", REFUSALS, "WRITE")
    # nobody may do anything not listed: no ALL, no DENY needed, no wildcard resources
    assert all(b.operation != "ALL" and b.name != "*" and b.permission == "ALLOW" for b in example.bindings)
    # no principal but the hub holds a prefix on topics
    assert {b.principal for b in example.bindings if b.resource_type == "TOPIC" and b.pattern == "PREFIXED"} == hub


def test_only_the_triage_team_reads_the_triage_topic(example: acl.Plan) -> None:
    readers = {b.principal for b in example.bindings if b.name == TRIAGE and b.operation == "READ"}
    assert readers == {"User:triage"}
    assert _ops(example, "triage") == {
        ("TOPIC", TRIAGE, "LITERAL", "READ"),
        ("TOPIC", "meldingen.keys", "LITERAL", "READ"),
        ("GROUP", "triage", "PREFIXED", "READ"),
    }
    assert acl.is_managed("User:triage")


def test_plan_follows_the_adapters_file(tmp_path: Path) -> None:
    path = tmp_path / "adapters.yaml"
    path.write_text(
        "adapters:\n"
        "  - {id: open311-zwvl, vendor: open311}\n"
        "  - {id: topdesk-kortrijk, vendor: topdesk, authority: kortrijk}\n"
        "  - {id: topdesk-menen, vendor: topdesk, authority: menen, enabled: false}\n",
        encoding="utf-8",
    )
    assert acl.adapters_from_file(path) == [AdapterSpec("open311-zwvl"), AdapterSpec("topdesk-kortrijk", "kortrijk")]
    # the example region's file: the TOPdesk tenant is disabled, so it gets no principal
    assert acl.adapters_from_file() == [AdapterSpec("open311-zwvl")]


def test_an_adapter_for_an_unknown_authority_is_refused() -> None:
    with pytest.raises(acl.AclError, match="not in the registry"):
        plan(["kortrijk"], [AdapterSpec("topdesk-x", "nowhere")])


def test_topics_of_the_plan_have_retention(example: acl.Plan) -> None:
    assert "retention.ms" in example.topics[INBOUND]
    assert all(name in example.topics for name in (DEADLETTER, STATUS, "meldingen.keys", "meldingen.audit", REFUSALS, TRIAGE))
    assert sum(name.startswith(AUTHORITY_PREFIX) for name in example.topics) == len(Registry.load().authorities)


def test_managed_principals_exclude_the_admin() -> None:
    assert acl.is_managed("User:authority-kortrijk") and acl.is_managed("User:adapter-x") and acl.is_managed("User:meldhub-hub")
    assert not acl.is_managed("User:admin") and not acl.is_managed("User:controller")


def test_passwords_come_from_env_or_a_private_secrets_file(tmp_path: Path) -> None:
    assert acl.password_env("authority-spiere-helkijn") == "MELDHUB_KAFKA_PASSWORD_AUTHORITY_SPIERE_HELKIJN"
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("authority-kortrijk: from-file\n", encoding="utf-8")
    secrets.chmod(0o644)
    with pytest.raises(acl.AclError, match="chmod 600"):
        acl.load_secrets(secrets)
    secrets.chmod(0o600)
    loaded = acl.load_secrets(secrets)
    assert acl.password_for("authority-kortrijk", loaded, env={}) == "from-file"
    env = {"MELDHUB_KAFKA_PASSWORD_AUTHORITY_KORTRIJK": "from-env"}
    assert acl.password_for("authority-kortrijk", loaded, env=env) == "from-env"
    assert acl.password_for("authority-imog", loaded, env={}) is None


def test_binding_text_names_no_secret() -> None:
    b = Binding("User:authority-kortrijk", "GROUP", "authority-kortrijk", "PREFIXED", "READ")
    assert str(b).split() == ["User:authority-kortrijk", "ALLOW", "READ", "group:authority-kortrijk*"]
