"""Raw aiokafka consume → produce pass-through: the hub's Kafka loop without the hub's stages.

    python -m bench._passthrough --bootstrap HOST:PORT --src IN --dst OUT --group G \
        [--mode transactional|plain] [--batch N]

``transactional`` does what ``hub.service.HubService`` does around the pipeline, with the same
client settings (``hub.settings.HubSettings``, so ``MELDHUB_*`` variables apply to both): a
consumer (read_committed, same fetch sizes, fetch wait and fetcher wake-up), ``getmany`` batches
of up to the hub's batch size, one transactional producer per input partition (``acks=all``,
idempotent, the hub's linger, record batch size and retry back-off, the hub's wait before a new transaction's first AddPartitionsToTxn is retried), each partition's batch in
its own task with the partition paused until its transaction ended (and the hub's short fetch
wait meanwhile), outputs acknowledged before
the offsets join it. ``--coupled`` is the hub's earlier loop for comparison: batches of 200, all
partitions of a batch committed together before the next fetch, outputs and offsets sent
together, the clients' defaults for back-off, fetch wait, batch size and fetcher wake-up. ``plain`` is
the at-least-once loop of the hub's first version: one idempotent producer, wait for all
acknowledgements, then commit the offsets. The value, key and headers go out unchanged, so
message sizes are the input's. ``--outputs FILE`` (transactional only) writes instead, for each
input record, the records the hub wrote for it (owner topic, key, value, headers; a pickle made
by the bench before the run from the same meldingen): the hub's Kafka work, to the hub's
topics, without the hub's work per melding. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pickle
import signal
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

MAX_BYTES = 4 * 1024 * 1024


class _Listener(ConsumerRebalanceListener):
    def __init__(self, loop: Passthrough) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.loop.lock:  # waits for the batches in progress, as the hub does
            await asyncio.gather(
                *(t for tp, t in list(self.loop.inflight.items()) if tp in revoked), return_exceptions=True
            )
            for tp in revoked:
                producer = self.loop.producers.pop(tp, None)
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.loop.lock:
            if self.loop.mode == "transactional":
                for tp in assigned:
                    await self.loop.producer_for(tp)
        print("passthrough.assigned", len(assigned), time.time(), flush=True)


class Passthrough:
    def __init__(self, args: argparse.Namespace) -> None:
        self.bootstrap, self.src, self.dst, self.group = args.bootstrap, args.src, args.dst, args.group
        from hub.settings import HubSettings

        hub = HubSettings()
        if args.mode == "transactional" and not args.coupled:
            from hub.service import tune_aiokafka

            tune_aiokafka(hub)  # the hub's loop, the hub's client settings
        self.mode, self.coupled = args.mode, args.coupled
        self.batch = args.batch or (200 if self.coupled else hub.batch_size)
        self.stopping = asyncio.Event()
        self.lock = asyncio.Lock()
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self.inflight: dict[TopicPartition, asyncio.Task[None]] = {}
        self.fetch_max_wait_ms = 500 if self.coupled else hub.fetch_max_wait_ms
        self.committing_wait_ms = None if self.coupled else hub.committing_fetch_max_wait_ms
        from hub.service import set_fetch_wait

        self.set_fetch_wait = set_fetch_wait  # resolved once: called twice per batch
        self.retry_backoff_ms = 100 if self.coupled else hub.producer_retry_backoff_ms
        self.linger_ms = 5 if self.coupled else hub.producer_linger_ms
        self.batch_bytes = 16384 if self.coupled else hub.producer_batch_bytes
        self.fetcher_wakeup_ms = 200 if self.coupled else hub.fetcher_wakeup_ms
        self.outputs: dict[bytes, list[tuple]] | None = None
        if args.outputs:
            with open(args.outputs, "rb") as f:  # written by the bench itself
                self.outputs = pickle.load(f)

    def _producer(self, transactional_id: str | None) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            max_request_size=MAX_BYTES + 256 * 1024,
            linger_ms=self.linger_ms,
            max_batch_size=self.batch_bytes,
            retry_backoff_ms=self.retry_backoff_ms,
        )

    async def producer_for(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self.producers.get(tp)
        if producer is None:
            producer = self._producer(f"{self.group}.{tp.topic}.{tp.partition}")
            await producer.start()
            self.producers[tp] = producer
        return producer

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=MAX_BYTES + 64 * 1024,
            fetch_max_bytes=52428800,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            consumer_timeout_ms=self.fetcher_wakeup_ms,
        )
        plain = self._producer(None) if self.mode == "plain" else None
        if plain is not None:
            await plain.start()
        await consumer.start()
        consumer.subscribe([self.src], listener=_Listener(self))
        print("passthrough.ready", flush=True)
        try:
            while not self.stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=self.batch)
                if not batches:
                    continue
                async with self.lock:
                    if plain is None and not self.coupled:
                        for tp, records in batches.items():
                            consumer.pause(tp)
                            self.inflight[tp] = asyncio.create_task(self._partition(consumer, tp, records))
                        self._fetch_wait(consumer)
                    else:
                        await self._handle(consumer, plain, batches)
        finally:
            await asyncio.gather(*self.inflight.values(), return_exceptions=True)
            await consumer.stop()
            for producer in [*self.producers.values(), *([plain] if plain else [])]:
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _handle(self, consumer: AIOKafkaConsumer, plain: AIOKafkaProducer | None, batches: dict) -> None:
        if plain is not None:
            pending = [
                await plain.send(self.dst, value=r.value, key=r.key, headers=list(r.headers or ()))
                for records in batches.values()
                for r in records
            ]
            await asyncio.gather(*pending)
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        else:
            await asyncio.gather(*(self._commit(tp, records) for tp, records in batches.items()))

    async def _partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list) -> None:
        try:
            await self._commit(tp, records)
        finally:
            self.inflight.pop(tp, None)
            if tp in consumer.assignment():
                consumer.resume(tp)
            self._fetch_wait(consumer)

    def _fetch_wait(self, consumer: AIOKafkaConsumer) -> None:
        """As the hub's loop: the short fetch wait while a partition is paused for its transaction."""
        if self.committing_wait_ms is not None:
            self.set_fetch_wait(consumer, self.committing_wait_ms if self.inflight else self.fetch_max_wait_ms)

    async def _commit(self, tp: TopicPartition, records: list) -> None:
        producer = await self.producer_for(tp)
        async with producer.transaction():
            if self.outputs is None:
                pending = [
                    await producer.send(self.dst, value=r.value, key=r.key, headers=list(r.headers or ()))
                    for r in records
                ]
            else:  # the hub passes a record's headers on: the bench's timing headers too
                pending = [
                    await producer.send(topic, value=value, key=key, headers=headers + _bench_headers(r))
                    for r in records
                    for topic, key, value, headers in self.outputs[r.key]
                ]
            if not self.coupled:  # as the hub's loop: outputs acknowledged before the offsets
                await asyncio.gather(*pending)
            await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, self.group)
        await asyncio.gather(*pending)


def _bench_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    """The paced run's send time and sequence number of ``record`` (``bench-*``), if it has them."""
    return [(k, v) for k, v in (record.headers or ()) if k.startswith("bench-")]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench._passthrough")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--mode", choices=("transactional", "plain"), default="transactional")
    p.add_argument("--batch", type=int, default=None, help="records per getmany (default: the hub's batch_size)")
    p.add_argument("--coupled", action="store_true", help="the hub's earlier loop (see the module doc)")
    p.add_argument("--outputs", default=None, help="pickle: input key -> the hub's output records (see the module doc)")
    asyncio.run(Passthrough(p.parse_args()).run())


if __name__ == "__main__":
    sys.exit(main())
