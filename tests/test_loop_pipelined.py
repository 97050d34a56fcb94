"""A partition's next batch is processed while the one before commits, and commits after it, and
only when that keeps every record: never after a batch that did not commit, unless it was read
after that batch's seek back to the committed offset. No broker: the loop's parts with stand-ins
for aiokafka's consumer and for the transaction (the same on a broker: tests/integration/)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from hub.pipeline import Record
from hub.service import TransactionalLoop
from hub.settings import HubSettings

TP = TopicPartition("meldingen.inbound", 0)


class _Consumer:
    def __init__(self) -> None:
        self.assigned = {TP}
        self.paused: set[TopicPartition] = set()
        self.resumed = 0

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)
        self.resumed += 1


class _Loop(TransactionalLoop):
    """The loop with its transaction and its start-over replaced by stand-ins that say what happened."""

    def __init__(self) -> None:
        super().__init__(HubSettings(bootstrap_servers="unused:9092", group_id="g"))
        self.consumer = _Consumer()  # type: ignore[assignment]
        self.events: list[str] = []
        self.gates: dict[int, asyncio.Future[bool]] = {}
        """First offset of a batch → whether its transaction commits, decided by the test."""

    def process(self, record: Record) -> Any:
        self.events.append(f"process {record.offset}")
        return record.offset

    async def _commit_batch(self, tp: TopicPartition, records: list[ConsumerRecord], outcomes: list[Any]) -> bool:
        first = records[0].offset
        self.events.append(f"begin {first}")
        gate = self.gates.setdefault(first, asyncio.get_running_loop().create_future())
        ok = await gate
        del self.gates[first]  # used: a batch read again from the same offset gets a gate of its own
        if not ok:
            self.events.append(f"abort {first}")
            await self._start_over(tp)
            return False
        self.events.append(f"commit {first}-{outcomes[-1]}")
        return True

    async def _start_over(self, tp: TopicPartition) -> None:
        if tp in self.revoking or self.stopping.is_set():  # as the real one: no seek for a partition
            return  # that is leaving, nor when the worker stops
        self.sought[tp] = self.sought.get(tp, 0) + 1  # what seek_to_committed counts
        self.events.append("sought back")

    def read(self, first: int, n: int = 2) -> asyncio.Task[bool]:
        """What ``_loop`` does with a batch ``getmany`` returned (without the consumer's fetch)."""
        records = [ConsumerRecord(TP.topic, 0, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in range(first, first + n)]
        before = self.inflight.get(TP)
        if before is not None:
            self.consumer.pause(TP)  # type: ignore[union-attr]
        read_at = self.sought.get(TP, 0)
        task = asyncio.create_task(self._partition_batch(TP, records, read_at, before, self.read_at.get(TP, read_at)))
        self.inflight[TP], self.read_at[TP] = task, read_at
        return task

    def commits(self, first: int, ok: bool = True) -> None:
        """Let the transaction of the batch starting at ``first`` commit (or abort), now or when it begins."""
        self.gates.setdefault(first, asyncio.get_running_loop().create_future()).set_result(ok)


def _run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario, 10))  # a transaction nobody lets commit: a failure, not a hang


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_the_next_batch_is_processed_while_one_commits_and_commits_after_it() -> None:
    async def scenario() -> None:
        loop = _Loop()
        first = loop.read(0)
        await _settle()
        second = loop.read(2)
        await _settle()
        assert loop.events == ["process 0", "process 1", "begin 0", "process 2", "process 3"]
        assert TP in loop.consumer.paused, "a third batch waits until the second one's transaction begins"
        loop.commits(0)
        loop.commits(2)
        assert await first and await second
        assert loop.events[-3:] == ["commit 0-1", "begin 2", "commit 2-3"]
        assert TP not in loop.consumer.paused and TP not in loop.inflight

    _run(scenario())


def test_a_batch_behind_one_that_did_not_commit_is_read_again_not_committed() -> None:
    async def scenario() -> None:
        loop = _Loop()
        first = loop.read(0)
        await _settle()
        second = loop.read(2)  # read before the first one's seek back
        loop.commits(0, ok=False)
        assert not await first and not await second
        assert "begin 2" not in loop.events, "its offsets would have skipped records 0 and 1"
        assert loop.events[-2:] == ["abort 0", "sought back"]
        assert TP not in loop.consumer.paused and TP not in loop.inflight, "resumed, to read them again"
        # read again from the committed offset: all four, committed once
        again = loop.read(0, 4)
        loop.commits(0)
        assert await again and loop.events[-1] == "commit 0-3"

    _run(scenario())


def test_a_batch_read_after_the_seek_back_commits_although_the_one_before_failed() -> None:
    """A batch that does not commit starts over (a new producer, the seek, a pause) before its task
    ends; the records read again meanwhile are the right ones and must not be dropped: dropped, the
    partition would resume past them, and they would be lost until a restart."""

    async def scenario() -> None:
        loop = _Loop()
        start_over_ends = asyncio.Event()
        real_start_over = loop._start_over

        async def slow_start_over(tp: TopicPartition) -> None:
            await real_start_over(tp)
            await start_over_ends.wait()  # the pause after the seek

        loop._start_over = slow_start_over  # type: ignore[method-assign]
        first = loop.read(0)
        loop.commits(0, ok=False)
        await _settle()
        assert loop.events[-1] == "sought back"
        again = loop.read(0, 4)  # fetched from the committed offset while the first one still pauses
        loop.commits(0)
        start_over_ends.set()
        assert not await first and await again
        assert loop.events[-1] == "commit 0-3"

    _run(scenario())


def test_a_batch_behind_one_whose_partition_is_revoked_is_left_to_the_next_owner() -> None:
    async def scenario() -> None:
        loop = _Loop()
        first = loop.read(0)
        await _settle()
        second = loop.read(2)
        loop.revoking.add(TP)  # the revocation waits for the batches in progress
        loop.commits(0, ok=False)  # and this one's start over does not seek (it is leaving)
        assert not await first and not await second
        assert "begin 2" not in loop.events and "sought back" not in loop.events

    _run(scenario())


def test_a_stage_failure_behind_a_commit_starts_over_only_after_that_commit() -> None:
    """A new producer while the one before is still in its transaction would fence that one."""

    async def scenario() -> None:
        loop = _Loop()
        first = loop.read(0)
        await _settle()

        def broken(record: Record) -> Any:
            raise RuntimeError("a bug outside the stages' own error handling")

        loop.process = broken  # type: ignore[method-assign]
        second = loop.read(2)
        await _settle()
        assert "sought back" not in loop.events, "the first batch is still committing"
        loop.commits(0)
        assert await first and not await second
        assert loop.events[-2:] == ["commit 0-1", "sought back"]

    _run(scenario())


@pytest.mark.parametrize("first_commits", [True, False], ids=["first-committed", "first-failed"])
def test_a_stopping_worker_finishes_the_transaction_in_progress_and_begins_no_other(first_commits: bool) -> None:
    """SIGTERM: the batch behind is read again by the partition's next owner. After a failure that
    matters most: stopping, the failed batch does not seek back, and committed, the batch behind
    it would skip the failed one's records for good."""

    async def scenario() -> None:
        loop = _Loop()
        first = loop.read(0)
        await _settle()
        second = loop.read(2)
        loop.stop()
        loop.commits(0, ok=first_commits)
        assert await first is first_commits and not await second
        assert "begin 2" not in loop.events and "sought back" not in loop.events

    _run(scenario())
