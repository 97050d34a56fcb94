"""What every polled authority adapter's status poll must do, beside the consume loop that
delivers: never report a delivery's ``Toegewezen aan`` a second time, never lose a later change,
and after a stop repeat the delivery's own event. Shared by the TOPdesk and Signalen tests; each
passes its harness (``worker``, ``store``, ``deliver``, ``poll``, ``restart``) and how its tool
moves a melding on to ``In behandeling`` (496)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.pipeline import Record
from hub.status import StatusChange, StatusHeader
from hub.topics import STATUS

MoveOn = Callable[[str], None]
"""melding id → the vendor's ticket moves to a status mapped to In behandeling (496)."""


def _event(output: Any) -> StatusChange:
    assert output.topic == STATUS, output.topic
    return StatusChange.from_jsonld(json.loads(output.value))


async def assert_poll_leaves_an_unacknowledged_delivery(h: Any, record: Record, move_on: MoveOn) -> None:
    """While a delivery's Toegewezen aan waits for the broker's acknowledgement, a poll that reads
    the new ticket reports nothing, and a later change waits until the acknowledgement."""
    delivering = await h.worker.handle(record)  # its Toegewezen aan is not acknowledged yet
    assert [o.topic for o in delivering.outputs] == [STATUS]
    assert await h.poll() == [], "Toegewezen aan is on its way already"
    move_on(record.key.decode())  # type: ignore[union-attr]
    assert await h.poll() == [], "a later change waits until the delivery's status is acknowledged"
    delivering.done()
    (out,) = await h.poll()
    assert _event(out).status.notation == "496" and dict(out.headers)[StatusHeader.PREVIOUS] == b"557"
    assert await h.poll() == []


async def assert_a_held_change_is_read_again_without_overlap(
    h: Any, first: Record, second: Record, move_on: MoveOn, time_passes: Callable[[], None] = lambda: None
) -> None:
    """``poll_overlap_s: 0`` (``h``'s config): a ticket left for the next round keeps the cursor
    before its change, though a later change of another ticket was read in the same round."""
    h.store.set_cursor(datetime.now(UTC) - timedelta(seconds=1))  # the adapter polled before
    await h.deliver(first)
    delivering = await h.worker.handle(second)  # its Toegewezen aan is not acknowledged yet
    move_on(second.key.decode())  # type: ignore[union-attr]
    time_passes()
    move_on(first.key.decode())  # type: ignore[union-attr]  # changed after the second
    (out,) = await h.poll()
    assert out.key == first.key and _event(out).status.notation == "496"
    delivering.done()
    (out,) = await h.poll()
    assert out.key == second.key and _event(out).status.notation == "496"
    assert dict(out.headers)[StatusHeader.PREVIOUS] == b"557"
    assert await h.poll() == []


async def assert_a_stop_before_the_store_moved_repeats_the_same_event(h: Any, record: Record) -> None:
    """The broker acknowledged the delivery's Toegewezen aan, the adapter stopped before its store
    moved: after the restart the poll reports it again as the same event (same id, date and
    text), which the status stage and the channels take as one; the record read again reports
    nothing."""
    (delivered,) = (await h.worker.handle(record)).outputs  # acknowledged; its after-ack steps never ran
    h.restart()
    (polled,) = await h.poll()
    first, again = _event(delivered), _event(polled)
    assert (again.event_id, again.statusdatum, again.beschrijving) == (first.event_id, first.statusdatum, first.beschrijving)
    assert await h.deliver(record) == [] and await h.poll() == []
