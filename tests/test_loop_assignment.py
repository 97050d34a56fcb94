"""How a hub worker takes its partitions: ``<name>.joined`` only when both consumers are set up,
a partition whose producer could not start is never sought (and its half-started producer is
closed), the others are. No broker: the loop's parts with stand-ins for aiokafka's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from hub import service as service_module
from hub.service import TransactionalLoop, _FenceOnAssign
from hub.settings import HubSettings
from hub.topics import INBOUND, REFUSALS


class _Loop(TransactionalLoop):
    name = "hub"
    input_topics = (INBOUND,)
    side_topics = (REFUSALS,)


class _Consumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.sought: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def committed(self, tp: TopicPartition) -> int:
        return 7

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset


def _joined(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "hub.joined"]


def test_joined_is_said_once_and_only_while_both_consumers_are_set_up() -> None:
    loop = _Loop(HubSettings(bootstrap_servers="unused:9092", group_id="g"))
    loop.consumer = _Consumer({TopicPartition(INBOUND, 0)})  # type: ignore[assignment]
    loop.side_consumer = _Consumer({TopicPartition(REFUSALS, 0)})  # type: ignore[assignment]
    with capture_logs() as logs:
        loop.assignment_changed("partitions_assigned", done=True)
        assert _joined(logs) == [], "the refusals consumer has nothing yet"
        # the refusals consumer joining a moment later rebalances the group: inbound is revoked
        loop.assignment_changed("partitions_assigned", done=False)
        loop.assignment_changed("side_partitions_assigned", done=True)
        assert _joined(logs) == [], "inbound is between its revocation and its next assignment"
        loop.assignment_changed("partitions_assigned", done=True)
        (joined,) = _joined(logs)
        assert joined["group_id"] == "g" and joined["partitions"] == [f"{INBOUND}/0", f"{REFUSALS}/0"]
        loop.assignment_changed("partitions_assigned", done=False)  # a later rebalance (a worker joins)
        loop.assignment_changed("partitions_assigned", done=True)
    assert len(_joined(logs)) == 1


def test_a_partition_whose_producer_did_not_start_is_not_sought_the_others_are() -> None:
    tps = {TopicPartition(INBOUND, p) for p in range(3)}
    loop = _Loop(HubSettings(bootstrap_servers="unused:9092", group_id="g"))
    consumer = _Consumer(tps)
    loop.consumer = consumer  # type: ignore[assignment]
    broken = TopicPartition(INBOUND, 1)

    async def producer_for(tp: TopicPartition) -> object:
        await asyncio.sleep(0.01 * tp.partition)
        if tp == broken:
            raise ConnectionError("InitProducerId failed")
        loop.producers[tp] = object()  # type: ignore[assignment]
        return loop.producers[tp]

    loop.producer_for = producer_for  # type: ignore[method-assign]
    with capture_logs() as logs, pytest.raises(ConnectionError):
        asyncio.run(_FenceOnAssign(loop).on_partitions_assigned(tps))
    assert set(consumer.sought) == tps - {broken}, "sought only after its own producer fenced the last owner"
    assert set(loop.producers) == tps - {broken}
    assert _joined(logs) == [] and not [e for e in logs if e["event"] == "hub.partitions_assigned"]


def test_a_producer_whose_start_fails_is_closed_not_left_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []

    class _Producer:
        def __init__(self, **_: Any) -> None:
            self.stopped = False
            made.append(self)

        async def start(self) -> None:
            raise ConnectionError("broker away")

        async def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(service_module, "AIOKafkaProducer", _Producer)
    loop = _Loop(HubSettings(bootstrap_servers="unused:9092", group_id="g"))
    with pytest.raises(ConnectionError):
        asyncio.run(loop.producer_for(TopicPartition(INBOUND, 0)))
    (producer,) = made
    assert producer.stopped and loop.producers == {}
