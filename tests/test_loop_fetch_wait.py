"""While a partition is paused for its transaction, the consumer fetches with a short wait, so the
partition, resumed after its commit, is in a fetch soon; idle, the configured wait applies again.
No broker: the loop's parts with stand-ins for aiokafka's consumer (the latency this buys is
measured in bench/), and aiokafka's own fetcher for the attribute the hub sets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import SubscriptionState
from structlog.testing import capture_logs

from hub.service import TransactionalLoop, set_fetch_wait
from hub.settings import HubSettings
from hub.topics import INBOUND, REFUSALS

IN0, IN1, REF0 = TopicPartition(INBOUND, 0), TopicPartition(INBOUND, 1), TopicPartition(REFUSALS, 0)


class _Loop(TransactionalLoop):
    name = "hub"
    input_topics = (INBOUND,)
    side_topics = (REFUSALS,)


class _Consumer:
    def __init__(self, tps: set[TopicPartition], wait_ms: int) -> None:
        self.tps = tps
        self._fetcher = SimpleNamespace(_fetch_max_wait_ms=wait_ms)

    def assignment(self) -> set[TopicPartition]:
        return self.tps

    def resume(self, tp: TopicPartition) -> None:
        pass

    @property
    def wait(self) -> int:
        return self._fetcher._fetch_max_wait_ms


def _loop() -> tuple[_Loop, _Consumer, _Consumer]:
    settings = HubSettings(bootstrap_servers="unused:9092", group_id="g")
    loop = _Loop(settings)
    main, side = _Consumer({IN0, IN1}, settings.fetch_max_wait_ms), _Consumer({REF0}, settings.side_fetch_max_wait_ms)
    loop.consumer, loop.side_consumer = main, side  # type: ignore[assignment]
    return loop, main, side


def test_the_fetch_wait_is_short_only_while_a_partition_of_that_consumer_commits() -> None:
    async def scenario() -> None:
        loop, main, side = _loop()
        s = loop.settings
        commits: dict[TopicPartition, asyncio.Future[None]] = {}

        async def handle(batches: dict[TopicPartition, Any]) -> None:
            (tp,) = batches
            await commits.setdefault(tp, asyncio.get_running_loop().create_future())

        loop._handle = handle  # type: ignore[method-assign]
        for tp in (IN0, IN1):  # what _loop does with a batch of two partitions
            loop.inflight[tp] = asyncio.create_task(loop._partition_batch(tp, []))
        loop._adjust_fetch_wait(main)  # type: ignore[arg-type]
        assert main.wait == s.committing_fetch_max_wait_ms == 5
        assert side.wait == s.side_fetch_max_wait_ms, "the refusals consumer has nothing in a transaction"
        await asyncio.sleep(0)
        commits[IN0].set_result(None)
        await loop.inflight[IN0]
        assert main.wait == 5, "partition 1 is still paused for its transaction"
        commits[IN1].set_result(None)
        await loop.inflight[IN1]
        assert main.wait == s.fetch_max_wait_ms == 100 and not loop.inflight

    asyncio.run(scenario())


def test_without_the_attribute_nothing_is_set_and_the_worker_says_so_once() -> None:
    loop, main, _ = _loop()
    del main._fetcher
    loop.inflight[IN0] = None  # type: ignore[assignment]
    with capture_logs() as logs:
        loop._adjust_fetch_wait(main)  # type: ignore[arg-type]
        loop._adjust_fetch_wait(main)  # type: ignore[arg-type]
    assert [e["event"] for e in logs] == ["hub.aiokafka_tuning_skipped"]


def test_aiokafkas_fetcher_has_the_fetch_wait_the_hub_sets() -> None:
    """Guards the private attribute: a newer aiokafka without it fails here, not silently in latency."""

    async def scenario() -> None:
        client = SimpleNamespace(_loop=asyncio.get_running_loop(), _metadata_max_age_ms=300_000)
        fetcher = Fetcher(client, SubscriptionState(), fetch_max_wait_ms=100)
        try:
            consumer = SimpleNamespace(_fetcher=fetcher)
            assert set_fetch_wait(consumer, 5)  # type: ignore[arg-type]
            assert fetcher._fetch_max_wait_ms == 5
        finally:
            fetcher._fetch_task.cancel()

    asyncio.run(scenario())
