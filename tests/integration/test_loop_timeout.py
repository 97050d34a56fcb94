"""The transactional loop gives up a transaction that hangs, and loses and doubles nothing.

A produce the broker keeps answering with a retriable error would hold a partition for ever;
``MELDHUB_TRANSACTION_TIMEOUT_S`` bounds it: the batch's transaction is abandoned (its producer
fenced), the batch read again from the committed offset and committed once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest

from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.pipeline import Pipeline
from hub.registry import Registry
from hub.routing import Router
from hub.kafka_admin import ensure_topics
from hub.service import HubService, topics_for
from hub.settings import HubSettings
from hub.topics import DEADLETTER, authority_topic
from hub.validation import make_validator

pytestmark = pytest.mark.kafka

REGISTRY = Path(__file__).parents[1] / "data" / "registry-no-layers.yaml"


async def _hub_on_one_partition(
    bootstrap: str, topic_factory, name: str, seed: int, **settings: object
) -> tuple[HubService, Registry, set[str]]:  # noqa: ANN001
    """40 valid meldingen on a fresh one-partition topic and a hub service (not started) reading it."""
    registry = Registry.load(REGISTRY)
    index = MunicipalityIndex.load()
    source = await topic_factory(name, partitions=1)
    items = DemoFeed(registry, index, seed=seed).feed(40, broken_each=0)[:40]
    await produce(bootstrap, source, ((i.key, i.value, i.headers) for i in items))

    class Service(HubService):
        input_topics = (source,)

    hub_settings = HubSettings(bootstrap_servers=bootstrap, group_id=f"{name}-{uuid.uuid4().hex[:8]}", **settings)
    await ensure_topics(bootstrap, list(topics_for(hub_settings, registry)))
    service = Service(hub_settings, Pipeline(make_validator("compiled"), Router(registry, index)))
    return service, registry, {i.melding_id for i in items}


async def _run_until_delivered(bootstrap: str, service: HubService, registry: Registry, wanted: set[str]) -> Counter[str]:
    """Run the service until every wanted melding was seen (read_committed); how often each came."""
    runner = asyncio.create_task(service.run())
    try:
        topics = [DEADLETTER, *(authority_topic(a.id) for a in registry.authorities)]
        delivered = await collect(bootstrap, topics, wanted, timeout=90, settle=2)
    finally:
        service.stop()
        await asyncio.wait_for(runner, 60)
    return Counter(d.melding_id for d in delivered)


async def test_a_hanging_transaction_is_given_up_and_the_batch_committed_once(
    kafka_bootstrap: str, kafka_topic_factory
) -> None:  # noqa: ANN001
    service, registry, wanted = await _hub_on_one_partition(
        kafka_bootstrap, kafka_topic_factory, "loop-timeout", 31, transaction_timeout_s=2.0
    )
    hangs = 0
    real_commit = service._commit_partition

    async def hang_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        nonlocal hangs
        if hangs == 0:
            hangs += 1
            await asyncio.sleep(3600)  # the broker never answers
        return await real_commit(*args, **kwargs)

    service._commit_partition = hang_once  # type: ignore[method-assign]
    counts = await _run_until_delivered(kafka_bootstrap, service, registry, wanted)
    assert hangs == 1, "the first transaction hung"
    assert set(counts) == wanted and set(counts.values()) == {1}, "each melding exactly once after the timeout"


async def test_an_unexpected_failure_outside_the_stages_never_skips_a_batch(
    kafka_bootstrap: str, kafka_topic_factory
) -> None:  # noqa: ANN001
    """The stages turn every failure into a dead letter; should the loop itself fail on a batch,
    the batch is read again from the committed offset — its records are never skipped."""
    service, registry, wanted = await _hub_on_one_partition(kafka_bootstrap, kafka_topic_factory, "loop-failure", 32)
    failures = 0
    real_process_all = service._process_all

    async def fail_once(batches):  # noqa: ANN001, ANN202
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("unexpected")
        return await real_process_all(batches)

    service._process_all = fail_once  # type: ignore[method-assign]
    counts = await _run_until_delivered(kafka_bootstrap, service, registry, wanted)
    assert failures == 1
    assert set(counts) == wanted and set(counts.values()) == {1}, "the failed batch was read again, once"


async def test_a_transaction_whose_abort_never_ends_is_left_and_the_batch_committed_once(
    kafka_bootstrap: str, kafka_topic_factory
) -> None:  # noqa: ANN001
    """The first batch's transaction hangs, and so does aiokafka's abort of it (it waits for
    batches a broker refusing every produce never acknowledges). The loop leaves the abort after
    its bounded wait; a new producer fences the old one, and the batch is committed once."""
    service, registry, wanted = await _hub_on_one_partition(
        kafka_bootstrap, kafka_topic_factory, "abort-hangs", 33, transaction_timeout_s=2.0
    )
    hangs, abort_left = 0, False
    real_commit = service._commit_partition

    async def hang_with_its_abort_once(tp, records, outcomes):  # noqa: ANN001, ANN202
        nonlocal hangs
        if hangs:
            return await real_commit(tp, records, outcomes)
        hangs += 1
        producer = await service.producer_for(tp)

        async def never_ends() -> None:  # aiokafka's abort waits for the transaction's end
            nonlocal abort_left
            abort_left = True  # the abort is stuck here for good: only leaving it frees the loop
            await asyncio.get_running_loop().create_future()

        producer._txn_manager.wait_for_transaction_end = never_ends
        async with producer.transaction():  # leaving it on cancellation runs the real abort
            await asyncio.sleep(3600)  # the broker never answers

    service._commit_partition = hang_with_its_abort_once  # type: ignore[method-assign]
    counts = await _run_until_delivered(kafka_bootstrap, service, registry, wanted)
    assert hangs == 1 and abort_left, "the first transaction hung and its abort waited for an end that never came"
    assert set(counts) == wanted and set(counts.values()) == {1}, "each melding exactly once after the abort was left"


async def test_a_producer_whose_stop_never_ends_is_closed_all_the_same(
    kafka_bootstrap: str, kafka_topic_factory, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """After a given-up transaction its producer is stopped; aiokafka's stop() first waits for the
    pending batches, which a broker refusing every produce never acknowledges. The loop leaves that
    wait and closes what stop() would have closed after it: the sender task (else it retries those
    batches for as long as the process lives) and the connections."""
    import hub.service

    monkeypatch.setattr(hub.service, "ABORT_WAIT_S", 1.0)
    service, registry, wanted = await _hub_on_one_partition(
        kafka_bootstrap, kafka_topic_factory, "stop-hangs", 34, transaction_timeout_s=2.0
    )
    stuck: list = []
    real_commit = service._commit_partition

    async def hang_with_a_stop_that_never_ends(tp, records, outcomes):  # noqa: ANN001, ANN202
        if stuck:
            return await real_commit(tp, records, outcomes)
        producer = await service.producer_for(tp)
        stuck.append(producer)

        async def never_flushed() -> None:  # the pending batches are never acknowledged
            await asyncio.get_running_loop().create_future()

        producer._message_accumulator.close = never_flushed
        async with producer.transaction():
            await asyncio.sleep(3600)  # the broker never answers

    service._commit_partition = hang_with_a_stop_that_never_ends  # type: ignore[method-assign]
    counts = await _run_until_delivered(kafka_bootstrap, service, registry, wanted)
    assert len(stuck) == 1, "the first transaction hung"
    assert set(counts) == wanted and set(counts.values()) == {1}, "each melding exactly once"
    old = stuck[0]
    assert old not in service.producers.values(), "a new producer took the partition over"
    assert old._sender.sender_task.done(), "the abandoned producer's sender no longer runs"
    assert not any(conn.connected() for conn in old.client._conns.values()), "and its connections are closed"
