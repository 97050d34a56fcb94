"""One broker of a three-broker KRaft cluster stops mid-stream and comes back: the hub keeps
every promise (replication factor 3, ``min.insync.replicas=2``, ``acks=all``)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.kafka_admin import cluster_info
from hub.kafka_io import collect
from hub.kafka_local import LocalKafkaCluster
from hub.registry import Registry
from hub.topics import INBOUND
from tests.faults.common import (
    REGISTRY,
    StreamInBackground,
    all_topics,
    assert_exactly_once,
    progress,
    start_worker,
    wait_for_progress,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    cluster = LocalKafkaCluster(tmp_path_factory.mktemp("cluster"), nodes=3, detach=False)
    cluster.up(timeout=180)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "crashed"])
def test_a_broker_down_mid_stream_loses_and_doubles_nothing(
    cluster: LocalKafkaCluster, tmp_path: Path, sig: signal.Signals
) -> None:
    bootstrap = cluster.bootstrap_servers
    registry = Registry.load(REGISTRY)
    items = DemoFeed(registry, MunicipalityIndex.load(), seed=7_000 + int(sig)).feed(12_000, broken_each=10)
    log = tmp_path / "hub.log"
    hub = start_worker(bootstrap, log, MELDHUB_REPLICATION_FACTOR="3")
    stream = StreamInBackground(bootstrap, INBOUND, items, rate=600).start()  # ~20 s of meldingen
    try:
        wait_for_progress(300, log)
        victim = 1
        cluster.stop_node(victim, sig)
        at_stop = progress(log)
        assert stream.flowing and at_stop < len(items), "the stream was fully processed before the broker went down"
        assert _live_brokers(bootstrap, expected=2) == 2
        wait_for_progress(min(at_stop + 300, len(items)), log)  # the hub goes on with two brokers
        time.sleep(2)
        cluster.start_node(victim)
        stream.join()
        delivered = asyncio.run(collect(bootstrap, all_topics(registry), {i.melding_id for i in items}, timeout=600))
    finally:
        hub.stop()
        cluster.start_node(1)  # whatever happened, leave three brokers for the next test
    assert_exactly_once(items, delivered)


def _live_brokers(bootstrap: str, expected: int, timeout: float = 60) -> int:
    """Brokers in the cluster's metadata, polled until ``expected`` (a crashed broker stays
    listed until the controller misses its heartbeats; a request may hit the dead node)."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        try:
            count = len(asyncio.run(cluster_info(bootstrap, timeout=10))["brokers"])
        except Exception:  # noqa: BLE001 - the dead node may be asked first; ask again
            count = -1
        if count == expected:
            break
        time.sleep(0.5)
    return count
