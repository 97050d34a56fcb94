"""``hub.kafka_io.collect`` waits for the delivery asked for, not for any record of the melding.

The demo's refusal round reads topics on which the refused meldingen already lie (their first
delivery): it must wait for the delivery after the refusal, however late the hub sends it.
"""

from __future__ import annotations

import asyncio

import pytest

from hub.kafka_io import collect, produce
from hub.topics import Header

pytestmark = pytest.mark.kafka


async def test_collect_waits_for_the_delivery_it_is_asked_for(kafka_bootstrap: str, kafka_topic_factory) -> None:  # noqa: ANN001
    topic = await kafka_topic_factory("collect-where", partitions=1)
    first = ((Header.MELDING_ID, b"m-1"),)
    await produce(kafka_bootstrap, topic, [(b"m-1", b"first", first)])

    async def the_second_delivery_later() -> None:
        await asyncio.sleep(3)  # longer than the settle time: a collect that took the first would be gone
        second = ((Header.MELDING_ID, b"m-1"), (Header.ROUTE_HISTORY, b"[]"))
        await produce(kafka_bootstrap, topic, [(b"m-1", b"second", second)])

    later = asyncio.create_task(the_second_delivery_later())
    found = await collect(
        kafka_bootstrap, [topic], {"m-1"}, timeout=30, settle=1, where=lambda d: Header.ROUTE_HISTORY in d.headers
    )
    await later
    assert [d.value for d in found] == [b"second"]
    everything = await collect(kafka_bootstrap, [topic], {"m-1"}, timeout=30, settle=1)
    assert [d.value for d in everything] == [b"first", b"second"], "without a filter both deliveries count"
