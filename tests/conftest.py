"""Shared fixtures: one real Kafka broker per test session.

Why a real broker: the hub's guarantees (transactions, group offsets, ``read_committed``)
live in the broker, so the Kafka tests never run against a fake. Where the broker comes
from, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` (an external cluster; used as given, it must answer);
2. a local JVM broker (``hub.kafka_local``; needs Java 17+ and Maven) in a temp dir on free
   ports, stopped at the end of the session;
3. testcontainers (Confluent ``cp-kafka`` in KRaft mode), only where a Docker engine answers.

If none works the Kafka tests FAIL with every attempt's reason: a missing broker must never
turn into a quietly skipped test suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
import os
import uuid

import pytest

from hub.kafka_admin import cluster_info, ensure_topics
from hub.kafka_local import LocalKafka, free_port

TESTCONTAINERS_IMAGE = "confluentinc/cp-kafka:7.9.2"


def _local_broker(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Callable[[], object]]:
    # detach=False: a test run killed as a process group takes its broker along.
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"), port=free_port(), detach=False)
    return kafka.up(timeout=180), kafka.down


def _container_broker() -> tuple[str, Callable[[], object]]:
    import docker  # type: ignore[import-untyped]  # testcontainers' dependency

    docker.from_env().ping()  # raises when no Docker engine answers
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer(TESTCONTAINERS_IMAGE).with_kraft()
    container.start()
    return container.get_bootstrap_server(), container.stop


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers (``host:port``) of a real Kafka broker for the whole session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        try:
            asyncio.run(cluster_info(external, timeout=15))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={external} does not answer: {type(exc).__name__}: {exc}")
        yield external
        return
    reasons = []
    for name, start in (
        ("local JVM broker", lambda: _local_broker(tmp_path_factory)),
        ("testcontainers", _container_broker),
    ):
        try:
            bootstrap, stop = start()
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to report
            reasons.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        try:
            yield bootstrap
        finally:
            stop()
        return
    pytest.fail("no Kafka broker for the tests:\n" + "\n".join(reasons))


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    """``await kafka_topic_factory("prefix", partitions=3)`` creates a topic with a unique
    name (tests share one broker and must not see each other's messages) and returns it."""

    async def make(prefix: str = "test", partitions: int = 3) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        await ensure_topics(kafka_bootstrap, {name: partitions})
        return name

    return make
