"""Small Kafka admin helpers on aiokafka, shared by the CLI, the stages and the tests.

Why this module: the local broker (and any production cluster the hub talks to) runs with
``auto.create.topics.enable=false`` so that a typo in a topic name fails loudly instead of
silently creating a one-partition topic. Every component therefore creates the topics it
needs up front, and must be able to do so again and again without error (idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from hub.kafka_auth import client_kwargs


async def cluster_info(bootstrap: str, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the cluster for its metadata: ``{"cluster_id", "controller_id", "brokers"}``.

    A metadata answer is what "the broker is ready" means for a client (an open port is
    not: the socket server accepts before the broker has joined its own quorum). Raises
    whatever aiokafka raises when the cluster does not answer within ``timeout``.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_kwargs(),
        request_timeout_ms=max(int(timeout * 1000), 1000),
        client_id="meldhub-admin",
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            meta = await admin.describe_cluster()
    finally:
        await admin.close()
    return {
        "cluster_id": meta.get("cluster_id"),
        "controller_id": meta.get("controller_id"),
        "brokers": [{"node_id": b["node_id"], "host": b["host"], "port": b["port"]} for b in meta.get("brokers", [])],
    }


def _wanted(topics: Mapping[str, int] | Iterable[str], partitions: int) -> dict[str, int]:
    if isinstance(topics, Mapping):
        return {str(name): int(n) for name, n in topics.items()}
    return {str(name): partitions for name in topics}


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int] | Iterable[str],
    partitions: int = 3,
    replication_factor: int = 1,
    timeout: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create ``topics`` unless they exist, then wait until every partition has a leader.

    ``topics`` is either ``{name: partitions}`` or a list of names (each gets ``partitions``);
    ``configs`` gives topic-level settings (e.g. ``max.message.bytes``) for topics it creates.
    An existing topic is left as it is (its partition count is not changed). Waiting for
    leaders matters: a producer that starts right after ``CreateTopics`` returns can
    otherwise still get ``UnknownTopicOrPartition`` for a moment.
    """
    wanted = _wanted(topics, partitions)
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs(), client_id="meldhub-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=n,
                replication_factor=replication_factor,
                topic_configs=dict((configs or {}).get(name, {})),
            )
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing, timeout_ms=int(timeout * 1000))
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                error_cls = for_code(code)
                if code == 0 or error_cls is TopicAlreadyExistsError:
                    continue  # created, or created meanwhile by someone else: both fine
                message = topic_error[2] if len(topic_error) > 2 else None
                raise error_cls(f"creating topic {name!r}: {message or error_cls.__name__}")
        await _wait_for_leaders(admin, list(wanted), timeout)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while True:
        described = await admin.describe_topics(pending)
        pending = [
            t["topic"]
            for t in described
            if t["error_code"] != 0 or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a partition leader after {timeout:.0f}s: {', '.join(pending)}")
        await asyncio.sleep(0.1)


def raise_message_size_limits(bootstrap: str, wanted: Mapping[str, int], timeout: float = 30.0) -> dict[str, int]:
    """Make sure each topic in ``wanted`` accepts records of at least that many bytes
    (``max.message.bytes``); returns the topics it raised, old value → new.

    Why: whoever creates a topic first decides its configuration, and :func:`ensure_topics` never
    changes an existing topic. If an adapter (or an operator) created ``meldingen.deadletter``
    with the broker default, an oversized melding's dead letter would be refused by the broker,
    its transaction aborted and retried forever — the hub would stop on that partition. Raised
    with an incremental alter (confluent-kafka), so other settings of the topic stay as they are;
    a topic already above the limit, or missing, is left alone.
    """
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from hub.kafka_auth import confluent_config

    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "meldhub-admin", **confluent_config()})
    existing = set(admin.list_topics(timeout=timeout).topics)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in wanted if name in existing]
    if not resources:
        return {}
    current = {r.name: f.result(timeout) for r, f in admin.describe_configs(resources, request_timeout=timeout).items()}
    raised: dict[str, int] = {}
    changes = []
    for name, entries in current.items():
        entry = entries.get("max.message.bytes")
        have = int(entry.value) if entry is not None and entry.value else 0
        if have < wanted[name]:
            raised[name] = have
            changes.append(
                ConfigResource(
                    ConfigResource.Type.TOPIC,
                    name,
                    incremental_configs=[
                        ConfigEntry("max.message.bytes", str(wanted[name]), incremental_operation=AlterConfigOpType.SET)
                    ],
                )
            )
    for _, future in admin.incremental_alter_configs(changes, request_timeout=timeout).items() if changes else ():
        future.result(timeout)
    return raised
