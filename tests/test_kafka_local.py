"""The local broker works end to end: CLI life cycle, aiokafka produce/consume, transactions.

These tests are the evidence behind the pinned broker version in ``deploy/kafka/pom.xml``:
Kafka 4.x removed old protocol versions, so aiokafka must be shown to work against it,
including the transactional consume-transform-produce loop the hub's core relies on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
import importlib
import os
from pathlib import Path
import re
import shutil
import subprocess
import pkgutil
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
import aiokafka.protocol
from aiokafka.protocol.api import Request
import pytest

from hub.kafka_admin import ensure_topics
from hub.kafka_local import LocalKafka, free_port, pinned_version, project_root


def _meldhub() -> list[str]:
    """The ``meldhub`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("meldhub")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("meldhub")
    return [found] if found else [sys.executable, "-c", "from hub.cli import main; main()"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_meldhub(), "kafka", *args], capture_output=True, text=True, timeout=timeout, check=False)


async def _consume(bootstrap: str, topic: str, count: int, linger: float = 0.0, **config: object) -> list[bytes]:
    """Read at least ``count`` messages from the start of ``topic`` (fails after 30 s), then
    keep reading for ``linger`` seconds to catch any message that should not be there."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **config)
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(values) < count:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    values += [m.value for m in messages if m.value is not None]
        linger_until = time.monotonic() + linger
        while time.monotonic() < linger_until:
            for messages in (await consumer.getmany(timeout_ms=250)).values():
                values += [m.value for m in messages if m.value is not None]
    finally:
        await consumer.stop()
    return values


@pytest.mark.kafka
def test_cli_life_cycle_and_messages(tmp_path: Path) -> None:
    workdir, port = tmp_path / "kafka", free_port()
    try:
        started = _cli("up", "--port", str(port), "--workdir", str(workdir), "--timeout", "180")
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"127.0.0.1:{port}" in started.stdout

        again = _cli("up", "--port", str(port), "--workdir", str(workdir))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout

        status = _cli("status", "--workdir", str(workdir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"127.0.0.1:{port}" in status.stdout
        assert pinned_version() in status.stdout
        pid = int(re.search(r"pid:\s+(\d+)", status.stdout).group(1))  # type: ignore[union-attr]

        bootstrap = f"127.0.0.1:{port}"

        async def round_trip() -> list[bytes]:
            topic = f"cli-{uuid.uuid4().hex[:8]}"
            await ensure_topics(bootstrap, [topic], partitions=1)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"hallo", key=b"melding-1")
            finally:
                await producer.stop()
            return await _consume(bootstrap, topic, 1, group_id=f"g-{topic}", enable_auto_commit=False)

        assert asyncio.run(round_trip()) == [b"hallo"]

        stopped = _cli("down", "--workdir", str(workdir))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "stopped" in stopped.stdout
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)

        after = _cli("status", "--workdir", str(workdir))
        assert after.returncode == 1, after.stdout + after.stderr
    finally:
        LocalKafka(workdir).down(timeout=10)  # never leave a broker behind, whatever failed


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.kafka
async def test_ensure_topics_is_idempotent(kafka_bootstrap: str) -> None:
    name = f"idem-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {name: 2})
    await ensure_topics(kafka_bootstrap, [name], partitions=5)  # exists: left as it is
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 2


@pytest.mark.kafka
async def test_transactional_consume_transform_produce(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., Awaitable[str]]
) -> None:
    """The hub's exactly-once loop: read, transform, write output and input offsets in one
    transaction; an aborted transaction stays invisible to ``read_committed`` readers."""
    source, sink = await kafka_topic_factory("eos-in"), await kafka_topic_factory("eos-out")
    group, count = f"eos-{uuid.uuid4().hex[:8]}", 12

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(source, f"m{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    txn = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{group}-tx")
    await consumer.start()
    await txn.start()
    try:
        done, deadline = 0, time.monotonic() + 60
        while done < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                continue
            async with txn.transaction():
                offsets: dict[TopicPartition, int] = {}
                for tp, messages in batch.items():
                    for message in messages:
                        await txn.send(sink, message.value.upper(), key=message.key)
                    offsets[tp] = messages[-1].offset + 1
                    done += len(messages)
                await txn.send_offsets_to_transaction(offsets, group)
        assert done == count

        await txn.begin_transaction()
        await txn.send_and_wait(sink, b"ABORTED")
        await txn.abort_transaction()
    finally:
        await txn.stop()
        await consumer.stop()

    committed = await _consume(kafka_bootstrap, sink, count, linger=1.5, isolation_level="read_committed")
    assert sorted(committed) == sorted(f"M{i}".encode() for i in range(count))  # no ABORTED, no duplicate
    # A read_uncommitted reader does see the aborted record: the isolation above is real.
    uncommitted = await _consume(kafka_bootstrap, sink, count + 1, isolation_level="read_uncommitted")
    assert b"ABORTED" in uncommitted

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        offsets_of_group = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert sum(meta.offset for meta in offsets_of_group.values()) == count


def _request_types() -> Iterator[type[Request]]:
    for module in pkgutil.iter_modules(aiokafka.protocol.__path__):
        importlib.import_module(f"aiokafka.protocol.{module.name}")
    pending = list(Request.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if hasattr(cls, "API_KEY") and getattr(cls, "_CLASSES", None):
            yield cls


@pytest.mark.kafka
async def test_every_aiokafka_request_type_fits_the_broker(kafka_bootstrap: str) -> None:
    """Kafka 4 dropped old protocol versions (KIP-896). aiokafka sends, per request type, the
    newest version it implements inside the broker's announced range: for every type it has
    there must be one, or that feature breaks on this broker version."""
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap)
    await client.bootstrap()
    try:
        node_id = next(iter(client.cluster.brokers())).nodeId
        broker = dict((await client._get_conn(node_id))._versions)  # the ApiVersions answer
    finally:
        await client.close()
    assert broker, "the broker announced no API versions"
    misfits = []
    for cls in _request_types():
        implemented = {struct.API_VERSION for struct in cls._CLASSES}
        low, high = broker.get(cls.API_KEY, (0, -1))
        if not any(low <= version <= high for version in implemented):
            misfits.append(f"{cls.__name__}: aiokafka {sorted(implemented)}, broker {low}..{high}")
    assert not misfits, misfits


def test_compose_uses_the_pinned_version() -> None:
    """deploy/compose.yaml runs the same broker version the local JVM broker and tests use."""
    compose = (project_root() / "deploy" / "compose.yaml").read_text(encoding="utf-8")
    assert f"apache/kafka:{pinned_version()}" in compose


def test_server_properties_single_node(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, port=19999, controller_port=19998)
    text = kafka._server_properties(pinned_version())
    assert "auto.create.topics.enable=false" in text
    assert "listeners=PLAINTEXT://127.0.0.1:19999,CONTROLLER://127.0.0.1:19998" in text
    assert "transaction.state.log.num.partitions=1" in text
    assert os.fspath(tmp_path / "data") in text
