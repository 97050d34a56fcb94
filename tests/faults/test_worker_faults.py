"""Hub workers killed again and again, and scaled out, while meldingen stream through a real
broker: every melding reaches its owner's topic (or the dead letters) exactly once, as seen
by a ``read_committed`` consumer — what an intercommunale's Kafka client sees."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect
from hub.registry import Registry
from hub.topics import INBOUND
from tests.faults.common import (
    REGISTRY,
    StreamInBackground,
    all_topics,
    assert_exactly_once,
    melding_lines,
    start_worker,
    wait_for_progress,
)

pytestmark = pytest.mark.kafka

KILLS = 10
STREAM = 20_000


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(REGISTRY)


def test_sigkill_a_worker_ten_times_during_20000_meldingen(
    kafka_bootstrap: str, registry: Registry, tmp_path: Path
) -> None:
    feed = DemoFeed(registry, MunicipalityIndex.load(), seed=6_000_001)
    items = feed.feed(STREAM - 8 * 50, broken_each=50)
    assert len(items) == STREAM
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [start_worker(kafka_bootstrap, log) for log in logs]
    # a worker restart takes seconds: 10 of them fit well within ~60 s of stream
    stream = StreamInBackground(kafka_bootstrap, INBOUND, items, rate=350).start()
    try:
        done = 0
        for kill in range(KILLS):
            # let the group make real progress between kills, then kill one worker mid-batch
            done = wait_for_progress(done + STREAM // (KILLS * 3), *logs)
            victim = kill % 2
            workers[victim].kill()
            # not waiting for it to join: the next kill may come during the rebalance its joining
            # starts (joined, each kill would cost a whole rebalance: ~6 s, longer than the stream)
            workers[victim] = start_worker(kafka_bootstrap, logs[victim], until="hub.ready")
        assert stream.flowing and done < STREAM, "the stream was fully processed before the last kill"
        stream.join()
        delivered = asyncio.run(
            collect(kafka_bootstrap, all_topics(registry), {i.melding_id for i in items}, timeout=900, settle=5)
        )
    finally:
        for worker in workers:
            worker.stop()
    assert_exactly_once(items, delivered)


def test_a_rebalance_under_load_loses_and_doubles_nothing(
    kafka_bootstrap: str, registry: Registry, tmp_path: Path
) -> None:
    """Workers join and leave gracefully (SIGTERM) while the stream flows: partitions move
    between members of the group several times."""
    feed = DemoFeed(registry, MunicipalityIndex.load(), seed=6_000_002)
    # long enough for a fast hub: ~2,000 meldingen/s per worker on a 2-core machine
    items = feed.feed(24_000, broken_each=10)
    logs = [tmp_path / f"worker-{n}.log" for n in "abc"]
    workers = [start_worker(kafka_bootstrap, logs[0])]
    # streamed, not produced up front: every partition keeps getting meldingen while workers join,
    # so each joiner's partitions have work left however fast the first worker drains its own
    stream = StreamInBackground(kafka_bootstrap, INBOUND, items, rate=1_000).start()
    try:
        done = wait_for_progress(300, *logs)
        workers.append(start_worker(kafka_bootstrap, logs[1]))  # scale out to 2
        done = wait_for_progress(done + 400, *logs)
        workers.append(start_worker(kafka_bootstrap, logs[2]))  # and 3
        _wait_for_assignment(logs[2])
        done = wait_for_progress(done + 400, *logs)
        assert done < len(items) - 500, "the stream was nearly processed before the last rebalance"
        assert stream.flowing, "the stream ended before the last rebalance"
        assert workers[0].stop(signal.SIGTERM) == 0  # scale in: the first one leaves cleanly
        stream.join()
        delivered = asyncio.run(
            collect(kafka_bootstrap, all_topics(registry), {i.melding_id for i in items}, timeout=600, settle=3)
        )
    finally:
        for worker in workers:
            worker.stop()
    assert_exactly_once(items, delivered)
    # the work really was shared: every worker that ran committed meldingen
    assert all(melding_lines(log) > 0 for log in logs)


def _wait_for_assignment(log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while '"hub.partitions_assigned"' not in (log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"{log.name}: no partitions assigned within {timeout:.0f}s")
        time.sleep(0.1)
