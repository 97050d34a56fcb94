"""The hub on a real broker against the physical limit: a raw Kafka pass-through.

One local broker (``hub.kafka_local.LocalKafka``, temp dir, free port, stopped at the end), one run:

(a) raw aiokafka consume → produce pass-through (``bench/_passthrough.py``) over the same
    meldingen (same sizes), 3 partitions in and out: *transactional* does the hub's Kafka work
    the way the hub's loop does it (read_committed, one transaction per input partition batch
    with its offsets, partitions independent, same client settings), *coupled* the hub's earlier
    loop (all partitions of a fetch committed together, client defaults), *plain* the
    at-least-once loop (acknowledged, then committed); (a*) is *transactional* from the hub's inbound
    topic writing, for each melding, the records the hub wrote for it (owner topics): the hub's
    Kafka work without its work per melding;
(b) the hub, ``meldhub hub run`` as a subprocess with ``MELDHUB_VALIDATOR=compiled``;
(c) the same with ``MELDHUB_VALIDATOR=pyshacl``.

Throughput: a backlog of valid DemoFeed meldingen is written to the input topic first, then the
consumer starts; messages/second = records committed / the time from the consumer getting its
partitions (the time in its log line) to its last commit (offsets read every 50 ms): the whole
processing counts, start-up does not. (Output timestamps are no clock for this: a transactional
consumer stamps its outputs when it sends them, after processing the whole batch, so with batches
of 1000 their spread leaves most of the processing out.) Latency: 500 meldingen/second for a fixed
time, each with a send-time header; a read_committed consumer of the owner topics notes when each arrives (what an authority's consumer
sees: committed, visible); p50/p99 over the measured ones (a warm-up burst and then ``PACED_WARMUP_S`` at the rate are not measured); the hub and the raw transactional
pass-through are each run ``LATENCY_ROUNDS`` times, in turn, and their percentiles are over all runs. The
broker's JVM is warmed up first with one unmeasured paced run of the pass-through and the hub.
CPU time of the consumer under test and of the broker comes from /proc (Linux). Idle: the broker's
cores on its own, with one idle hub connected, and with one whose inbound fetch wait is 10 ms.
Targets (reported, not asserted): hub throughput ≥ 50 % of the raw pass-through; p99 < 50 ms at
500 meldingen/s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import DOCS, feed_items, median, met, percentile, pyplot, table
from bench._kafka import (
    assigned_at,
    broker_pid,
    committed_rate,
    committed_total,
    cpu_seconds,
    last_line,
    local_broker,
    paced,
    passthrough,
    produce_backlog,
    read_all,
    recreate_topics,
    start_group_at_end,
    start_hub,
    wait_consumed,
)

ORDER = 20
PARTITIONS = 3
BACKLOG = {"transactional": 20_000, "hub-outputs": 20_000, "coupled": 12_000, "plain": 20_000, "compiled": 30_000, "pyshacl": 2_500, "group": 40_000}
"""Meldingen per throughput run: enough for many batches of 1000 per partition at each consumer's
rate. With 10,000 the hub drained in ~3 batches per partition, and filling and emptying that
pipeline (first fetch, last commit) showed as ~1.5× less than its sustained rate (bench/, 2026-12-03)."""
RATE = 500.0
SECONDS = {"transactional": 20.0, "hub-outputs": 20.0, "coupled": 15.0, "plain": 15.0, "compiled": 20.0, "pyshacl": 6.0}
WARMUP = 200
PACED_WARMUP_S = 2.0
"""Seconds at the measured rate before measuring: what is measured is the steady rate, not its onset."""
DRAIN_TIMEOUT = 90.0
TARGET_SHARE = 0.5
GROUP_WORKERS = 2
POLL_S = 0.05
"""How often the group's committed offsets are read while a backlog drains (the rate's clock)."""
TARGET_P99_MS = 50.0
LOW_RATE, LOW_SECONDS = 30.0, 30.0
"""A quieter rate, measured too: a partition paused for its transaction waited for the fetch in
flight for the other partitions, up to the 100 ms fetch wait when they were quiet, so at 30/s the
hub's p99 was ~90–120 ms, worse than at 500/s (bench/, 2026-12-03)."""
LATENCY_ROUNDS = 3
"""Paced runs of the hub and of the raw transactional pass-through, taken in turn; p50/p99 over all
their meldingen together. One run's tail moved by ±25 ms with the machine (2026-12-03), more than
the change it was to show."""
IDLE_S, IDLE_SETTLE_S = 10.0, 6.0

RAW_IN, RAW_OUT = "bench.passthrough.in", "bench.passthrough.out"


def _records(n: int) -> list[tuple[bytes, bytes, tuple]]:
    items = feed_items(2_000)
    return [(items[i % len(items)].key, items[i % len(items)].value, items[i % len(items)].headers) for i in range(n)]


def _hub_topics() -> tuple[dict[str, int], dict[str, dict[str, str]], list[str]]:
    from hub.registry import Registry
    from hub.service import topics_for
    from hub.settings import HubSettings
    from hub.topics import DEADLETTER, authority_topic

    registry = Registry.load(None)
    configs = topics_for(HubSettings(), registry)
    outputs = [DEADLETTER, *sorted({authority_topic(a.id) for a in registry.authorities})]
    return {name: PARTITIONS for name in configs}, configs, outputs


class _Cpu:
    """CPU seconds of the consumer under test and of the broker while a backlog drains, per record
    consumed after the sampling started (start-up and the records before excluded, roughly)."""

    def __init__(self, bootstrap: str, group: str, topic: str, worker: int, workdir: Path) -> None:
        self.bootstrap, self.group, self.topic, self.worker = bootstrap, group, topic, worker
        self.broker = broker_pid(workdir)

    async def start(self) -> None:
        self.done0 = await committed_total(self.bootstrap, self.group, self.topic)
        self.c0 = (cpu_seconds(self.worker), cpu_seconds(self.broker))

    def stop(self, n: int) -> dict[str, float]:
        c1 = (cpu_seconds(self.worker), cpu_seconds(self.broker))
        records = max(n - self.done0, 1)
        return {"worker_us": (c1[0] - self.c0[0]) / records * 1e6, "broker_us": (c1[1] - self.c0[1]) / records * 1e6}


def _hub_outputs(workdir: Path) -> Path:
    """What the hub writes for each of the bench's meldingen (its pipeline, in this process), as
    the pickle ``bench/_passthrough.py --outputs`` replays: input key → output records."""
    import pickle

    from hub.pipeline import Record
    from hub.service import build_pipeline
    from hub.settings import HubSettings
    from hub.topics import INBOUND

    pipe, _ = build_pipeline(HubSettings(validator="compiled"))
    outputs: dict[bytes, list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
    for i, (key, value, headers) in enumerate(_records(len(feed_items(2_000)))):
        o = pipe.process(Record(value=value, key=key, headers=tuple(headers), topic=INBOUND, partition=0, offset=i))
        outputs[key] = [(x.topic, x.key, x.value, list(x.headers)) for x in (*o.extra, o.output)]
    path = workdir / "hub-outputs.pickle"
    path.write_bytes(pickle.dumps(outputs))
    return path


async def _raw_throughput(bootstrap: str, mode: str, workdir: Path) -> dict[str, Any]:
    """``mode`` as ``bench/_passthrough.py``, or ``hub-outputs``: transactional, from the hub's
    inbound topic to the hub's outputs (owner topics) as the hub wrote them."""
    from hub.topics import INBOUND

    replay = mode == "hub-outputs"
    if replay:
        topics, configs, outputs = _hub_topics()
        await recreate_topics(bootstrap, topics, configs)
        src, dsts = INBOUND, outputs
    else:
        await recreate_topics(bootstrap, {RAW_IN: PARTITIONS, RAW_OUT: PARTITIONS})
        src, dsts = RAW_IN, [RAW_OUT]
    n = await produce_backlog(bootstrap, src, _records(BACKLOG[mode]))
    group = f"bench-raw-{mode}-{uuid.uuid4().hex[:6]}"
    log = workdir / "logs" / f"passthrough-{mode}.log"
    if replay:
        child = passthrough(bootstrap, src, RAW_OUT, group, "transactional", log, outputs=_hub_outputs(workdir))
    else:
        child = passthrough(bootstrap, src, RAW_OUT, group, mode, log)
    try:
        await asyncio.to_thread(child.wait_for, "passthrough.assigned")
        cpu = _Cpu(bootstrap, group, src, child.proc.pid, workdir)
        await cpu.start()
        samples = await wait_consumed(
            bootstrap, group, src, timeout=300, alive=lambda: child.proc.poll() is None, poll_s=POLL_S
        )
        used = cpu.stop(n)
    finally:
        child.stop()
    outs = await read_all(bootstrap, dsts)
    rate, counted = committed_rate(samples, since=assigned_at(child.log_path, "passthrough.assigned"))
    return {"n": n, "out": len(outs), "rate": rate, "counted": counted, "dead": 0, **used}


def _start_hub(bootstrap: str, group: str, variant: str, log: Path) -> Any:
    return start_hub(bootstrap, group, variant, log)


async def _hub_throughput(bootstrap: str, variant: str, workdir: Path) -> dict[str, Any]:
    from hub.topics import DEADLETTER, INBOUND

    topics, configs, outputs = _hub_topics()
    await recreate_topics(bootstrap, topics, configs)
    n = await produce_backlog(bootstrap, INBOUND, _records(BACKLOG[variant]))
    group = f"bench-hub-{variant}-{uuid.uuid4().hex[:6]}"
    log_path = workdir / "logs" / f"hub-{variant}.log"
    start_byte = log_path.stat().st_size if log_path.exists() else 0
    process = await asyncio.to_thread(_start_hub, bootstrap, group, variant, log_path)
    try:
        cpu = _Cpu(bootstrap, group, INBOUND, process.proc.pid, workdir)
        await cpu.start()
        samples = await wait_consumed(
            bootstrap, group, INBOUND, timeout=600, poll_s=POLL_S,
            alive=lambda: process.proc is not None and process.proc.poll() is None,
        )  # fmt: skip
        used = cpu.stop(n)
    finally:
        process.stop()
    outs = await read_all(bootstrap, outputs)
    # from its first inbound assignment in this run: it works on the backlog from then on. The
    # last one was taken before; one run gave 11,535/s at 180 µs of CPU each, 2.1 cores from one
    # process, which only a too late start explains (a later rebalance, e.g. the refusals
    # consumer joining after the first assignment), against 3,800-4,700/s in reruns
    since = assigned_at(process.log_path, '"hub.partitions_assigned"', since_byte=start_byte)
    rate, counted = committed_rate(samples, since=since)
    dead = sum(o.topic == DEADLETTER for o in outs)
    return {"n": n, "out": len(outs), "rate": rate, "counted": counted, "dead": dead, **used}


async def _hub_group_throughput(bootstrap: str, workers: int, workdir: Path) -> dict[str, Any]:
    """The hub as a consumer group of ``workers`` processes over a backlog, as (b). The workers
    start together; the rate counts only the records committed after the group settled (every
    worker owns inbound partitions), so neither start-up nor the rebalance is in it."""
    from hub.topics import DEADLETTER, INBOUND

    topics, configs, outputs = _hub_topics()
    await recreate_topics(bootstrap, topics, configs)
    n = await produce_backlog(bootstrap, INBOUND, _records(BACKLOG["group"]))
    group = f"bench-hub-group-{uuid.uuid4().hex[:6]}"
    logs = [workdir / "logs" / f"hub-group-{i}.log" for i in range(workers)]
    processes = list(
        await asyncio.gather(*(asyncio.to_thread(_start_hub, bootstrap, group, "compiled", log) for log in logs))
    )
    try:
        settled = await _settled(processes, workers)
        already = await committed_total(bootstrap, group, INBOUND)
        samples = await wait_consumed(
            bootstrap, group, INBOUND, timeout=600, poll_s=POLL_S,
            alive=lambda: all(p.proc.poll() is None for p in processes),
        )  # fmt: skip
    finally:
        for p in processes:
            p.stop()
    outs = await read_all(bootstrap, outputs)
    rate, counted = committed_rate(samples, since=settled, already=already)
    return {"n": n, "out": len(outs), "rate": rate, "counted": counted, "dead": sum(o.topic == DEADLETTER for o in outs)}


async def _settled(processes: list[Any], workers: int, timeout: float = 60.0) -> float:
    """Wait until the last assignment of every worker leaves each with a share of inbound;
    the wall-clock time from which the group works undisturbed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [last_line(p.log_path, '"hub.partitions_assigned"') for p in processes]
        if len(lines) == workers and all(line and "meldingen.inbound/" in line for line in lines):
            await asyncio.sleep(0.5)  # the group's last rebalance settles
            return time.time()
        await asyncio.sleep(0.3)
    raise TimeoutError(f"{workers} hub workers did not each get inbound partitions within {timeout:.0f} s")


async def _latency(
    bootstrap: str, target: str, workdir: Path, fresh: bool = False, rate: float = RATE, seconds: float | None = None
) -> dict[str, Any]:
    """One paced run. ``fresh``: on topics created anew (else on the last run's, the new consumer
    group starting at their end). The broker's first transaction markers to new partitions held
    the hub's commits for 0.7–2.6 s, once, a few seconds into a run (aiokafka's debug log:
    AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS that long); topics that already existed
    showed no such stall (bench/, 2026-12-03). Owner topics are not created minutes before load in
    use, so only unmeasured runs take fresh topics."""
    from hub.topics import INBOUND

    logs = workdir / "logs"
    seconds = SECONDS[target] if seconds is None else seconds
    if target in ("transactional", "coupled", "plain"):
        group = f"bench-lat-raw-{target}-{uuid.uuid4().hex[:6]}"
        if fresh:
            await recreate_topics(bootstrap, {RAW_IN: PARTITIONS, RAW_OUT: PARTITIONS})
        else:
            await start_group_at_end(bootstrap, group, [RAW_IN])
        child: Any = passthrough(bootstrap, RAW_IN, RAW_OUT, group, target, logs / f"latency-raw-{target}.log")
        await asyncio.to_thread(child.wait_for, "passthrough.assigned")
        src, outputs = RAW_IN, [RAW_OUT]
    else:
        topics, configs, outputs = _hub_topics()
        group = f"bench-lat-{target}-{uuid.uuid4().hex[:6]}"
        if fresh:
            await recreate_topics(bootstrap, topics, configs)
        else:
            await start_group_at_end(bootstrap, group, [INBOUND])
        if target == "hub-outputs":  # (a*): the hub's outputs to its topics, without its work per melding
            replay = workdir / "hub-outputs.pickle"  # made by the throughput run (a*), else now
            child = passthrough(bootstrap, INBOUND, RAW_OUT, group, "transactional", logs / "latency-raw-hub-outputs.log",
                                outputs=replay if replay.exists() else _hub_outputs(workdir))
            await asyncio.to_thread(child.wait_for, "passthrough.assigned")
        else:
            child = await asyncio.to_thread(_start_hub, bootstrap, group, target, logs / f"latency-{target}.log")
        src = INBOUND
    broker = broker_pid(workdir)
    try:
        c0 = (cpu_seconds(child.proc.pid), cpu_seconds(broker), time.monotonic())
        warm_s = 0.0 if target == "pyshacl" else PACED_WARMUP_S  # it never reaches the rate: no backlog first
        records = _records(WARMUP + int(rate * (warm_s + seconds)))
        lat, sent, arrived, send_rate = await paced(
            bootstrap, src, outputs, records, rate, seconds, WARMUP, DRAIN_TIMEOUT, warm_s
        )
        c1 = (cpu_seconds(child.proc.pid), cpu_seconds(broker), time.monotonic())
    finally:
        child.stop()
    wall = c1[2] - c0[2]
    p99 = percentile(lat, 0.99)
    return {
        "seconds": seconds, "sent": sent, "arrived": arrived, "send_rate": send_rate,
        "p50": median(lat), "p99": p99, "max": max(lat) if lat else float("nan"),
        "worker_cores": (c1[0] - c0[0]) / wall, "broker_cores": (c1[1] - c0[1]) / wall, "lat": lat,
        "rounds": [p99],
    }  # fmt: skip


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several paced runs of one consumer as one: percentiles over all their meldingen, each run's p99 kept."""
    lat = [x for run in runs for x in run["lat"]]
    return {
        "seconds": sum(run["seconds"] for run in runs), "sent": sum(run["sent"] for run in runs),
        "arrived": sum(run["arrived"] for run in runs), "send_rate": median([run["send_rate"] for run in runs]),
        "p50": median(lat), "p99": percentile(lat, 0.99), "max": max(lat) if lat else float("nan"),
        "worker_cores": median([run["worker_cores"] for run in runs]),
        "broker_cores": median([run["broker_cores"] for run in runs]),
        "lat": lat, "rounds": [run["p99"] for run in runs],
    }  # fmt: skip


async def _all(bootstrap: str, workdir: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    # Not measured: the broker's JIT compiler took up to 0.6 of the two cores during the first two
    # minutes of load (per-thread CPU of the JVM) and made whichever scenario ran first look slow.
    for target in ("transactional", "compiled"):
        await _latency(bootstrap, target, workdir, fresh=True)
    results["idle"] = await _idle(bootstrap, workdir)
    results["txn-start"] = await _txn_start(bootstrap)
    for mode in ("transactional", "hub-outputs", "coupled", "plain"):
        results[f"raw-{mode}"] = await _raw_throughput(bootstrap, mode, workdir)
    for variant in ("compiled", "pyshacl"):
        results[f"hub-{variant}"] = await _hub_throughput(bootstrap, variant, workdir)
    results["hub-group"] = await _hub_group_throughput(bootstrap, GROUP_WORKERS, workdir)
    # Not measured either: these create the topics the latency runs then share (see _latency).
    for target in ("transactional", "compiled"):
        await _latency(bootstrap, target, workdir, fresh=True)
    rounds: dict[str, list[dict[str, Any]]] = {"transactional": [], "hub-outputs": [], "compiled": []}
    for _ in range(LATENCY_ROUNDS):  # in turn, so a slow stretch of the machine hits both
        for target, runs in rounds.items():
            runs.append(await _latency(bootstrap, target, workdir))
    for target, runs in rounds.items():
        results[f"latency-{target}"] = _pooled(runs)
    for target in ("transactional", "compiled"):
        results[f"latency-low-{target}"] = await _latency(bootstrap, target, workdir, rate=LOW_RATE, seconds=LOW_SECONDS)
    for target in ("coupled", "plain", "pyshacl"):  # pyshacl last: it leaves a backlog behind
        results[f"latency-{target}"] = await _latency(bootstrap, target, workdir)
    return results


async def _idle(bootstrap: str, workdir: Path) -> dict[str, float]:
    """Cores the broker uses on its own, with one idle hub connected (nothing to consume), and
    with one idle hub whose inbound fetch wait is 10 ms (what one consumer for inbound and
    refusals needed); and each idle hub's own: what a hub costs while nobody reports anything."""
    topics, configs, _ = _hub_topics()
    await recreate_topics(bootstrap, topics, configs)
    broker = broker_pid(workdir)
    result = {"broker_alone": (await _cores([broker]))[0]}
    for name, env in (("hub", {}), ("hub_10ms", {"MELDHUB_FETCH_MAX_WAIT_MS": "10"})):
        group = f"bench-idle-{uuid.uuid4().hex[:6]}"
        log = workdir / "logs" / f"{name}-idle.log"
        process = await asyncio.to_thread(start_hub, bootstrap, group, "compiled", log, env)
        try:
            await asyncio.sleep(IDLE_SETTLE_S)  # both consumers joined, the group settled
            result[f"broker_with_{name}"], result[name] = await _cores([broker, process.proc.pid])
        finally:
            process.stop()
    return result


async def _cores(pids: list[int]) -> list[float]:
    """Cores each process used over the next ``IDLE_S`` seconds."""
    c0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    await asyncio.sleep(IDLE_S)
    wall = time.monotonic() - t0
    return [(cpu_seconds(pid) - c) / wall for pid, c in zip(pids, c0, strict=True)]


async def _txn_start(bootstrap: str, n: int = 150, warm: int = 20) -> dict[str, float]:
    """Milliseconds from a transaction's first sends to their acknowledgement, right after the
    previous transaction of the same producer committed (as a partition's batches follow each
    other): median over ``n`` transactions of 3 meldingen-sized records, with aiokafka's own wait
    before retrying CONCURRENT_TRANSACTIONS (20 ms) and with the hub's (``txn_start_retry_ms``)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer import sender

    from hub.service import tune_aiokafka
    from hub.settings import HubSettings

    await recreate_topics(bootstrap, {RAW_OUT: PARTITIONS})
    value = _records(1)[0][1]
    own = sender.BACKOFF_OVERRIDE
    result: dict[str, float] = {}
    try:
        for name in ("aiokafka", "hub"):
            if name == "aiokafka":
                sender.BACKOFF_OVERRIDE = 0.02
            else:
                tune_aiokafka(HubSettings())
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap, transactional_id=f"bench-txn-{name}-{uuid.uuid4().hex[:6]}",
                enable_idempotence=True, acks="all", retry_backoff_ms=HubSettings().producer_retry_backoff_ms,
            )  # fmt: skip
            await producer.start()
            waits = []
            try:
                for _ in range(n):
                    async with producer.transaction():
                        t0 = time.perf_counter()
                        pending = [await producer.send(RAW_OUT, value=value, key=b"%d" % j) for j in range(3)]
                        await asyncio.gather(*pending)
                        waits.append((time.perf_counter() - t0) * 1000)
            finally:
                await producer.stop()
            result[name] = median(waits[warm:])
        result["samples"] = n - warm
    finally:
        sender.BACKOFF_OVERRIDE = own
    return result


def _stage_costs(n: int = 2_000, passes: int = 3) -> dict[str, float]:
    """CPU µs per melding of each step of the hub's route stage, in this process, over ``n`` of the
    meldingen the throughput runs use (best of ``passes``; each step over all meldingen in turn, so
    caches are warmer than in the hub, whose whole record sum is therefore a lower bound; the
    typed-literal cache is emptied before each pass)."""
    import logging
    import os

    import structlog

    from hub import logs, pipeline
    from hub.melding import Melding
    from hub.service import HubService, build_pipeline, record_of
    from hub.settings import HubSettings
    from hub.shacl_compiled._terms import typed_lit
    from aiokafka.structs import ConsumerRecord

    settings = HubSettings(validator="compiled")
    pipe, _ = build_pipeline(settings)
    service = HubService(settings, pipe)
    consumed = [
        ConsumerRecord("meldingen.inbound", 0, i, 0, 0, k, v, None, len(k), len(v), list(h))
        for i, (k, v, h) in enumerate(_records(n))
    ]
    records = [record_of(c) for c in consumed]
    docs = [pipeline.decode(r.value) for r in records]
    models = [Melding.from_jsonld(d) for d in docs]
    decisions = [pipeline.route(m, pipe.router) for m in models]
    outcomes = [pipe.process(r) for r in records]

    def best(step: Any, items: list[Any]) -> float:
        times = []
        for _ in range(passes):
            typed_lit.cache_clear()  # dates differ in every melding: in the hub this cache rarely hits
            t0 = time.process_time()
            for item in items:
                step(item)
            times.append((time.process_time() - t0) / len(items) * 1e6)
        return min(times)

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        logs.configure("INFO", stream=devnull)  # the hub's logging, its lines discarded
        try:
            costs = {
                "decode": best(lambda r: pipeline.decode(r.value), records),
                "validate": best(pipe.validator.validate, docs),
                "model": best(Melding.from_jsonld, docs),
                "route": best(lambda m: pipeline.route(m, pipe.router), models),
                "forward": best(lambda i: pipeline.forward(records[i], models[i], decisions[i]), range(n)),
                "log line": best(lambda o: service.log_outcome(o, 0, 0), outcomes),
                "metrics": best(service.count, outcomes),
                "whole record": best(lambda c: service.log_outcome(service.process(record_of(c)), 0, 0), consumed),
            }
        finally:  # nothing may write to the closed devnull afterwards
            structlog.reset_defaults()
            root.handlers[:], root.level = saved[0], saved[1]
    return costs


def run() -> str:
    started = time.monotonic()
    stages = _stage_costs()
    with local_broker() as (bootstrap, workdir):
        r = asyncio.run(_all(bootstrap, workdir))
    raw, raw_plain, raw_coupled = r["raw-transactional"], r["raw-plain"], r["raw-coupled"]
    replay, idle, txn = r["raw-hub-outputs"], r["idle"], r["txn-start"]
    comp, ref, group = r["hub-compiled"], r["hub-pyshacl"], r["hub-group"]

    def share(x: dict[str, Any]) -> str:
        return f"{x['rate'] / raw['rate']:.0%}"

    def us(x: dict[str, Any], key: str) -> str:
        return f"{x[key]:.0f}"

    throughput = table(
        ["consumer", "meldingen", "out", "counted", "msg/s", "vs raw transactional", "consumer CPU µs/melding",
         "broker CPU µs/melding"],
        [
            ["(a) raw pass-through, transactional (the hub's Kafka work, the hub's loop)", raw["n"], raw["out"], raw["counted"],
             f"{raw['rate']:.0f}", "100%", us(raw, "worker_us"), us(raw, "broker_us")],
            ["(a*) raw pass-through, transactional, writing the hub's own outputs to its owner topics "
             "(the hub's Kafka work without its work per melding)", replay["n"], replay["out"], replay["counted"],
             f"{replay['rate']:.0f}", share(replay), us(replay, "worker_us"), us(replay, "broker_us")],
            ["(a'') raw pass-through, transactional, the earlier coupled loop", raw_coupled["n"], raw_coupled["out"], raw_coupled["counted"],
             f"{raw_coupled['rate']:.0f}", share(raw_coupled), us(raw_coupled, "worker_us"), us(raw_coupled, "broker_us")],
            ["(a') raw pass-through, plain at-least-once", raw_plain["n"], raw_plain["out"], raw_plain["counted"], f"{raw_plain['rate']:.0f}",
             share(raw_plain), us(raw_plain, "worker_us"), us(raw_plain, "broker_us")],
            ["(b) hub, compiled validator", comp["n"], comp["out"], comp["counted"], f"{comp['rate']:.0f}", f"**{share(comp)}**",
             us(comp, "worker_us"), us(comp, "broker_us")],
            ["(c) hub, pyshacl", ref["n"], ref["out"], ref["counted"], f"{ref['rate']:.0f}", f"**{share(ref)}**",
             us(ref, "worker_us"), us(ref, "broker_us")],
            [f"(b{GROUP_WORKERS}) hub, compiled validator, {GROUP_WORKERS} workers in one consumer group (counted "
             "after the group settled)", group["n"], group["out"], group["counted"], f"{group['rate']:.0f}",
             share(group), "", ""],
        ],
    )  # fmt: skip
    lat_rows = []
    for key, label in (
        ("latency-transactional", "(a) raw pass-through, transactional (the hub's loop)"),
        ("latency-hub-outputs", "(a*) raw pass-through, transactional, writing the hub's own outputs to its owner "
                                "topics"),
        ("latency-coupled", "(a'') raw pass-through, transactional, the earlier coupled loop"),
        ("latency-plain", "(a') raw pass-through, plain at-least-once"),
        ("latency-compiled", "(b) hub, compiled validator"),
        ("latency-low-transactional", f"(a) raw pass-through, transactional, at {LOW_RATE:.0f}/s"),
        ("latency-low-compiled", f"(b) hub, compiled validator, at {LOW_RATE:.0f}/s"),
        ("latency-pyshacl", "(c) hub, pyshacl"),
    ):
        x = r[key]
        lat_rows.append(
            [label, _duration(x), x["sent"], x["arrived"], f"{x['send_rate']:.0f}",
             f"{x['p50']:.1f}", f"**{x['p99']:.1f}**", f"{x['max']:.0f}", f"{x['worker_cores']:.2f}",
             f"{x['broker_cores']:.2f}"]
        )  # fmt: skip
    latency = table(
        ["consumer", "duration", "sent", "arrived", "sent/s", "p50 ms", "p99 ms", "max ms", "consumer cores",
         "broker cores"],
        lat_rows,
    )  # fmt: skip
    chart = _chart(r)

    from hub.settings import HubSettings

    settings = HubSettings()
    b_over_a = comp["rate"] / raw["rate"]
    lat_c = r["latency-compiled"]
    p99_ok = lat_c["p99"] < TARGET_P99_MS and lat_c["arrived"] == lat_c["sent"]
    lat_p = r["latency-pyshacl"]
    notes = [
        f"- **b/a = {b_over_a:.2f}** (hub with the compiled validator ÷ raw transactional pass-through); "
        f"target ≥ {TARGET_SHARE:.0%}: {met(b_over_a >= TARGET_SHARE)}. Against the plain at-least-once "
        f"pass-through: {comp['rate'] / raw_plain['rate']:.2f}. The hub with pyshacl reaches "
        f"{ref['rate'] / raw['rate']:.0%} of the raw pass-through; compiled ÷ pyshacl = "
        f"{comp['rate'] / ref['rate']:.1f}× end to end.",
        f"- p99 at {RATE:.0f} meldingen/s, hub with the compiled validator: {lat_c['p99']:.1f} ms over "
        f"{len(lat_c['rounds'])} runs of {lat_c['seconds'] / len(lat_c['rounds']):.0f} s taken in turn with the raw "
        f"transactional pass-through (each run's p99: hub "
        + ", ".join(f"{p:.1f}" for p in lat_c["rounds"])
        + "; raw " + ", ".join(f"{p:.1f}" for p in r["latency-transactional"]["rounds"])
        + f" ms); target < {TARGET_P99_MS:.0f} ms: {met(p99_ok)}. With pyshacl the hub cannot keep {RATE:.0f}/s up "
        f"(it reaches ~{ref['rate']:.0f}/s): the backlog grows for {lat_p['seconds']:.0f} s and latency with it "
        f"({lat_p['arrived']} of {lat_p['sent']} arrived within {DRAIN_TIMEOUT:.0f} s of the last send).",
        f"- At {LOW_RATE:.0f} meldingen/s (one run of {LOW_SECONDS:.0f} s each, after the rounds above): hub p50 "
        f"{r['latency-low-compiled']['p50']:.1f} ms, p99 {r['latency-low-compiled']['p99']:.1f} ms; raw transactional "
        f"p50 {r['latency-low-transactional']['p50']:.1f}, p99 {r['latency-low-transactional']['p99']:.1f} ms. A "
        "consumer has one fetch per broker in flight; a partition paused for its transaction joins only the next "
        "one, so while a partition commits the loop fetches with a short wait "
        f"({settings.committing_fetch_max_wait_ms} ms, `committing_fetch_max_wait_ms`), else with "
        f"{settings.fetch_max_wait_ms} ms: with {settings.fetch_max_wait_ms} ms throughout, p99 at this rate was "
        "~90–120 ms (bench/, 2026-12-03), worse than at 500/s.",
        "- Where the hub's latency goes: (a*), the pass-through writing the hub's own outputs to its owner topics "
        "(the hub's Kafka work without its work per melding), in the same rounds: p50 "
        f"{r['latency-hub-outputs']['p50']:.1f} ms, p99 {r['latency-hub-outputs']['p99']:.1f} ms (each run's p99: "
        + ", ".join(f"{p:.1f}" for p in r["latency-hub-outputs"]["rounds"])
        + f" ms). Of the hub's p50 over (a)'s ({lat_c['p50'] - r['latency-transactional']['p50']:+.1f} ms), "
        f"{r['latency-hub-outputs']['p50'] - r['latency-transactional']['p50']:+.1f} ms come with writing to the "
        f"owner topics (more partitions per transaction) and {lat_c['p50'] - r['latency-hub-outputs']['p50']:+.1f} ms "
        "with the hub's work per melding; at p99: "
        f"{r['latency-hub-outputs']['p99'] - r['latency-transactional']['p99']:+.1f} and "
        f"{lat_c['p99'] - r['latency-hub-outputs']['p99']:+.1f} ms.",
        "- The latency runs share topics that unmeasured runs created before them; each run's new consumer group "
        "starts at the end of its input. On topics created seconds before, the broker's first transaction markers "
        "to the new partitions held the hub's commits for 0.7–2.6 s once per run (aiokafka's debug log: "
        "AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS that long), which alone made its p99 seconds; the "
        "hub's transactions span more partitions (up to one per owner topic) than the pass-through's one topic. "
        f"Each run also sends {WARMUP} meldingen and then {PACED_WARMUP_S:.0f} s at the rate before it measures.",
        f"- Dead letters in the throughput runs: {comp['dead']} (compiled), {ref['dead']} (pyshacl) — all inputs "
        "are valid meldingen, so both hubs routed every one.",
        f"- Where the time goes: the hub's process spends {comp['worker_us']:.0f} µs of CPU per melding, the "
        f"transactional pass-through {raw['worker_us']:.0f} µs (its Kafka client work only); the broker "
        f"{comp['broker_us']:.0f} and {raw['broker_us']:.0f} µs. The hub's Kafka work itself is not what limits "
        f"it: the pass-through that writes the hub's own outputs to the owner topics (a*) reaches "
        f"{replay['rate']:.0f} msg/s ({share(replay)}) with {replay['worker_us']:.0f} µs per melding in its process "
        f"and {replay['broker_us']:.0f} in the broker. The difference is the hub's work per "
        "melding; its steps, timed in this run's own process on 2,000 of the same meldingen (CPU µs each): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stages.items() if k != "whole record")
        + f"; the whole record (process, log line, metrics) {stages['whole record']:.0f}. "
        + _where(comp, raw),
        f"- Scaling out: the hub is a consumer group, each input partition with its own transactions, so workers "
        f"add up where there are cores for them. On these two cores {GROUP_WORKERS} workers reach "
        f"{group['rate']:.0f} msg/s ({group['rate'] / comp['rate']:.2f}× one worker): the workers and the broker "
        "compete for the same CPU, and three partitions split two to one.",
        "- Everything shares two cores: the broker's JVM, the hub (or pass-through), the load generator and the "
        "observing consumer. Before any measurement, one unmeasured paced run of the raw pass-through and one of the "
        "hub warm the broker's JVM up (its JIT compiler alone took up to 0.6 cores in the first two minutes of "
        "load). The raw pass-through is itself Python (aiokafka); a JVM client would set a higher limit. Latency includes the transaction commit (outputs become visible at commit) and the observer's fetch.",
        f"- Latency is the transactions' more than the validator's: at {RATE:.0f}/s each partition batch holds a "
        "few meldingen, and each is one transaction (AddPartitionsToTxn, produce, AddOffsetsToTxn, "
        "TxnOffsetCommit, EndTxn, markers; outputs visible only at commit). The broker then spends "
        f"{r['latency-compiled']['broker_cores']:.2f} cores on the hub's stream and "
        f"{r['latency-transactional']['broker_cores']:.2f} on the raw transactional one (table), so the raw "
        f"loop with the hub's settings has p99 {r['latency-transactional']['p99']:.0f} ms itself; the earlier "
        f"coupled loop {r['latency-coupled']['p99']:.0f} ms, the plain at-least-once one "
        f"{r['latency-plain']['p99']:.0f} ms. The hub's loop runs partitions independently, retries the "
        "coordinator's CONCURRENT_TRANSACTIONS after 10 ms instead of 100 and sends the offsets only after the "
        "outputs are acknowledged (together, a 3.6+ broker's check of each transactional write collided with "
        "the coordinator recording the offsets, and aiokafka retried such writes as NOT_ENOUGH_REPLICAS). Two "
        "causes of the hub's earlier tail (found with a temporary probe, not part of this run): aiokafka's "
        "fetcher can miss the end of a fetch that finished while a paused partition resumed and then fetched "
        "nothing until its wake-up ran out, 200 ms by default: every partition stalled 200–250 ms a few times "
        f"a minute; the hub wakes it every {settings.fetcher_wakeup_ms} ms.",
        f"- A partition's next transaction starts right after its last commit, while the coordinator still "
        "writes that commit's markers: it answers the first AddPartitionsToTxn with CONCURRENT_TRANSACTIONS, and "
        "aiokafka retries after a fixed 20 ms. Measured in this run (3 records per transaction, median of "
        f"{txn['samples']:.0f}): first acknowledgement {txn['aiokafka']:.1f} ms with aiokafka's 20 ms, "
        f"{txn['hub']:.1f} ms with the hub's {settings.txn_start_retry_ms:g} ms "
        f"({txn['aiokafka'] / txn['hub']:.1f}× sooner). The hub and the transactional pass-through (a) set it.",
        f"- Idle (nothing to consume, {IDLE_S:.0f} s after the group settled): the broker alone used "
        f"{idle['broker_alone']:.3f} cores, with one idle hub connected {idle['broker_with_hub']:.3f} (the hub "
        f"itself {idle['hub']:.3f}), with one idle hub whose inbound fetch wait is 10 ms "
        f"{idle['broker_with_hub_10ms']:.3f} (that hub {idle['hub_10ms']:.3f}). The hub reads meldingen.refusals "
        f"with a consumer of its own (fetch wait {settings.side_fetch_max_wait_ms} ms), so its idle partitions "
        "never hold a fetch that a resumed inbound partition must wait for, and the inbound fetch wait can be "
        f"{settings.fetch_max_wait_ms} ms; with one consumer for both topics it had to be 10 ms, and every "
        "empty fetch costs the broker CPU.",
    ]
    return "\n\n".join(
        [
            "## The hub on Kafka: throughput and latency against a raw pass-through",
            "`bench/bench_hub.py`: one local Apache Kafka broker, 3 partitions per topic, valid DemoFeed "
            f"meldingen of ~{_avg_size():.1f} kB. (a) is the baseline measured in the same run.",
            "### Throughput (backlog drained; committed records from partition assignment to the last commit)",
            throughput,
            f"### Latency inbound → owner topic at {RATE:.0f} meldingen/s",
            latency,
            f"![throughput and latency]({chart})",
            "\n".join(notes),
            f"<sub>{time.monotonic() - started:.0f} s including broker start-up</sub>",
        ]
    )


def _duration(run: dict[str, Any]) -> str:
    n = len(run["rounds"])
    return f"{run['seconds']:.0f} s" if n == 1 else f"{n} × {run['seconds'] / n:.0f} s"


def _where(comp: dict[str, Any], raw: dict[str, Any]) -> str:
    """Whether the hub waited or worked: with a core busy, only less work per melding helps."""
    busy = comp["rate"] * comp["worker_us"] / 1e6
    text = (
        f"The hub kept {busy:.2f} of a core busy (rate × CPU per melding; the pass-through "
        f"{raw['rate'] * raw['worker_us'] / 1e6:.2f}). "
    )
    if busy < 0.8:
        return text + (
            "A partition's next batch is fetched and processed only after its transaction committed, so with "
            "three partitions the process also waits: overlapping a partition's next batch with its commit "
            "would help, and so would less work per melding."
        )
    budget = 1e6 / (TARGET_SHARE * raw["rate"]) - raw["worker_us"]
    return text + (
        "One hub process is about CPU-bound (Python runs it on one core), so the ratio is one of work per "
        f"melding: for {TARGET_SHARE:.0%} of this pass-through, everything the hub does beyond the Kafka "
        f"client's work would have to fit in ~{budget:.0f} µs per melding on one core "
        f"(now ~{comp['worker_us'] - raw['worker_us']:.0f} µs), or the work be spread over workers with cores "
        "of their own (next note)."
    )


def _avg_size() -> float:
    items = feed_items(2_000)
    return sum(len(i.value) for i in items) / len(items) / 1024


def _chart(r: dict[str, dict[str, Any]]) -> str:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    labels = ["raw\ntransactional", "raw\ncoupled", "raw\nplain", "hub\ncompiled", "hub\npyshacl"]
    rates = [r[k]["rate"] for k in ("raw-transactional", "raw-coupled", "raw-plain", "hub-compiled", "hub-pyshacl")]
    colors = ["#b0b0b0", "#c8c8c8", "#e0e0e0", "#1f77b4", "#ff7f0e"]
    ax1.bar(labels, rates, color=colors)
    for i, v in enumerate(rates):
        ax1.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("meldingen / second")
    ax1.set_title("Throughput (backlog drained)", fontsize=10)
    keys = ("latency-transactional", "latency-coupled", "latency-plain", "latency-compiled", "latency-pyshacl")
    lab2 = labels
    p50 = [r[k]["p50"] for k in keys]
    p99 = [r[k]["p99"] for k in keys]
    x = range(len(keys))
    ax2.bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#9ecae1")
    ax2.bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#3182bd")
    for i in x:
        ax2.text(i + 0.2, p99[i], f"{p99[i]:.0f}", ha="center", va="bottom", fontsize=8)
    ax2.axhline(TARGET_P99_MS, color="red", linestyle="--", linewidth=1, label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax2.set_xticks(list(x), lab2)
    ax2.set_yscale("log")
    ax2.set_ylabel("ms inbound → owner topic (log)")
    ax2.set_title(f"Latency at {RATE:.0f} meldingen/s", fontsize=10)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    name = "benchmarks-hub.png"
    fig.savefig(DOCS / name)
    plt.close(fig)
    return name
