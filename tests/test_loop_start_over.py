"""After a batch that did not commit, the loop never resumes a partition it could not seek back.

A broker away longer than the transaction timeout makes the new producer's start fail. Resumed
without the seek, the partition's position would be after the batch that did not commit, and the
next transaction's offsets would skip it: the batch lost. The loop retries until it can seek.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from hub import service as service_module
from hub.service import TransactionalLoop
from hub.settings import HubSettings

TP = TopicPartition("meldingen.inbound", 0)


class _Consumer:
    def __init__(self) -> None:
        self.sought: list[int] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def committed(self, tp: TopicPartition) -> int:
        return 40

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append(offset)


def _loop(monkeypatch, failures: int) -> tuple[TransactionalLoop, _Consumer, list[str]]:  # noqa: ANN001
    monkeypatch.setattr(service_module, "RETRY_DELAY_S", 0.0)
    loop = TransactionalLoop(HubSettings(bootstrap_servers="unused:9092", group_id="g"))
    consumer = _Consumer()
    loop.consumer = consumer  # type: ignore[assignment]
    attempts: list[str] = []

    async def producer_for(tp: TopicPartition) -> object:
        attempts.append("start")
        if len(attempts) <= failures:
            raise ConnectionError("broker away")
        loop.producers[tp] = object()  # type: ignore[assignment]
        return loop.producers[tp]

    async def close_producers(tps: set[TopicPartition] | None = None) -> None:
        for tp in tps or set():
            loop.producers.pop(tp, None)

    loop.producer_for = producer_for  # type: ignore[method-assign]
    loop.close_producers = close_producers  # type: ignore[method-assign]
    return loop, consumer, attempts


def test_a_failed_producer_start_is_retried_until_the_partition_is_sought_back(monkeypatch) -> None:  # noqa: ANN001
    loop, consumer, attempts = _loop(monkeypatch, failures=3)
    asyncio.run(loop._start_over(TP))
    assert attempts == ["start"] * 4, "three failed starts, then one that worked"
    assert consumer.sought == [40], "sought back to the committed offset before the partition may resume"


def test_a_partition_being_revoked_is_left_to_its_next_owner(monkeypatch) -> None:  # noqa: ANN001
    loop, consumer, attempts = _loop(monkeypatch, failures=10**6)
    loop.revoking.add(TP)
    asyncio.run(asyncio.wait_for(loop._start_over(TP), 5))
    assert attempts == [] and consumer.sought == [], "no retries for a partition that is leaving"
