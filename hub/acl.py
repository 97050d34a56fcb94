"""Principals and ACLs from the authority registry: each party reads and writes only its own topics.

``meldhub acl apply`` (:func:`apply`) makes the cluster match :func:`plan`:

======================  ===========================  ===============================================
role                    principal                    may
======================  ===========================  ===============================================
hub                     ``User:meldhub-hub``         read ``meldingen.inbound`` and ``meldingen.status``;
                                                     write (and create) ``meldingen.authority.*``,
                                                     ``meldingen.status.*``; write dead letters; read and
                                                     write ``meldingen.keys``; groups and transactional
                                                     ids ``meldingen-hub*``; IdempotentWrite
channel adapter         ``User:adapter-<id>``        write ``meldingen.inbound``; read
                                                     ``meldingen.status.<id>`` in group ``adapter-<id>``
authority adapter       ``User:adapter-<id>``        read ``meldingen.authority.<authority>`` in group
                                                     ``adapter-<id>``, read ``meldingen.keys``; write
                                                     ``meldingen.status``
authority consumer      ``User:authority-<id>``      read ``meldingen.authority.<id>`` in groups
                                                     ``authority-<id>*``; read ``meldingen.keys``
admin                   ``User:admin``               everything (broker super user; no ACLs)
======================  ===========================  ===============================================

Nothing else is allowed: the broker runs ``allow.everyone.if.no.acl.found=false``.

Apply is idempotent: it creates only missing ACL bindings and SCRAM users, and creates missing
topics / aligns differing topic configs (:func:`hub.privacy.topic_configs`); a second run changes
nothing. Bindings and users of *managed* principals (``authority-*``, ``adapter-*``, the hub) that
the plan no longer names are reported, and deleted with ``prune=True`` — a removed authority loses
its access. SCRAM passwords come from ``$MELDHUB_KAFKA_PASSWORD_<USER>`` (user upper-cased, ``-`` →
``_``) or a secrets file (YAML ``{user: password}``, mode 0600); they are never logged or printed.
An existing user's password is only changed with ``rotate=True`` (SCRAM cannot tell whether a
password is already the one given).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.privacy import AUDIT, KEYS, TOPIC_PARTITIONS, topic_configs
from hub.topics import (
    AUTHORITY_PREFIX,
    DEADLETTER,
    INBOUND,
    REFUSALS,
    STATUS,
    STATUS_PREFIX,
    TRIAGE,
    authority_topic,
    status_topic,
)

HUB_USER = "meldhub-hub"
HUB_GROUP_PREFIX = "meldingen-hub"
"""Consumer groups (``meldingen-hub``, ``meldingen-hub-status``) and transactional ids
(``meldingen-hub.<topic>.<partition>``) of the hub's workers all start with this."""
AUTHORITY_USER_PREFIX = "authority-"
ADAPTER_USER_PREFIX = "adapter-"
TRIAGE_USER = "triage"
"""The region's triage team: reads ``meldingen.triage`` (meldingen no owner would take)."""
CLUSTER = "kafka-cluster"
SCRAM_ITERATIONS = 8192
PASSWORD_ENV_PREFIX = "MELDHUB_KAFKA_PASSWORD_"
SECRETS_FILE_ENV = "MELDHUB_KAFKA_SECRETS_FILE"


class AclError(RuntimeError):
    """Provisioning failed; the message names the principal/resource, never a password."""


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL: ``principal`` may ``operation`` on ``resource_type`` ``name`` (``pattern``)."""

    principal: str
    resource_type: str  # TOPIC, GROUP, TRANSACTIONAL_ID, BROKER (the cluster)
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, CREATE, DESCRIBE, IDEMPOTENT_WRITE, …
    permission: str = "ALLOW"
    host: str = "*"

    def __str__(self) -> str:
        name = f"{self.name}*" if self.pattern == "PREFIXED" else self.name
        return f"{self.principal:<34} {self.permission:<5} {self.operation:<16} {self.resource_type.lower()}:{name}"


@dataclass(frozen=True)
class Principal:
    user: str
    role: str  # hub, channel-adapter, authority-adapter, authority, triage
    subject: str  # what it stands for: the authority or adapter id, or "hub"

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


@dataclass(frozen=True)
class AdapterSpec:
    """What the ACLs need to know of an adapter: its id and, for an authority's system, the authority."""

    id: str
    authority: str | None = None


@dataclass
class Plan:
    principals: list[Principal]
    bindings: set[Binding]
    topics: dict[str, dict[str, str]]

    def for_user(self, user: str) -> list[Binding]:
        return sorted(b for b in self.bindings if b.principal == f"User:{user}")


def _allow(user: str, rtype: str, name: str, *ops: str, pattern: str = "LITERAL") -> list[Binding]:
    return [Binding(f"User:{user}", rtype, name, pattern, op) for op in ops]


def plan(
    authority_ids: Iterable[str],
    adapters: Iterable[AdapterSpec] = (),
    *,
    hub_user: str = HUB_USER,
    hub_group_prefix: str = HUB_GROUP_PREFIX,
    authority_retention_days: Mapping[str, int] | None = None,
    max_message_bytes: int | None = None,
) -> Plan:
    """The principals, ACL bindings and topic configs for these authorities and adapters."""
    authority_ids = sorted(set(authority_ids))
    adapters = sorted(set(adapters), key=lambda a: a.id)
    for authority_id in authority_ids:
        authority_topic(authority_id)  # validates the id (topic and principal alphabet)
    principals = [Principal(hub_user, "hub", "hub")]
    b: list[Binding] = []

    # --- the hub: route stage, status stage, key records ----------------------------------------
    b += _allow(hub_user, "TOPIC", INBOUND, "READ")
    b += _allow(hub_user, "TOPIC", STATUS, "READ")
    b += _allow(hub_user, "TOPIC", REFUSALS, "READ")
    b += _allow(hub_user, "TOPIC", TRIAGE, "WRITE")
    b += _allow(hub_user, "TOPIC", STATUS, "WRITE")  # "Toegewezen aan" after a refusal
    b += _allow(hub_user, "TOPIC", AUTHORITY_PREFIX, "WRITE", "CREATE", pattern="PREFIXED")
    b += _allow(hub_user, "TOPIC", STATUS_PREFIX, "WRITE", "CREATE", pattern="PREFIXED")
    b += _allow(hub_user, "TOPIC", DEADLETTER, "WRITE")
    b += _allow(hub_user, "TOPIC", KEYS, "READ", "WRITE")
    b += _allow(hub_user, "GROUP", hub_group_prefix, "READ", pattern="PREFIXED")
    b += _allow(hub_user, "TRANSACTIONAL_ID", hub_group_prefix, "WRITE", pattern="PREFIXED")
    b += _allow(hub_user, "BROKER", CLUSTER, "IDEMPOTENT_WRITE")

    # --- authorities' own Kafka clients -------------------------------------------------------
    for authority_id in authority_ids:
        user = AUTHORITY_USER_PREFIX + authority_id
        principals.append(Principal(user, "authority", authority_id))
        b += _allow(user, "TOPIC", authority_topic(authority_id), "READ")
        b += _allow(user, "TOPIC", KEYS, "READ")
        b += _allow(user, "TOPIC", REFUSALS, "WRITE")  # "not ours" (hub/refusal.py)
        b += _allow(user, "GROUP", user, "READ", pattern="PREFIXED")

    # --- the region's triage team -------------------------------------------------------------
    principals.append(Principal(TRIAGE_USER, "triage", TRIAGE_USER))
    b += _allow(TRIAGE_USER, "TOPIC", TRIAGE, "READ")
    b += _allow(TRIAGE_USER, "TOPIC", KEYS, "READ")
    b += _allow(TRIAGE_USER, "GROUP", TRIAGE_USER, "READ", pattern="PREFIXED")

    # --- adapters -------------------------------------------------------------------------------
    channels: list[str] = []
    for adapter in adapters:
        user = ADAPTER_USER_PREFIX + adapter.id
        if adapter.authority is None:
            channels.append(adapter.id)
            principals.append(Principal(user, "channel-adapter", adapter.id))
            b += _allow(user, "TOPIC", INBOUND, "WRITE")
            b += _allow(user, "TOPIC", status_topic(adapter.id), "READ")
        else:
            if adapter.authority not in authority_ids:
                raise AclError(f"adapter {adapter.id}: authority {adapter.authority!r} is not in the registry")
            principals.append(Principal(user, "authority-adapter", adapter.id))
            b += _allow(user, "TOPIC", authority_topic(adapter.authority), "READ")
            b += _allow(user, "TOPIC", KEYS, "READ")
            b += _allow(user, "TOPIC", STATUS, "WRITE")
            b += _allow(user, "TOPIC", REFUSALS, "WRITE")
        b += _allow(user, "GROUP", f"adapter-{adapter.id}", "READ")
        b += _allow(user, "BROKER", CLUSTER, "IDEMPOTENT_WRITE")

    topics = topic_configs(
        authority_ids,
        channels,
        authority_retention_days=authority_retention_days,
        max_message_bytes=max_message_bytes,
    )
    return Plan(principals, set(b), topics)


def is_managed(principal: str, hub_user: str = HUB_USER) -> bool:
    """Principals whose ACLs and SCRAM users ``apply --prune`` may delete."""
    user = principal.removeprefix("User:")
    return user in (hub_user, TRIAGE_USER) or user.startswith((AUTHORITY_USER_PREFIX, ADAPTER_USER_PREFIX))


# ---------------------------------------------------------------------------------------------
# inputs: registry, adapters file, passwords
# ---------------------------------------------------------------------------------------------
def adapters_from_file(path: Path | None = None) -> list[AdapterSpec]:
    """Enabled adapters of ``adapters.yaml`` (``$MELDHUB_ADAPTERS`` or the example region).

    An authority adapter is one whose entry names an ``authority``; a disabled entry gets no
    principal (and loses it on ``--prune``)."""
    if path is None:
        from adapters.registry import default_config_path

        path = default_config_path()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AclError(f"{path}: cannot read the adapters file ({type(exc).__name__})") from None
    out = []
    for entry in data.get("adapters") or []:
        if not isinstance(entry, dict) or "id" not in entry:
            raise AclError(f"{path}: every adapter entry needs an id")
        if entry.get("enabled", True) is False:
            continue
        status_topic(str(entry["id"]))  # validates the id
        out.append(AdapterSpec(str(entry["id"]), str(entry["authority"]) if entry.get("authority") else None))
    return out


def password_env(user: str) -> str:
    return PASSWORD_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", user).upper()


def load_secrets(path: Path | None) -> dict[str, str]:
    """``{user: password}`` from a YAML/JSON file; refuses a file others can read."""
    if path is None:
        return {}
    try:
        mode = path.stat().st_mode
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AclError(f"{path}: cannot read the secrets file ({type(exc).__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AclError(f"{path}: the secrets file must be readable by its owner only (chmod 600)")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise AclError(f"{path}: expected a mapping user: password")
    return {str(k): v for k, v in data.items()}


def password_for(user: str, secrets: Mapping[str, str], env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get(password_env(user)) or secrets.get(user)


# ---------------------------------------------------------------------------------------------
# the cluster side (confluent-kafka: aiokafka's admin client has no ACL or SCRAM calls)
# ---------------------------------------------------------------------------------------------
@dataclass
class Report:
    created: list[Binding] = field(default_factory=list)
    deleted: list[Binding] = field(default_factory=list)
    stale: list[Binding] = field(default_factory=list)
    """Bindings of managed principals that the plan does not name (deleted with prune)."""
    users_created: list[str] = field(default_factory=list)
    users_updated: list[str] = field(default_factory=list)
    users_deleted: list[str] = field(default_factory=list)
    users_stale: list[str] = field(default_factory=list)
    users_without_password: list[str] = field(default_factory=list)
    topics_created: list[str] = field(default_factory=list)
    configs_changed: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(
            self.created or self.deleted or self.users_created or self.users_updated or self.users_deleted
            or self.topics_created or self.configs_changed
        )  # fmt: skip


def admin_client(bootstrap: str, auth: Mapping[str, str] | None = None) -> Any:
    from confluent_kafka.admin import AdminClient

    config = {"bootstrap.servers": bootstrap, "client.id": "meldhub-acl", **dict(auth or {})}
    # librdkafka's own log lines go through Python logging (hub.logs' gate), not raw to stderr
    return AdminClient(config, logger=logging.getLogger("confluent_kafka"))


def _to_confluent(binding: Binding) -> Any:
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBinding(
        ResourceType[binding.resource_type],
        binding.name,
        ResourcePatternType[binding.pattern],
        binding.principal,
        binding.host,
        AclOperation[binding.operation],
        AclPermissionType[binding.permission],
    )


def _filter(binding: Binding) -> Any:
    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBindingFilter(
        ResourceType[binding.resource_type],
        binding.name,
        ResourcePatternType[binding.pattern],
        binding.principal,
        binding.host,
        AclOperation[binding.operation],
        AclPermissionType[binding.permission],
    )


def _from_confluent(acl: Any) -> Binding:
    return Binding(
        acl.principal,
        acl.restype.name,
        acl.name,
        acl.resource_pattern_type.name,
        acl.operation.name,
        acl.permission_type.name,
        acl.host,
    )


def _result(future: Any, what: str, timeout: float) -> Any:
    try:
        return future.result(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException, timeouts: say what failed
        first = exc.args[0] if exc.args else None
        message = first.str() if hasattr(first, "str") else (str(exc) or type(exc).__name__)
        raise AclError(f"{what}: {message}") from None


def current_bindings(admin: Any, timeout: float = 30.0) -> set[Binding]:
    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    return {_from_confluent(a) for a in _result(admin.describe_acls(everything, request_timeout=timeout), "describe ACLs", timeout)}


def scram_users(admin: Any, timeout: float = 30.0) -> dict[str, list[str]]:
    """User → SCRAM mechanisms it has credentials for."""
    found = _result(admin.describe_user_scram_credentials(request_timeout=timeout), "describe SCRAM users", timeout)
    return {user: [info.mechanism.name for info in desc.scram_credential_infos] for user, desc in found.items()}


def apply(
    admin: Any,
    wanted: Plan,
    *,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    prune: bool = False,
    rotate: bool = False,
    topics: bool = True,
    partitions: int = 3,
    replication_factor: int = 1,
    hub_user: str = HUB_USER,
    timeout: float = 30.0,
) -> Report:
    """Make the cluster match ``wanted`` (see the module doc). Returns what changed."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    secrets = dict(secrets or {})
    report = Report()

    # --- topics first: an ACL for a topic that does not exist yet is fine, but consumers are not
    if topics:
        _apply_topics(admin, wanted.topics, report, partitions, replication_factor, timeout)

    # --- ACLs -------------------------------------------------------------------------------
    existing = current_bindings(admin, timeout)
    missing = sorted(wanted.bindings - existing)
    if missing:
        futures = admin.create_acls([_to_confluent(b) for b in missing], request_timeout=timeout)
        for binding, future in zip(missing, futures.values(), strict=True):
            _result(future, f"create ACL {binding}", timeout)
        report.created = missing
    extra = sorted(b for b in existing - wanted.bindings if is_managed(b.principal, hub_user))
    if extra and prune:
        futures = admin.delete_acls([_filter(b) for b in extra], request_timeout=timeout)
        for binding, future in zip(extra, futures.values(), strict=True):
            _result(future, f"delete ACL {binding}", timeout)
        report.deleted = extra
    else:
        report.stale = extra

    # --- SCRAM users ------------------------------------------------------------------------
    users = scram_users(admin, timeout)
    alterations = []
    for p in wanted.principals:
        password = password_for(p.user, secrets, env)
        has = "SCRAM_SHA_256" in users.get(p.user, [])
        if password is None:
            if not has:
                report.users_without_password.append(p.user)
            continue
        if has and not rotate:
            continue
        alterations.append(
            UserScramCredentialUpsertion(
                p.user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, SCRAM_ITERATIONS), password.encode("utf-8")
            )
        )
        (report.users_updated if has else report.users_created).append(p.user)
    wanted_users = {p.user for p in wanted.principals}
    gone = sorted(u for u in users if is_managed(f"User:{u}", hub_user) and u not in wanted_users)
    if gone and prune:
        alterations += [
            UserScramCredentialDeletion(u, ScramMechanism[m]) for u in gone for m in users[u]
        ]
        report.users_deleted = gone
    else:
        report.users_stale = gone
    if alterations:
        for user, future in admin.alter_user_scram_credentials(alterations, request_timeout=timeout).items():
            _result(future, f"SCRAM credential of {user}", timeout)
    _wait_applied(
        admin, wanted.bindings, set(report.deleted), set(report.users_created), set(report.users_deleted), timeout
    )
    return report


def _wait_applied(
    admin: Any,
    present: set[Binding],
    absent: set[Binding],
    users_present: set[str],
    users_absent: set[str],
    timeout: float,
) -> None:
    """The controller commits ACL and SCRAM changes before the broker serves them: wait until the
    broker describes the result, so enforcement (and a second apply) sees it."""
    deadline = time.monotonic() + timeout
    while True:
        now = current_bindings(admin, timeout)
        users = set(scram_users(admin, timeout)) if users_present or users_absent else set()
        if present <= now and not (absent & now) and users_present <= users and not (users_absent & users):
            return
        if time.monotonic() > deadline:
            raise AclError(f"ACL changes not visible on the broker after {timeout:.0f}s")
        time.sleep(0.1)


def _apply_topics(
    admin: Any,
    configs: Mapping[str, Mapping[str, str]],
    report: Report,
    partitions: int,
    replication_factor: int,
    timeout: float,
) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

    metadata = admin.list_topics(timeout=timeout)
    new = [
        NewTopic(name, TOPIC_PARTITIONS.get(name, partitions), replication_factor, config=dict(cfg))
        for name, cfg in sorted(configs.items())
        if name not in metadata.topics
    ]
    if new:
        for name, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
                report.topics_created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise AclError(f"create topic {name}: {exc.args[0].str()}") from None
    existing = [name for name in sorted(configs) if name in metadata.topics]
    if not existing:
        return
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in existing]
    described = admin.describe_configs(resources, request_timeout=timeout)
    changes = []
    for resource, future in described.items():
        current = _result(future, f"describe configs of {resource.name}", timeout)
        differ = {k: v for k, v in configs[resource.name].items() if k not in current or current[k].value != v}
        if differ:
            report.configs_changed[resource.name] = differ
            changes.append(
                ConfigResource(
                    ResourceType.TOPIC,
                    resource.name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in differ.items()
                    ],
                )
            )
    if changes:
        for resource, future in admin.incremental_alter_configs(changes, request_timeout=timeout).items():
            _result(future, f"alter configs of {resource.name}", timeout)


def show(admin: Any, timeout: float = 30.0) -> tuple[list[Binding], dict[str, list[str]]]:
    """Every ACL binding (sorted by principal) and every SCRAM user with its mechanisms."""
    return sorted(current_bindings(admin, timeout)), scram_users(admin, timeout)


__all__ = [
    "AUDIT",
    "AdapterSpec",
    "Binding",
    "Plan",
    "Principal",
    "Report",
    "adapters_from_file",
    "apply",
    "is_managed",
    "plan",
    "show",
]
