"""A real local broker for the Kafka benchmarks, and what they do with it.

``local_broker()`` starts ``hub.kafka_local.LocalKafka`` in a temp dir on a free port (in the
bench's process group, so a killed bench takes it along) and always stops it. Between scenarios
the topics are deleted and created again, so every scenario starts from empty topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from hub.kafka_admin import ensure_topics
from hub.kafka_io import partitions_of

ROOT = Path(__file__).resolve().parents[1]
# aiokafka logs a warning per retried batch right after a topic is re-created (stale leader): noise here.
logging.getLogger("aiokafka").setLevel(logging.ERROR)
SENT_HEADER = "bench-sent-ns"
SEQ_HEADER = "bench-seq"
MAX_BYTES = 8 * 1024 * 1024


@contextlib.contextmanager
def local_broker() -> Iterator[tuple[str, Path]]:
    """(bootstrap, work dir) of a fresh single-node broker; stopped and removed on exit."""
    from hub.kafka_local import LocalKafka, free_port

    workdir = Path(tempfile.mkdtemp(prefix="meldhub-bench-"))
    kafka = LocalKafka(workdir / "kafka", port=free_port(), detach=False)
    try:
        yield kafka.up(timeout=180), workdir
    finally:
        kafka.down()
        shutil.rmtree(workdir, ignore_errors=True)


async def recreate_topics(
    bootstrap: str, topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Delete ``topics`` if they exist, wait until they are gone, create them empty."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="meldhub-bench")
    await admin.start()
    try:
        existing = set(await admin.list_topics()) & set(topics)
        if existing:
            await admin.delete_topics(sorted(existing))
            deadline = time.monotonic() + 60
            while set(await admin.list_topics()) & existing:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics not deleted: {sorted(existing)}")
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    for attempt in range(50):  # a just-deleted name can be refused for a moment
        try:
            await ensure_topics(bootstrap, dict(topics), configs=configs)
            return
        except Exception:  # noqa: BLE001
            if attempt == 49:
                raise
            await asyncio.sleep(0.3)


def _producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms,
        max_request_size=MAX_BYTES,
    )  # fmt: skip


async def produce_backlog(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, tuple]]) -> int:
    """Send records as fast as the producer batches them; wait for every acknowledgement."""
    producer = _producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=list(h)) for k, v, h in records]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def wait_consumed(
    bootstrap: str, group: str, topic: str, timeout: float, alive: Any = None, poll_s: float = 0.5
) -> list[tuple[float, int]]:
    """Wait until ``group`` has committed the end of every partition of ``topic``.

    Returns the samples taken on the way: (``time.time()``, records committed), one per poll
    that saw the count change. ``alive()`` (optional) is asked on every poll: a consumer that
    died fails at once."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="meldhub-bench")
    await consumer.start()
    await admin.start()
    samples: list[tuple[float, int]] = []
    try:
        parts = await _partitions(bootstrap, [topic])
        end = await consumer.end_offsets(parts)
        while True:
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError:  # the group coordinator is not there yet (offsets topic being made)
                committed = {}
            now = time.time()
            done = sum(max(committed[tp].offset, 0) for tp in parts if tp in committed)
            if not samples or samples[-1][1] != done:
                samples.append((now, done))
            if all(tp in committed and committed[tp].offset >= end[tp] for tp in parts):
                return samples
            if alive is not None and not alive():
                raise RuntimeError(f"the consumer of group {group} exited before it consumed {topic}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{group} consumed {done} of {sum(end.values())} records in {timeout:.0f}s")
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()
        await consumer.stop()


def committed_rate(samples: list[tuple[float, int]], since: float, already: int = 0) -> tuple[float, int]:
    """(records/second, records counted) from ``since`` (wall-clock seconds: when the consumer got
    its partitions, ``already`` records committed then) to the last commit: the records' whole
    processing, first fetch and first batch included, start-up not. NaN without a later commit."""
    if not samples or samples[-1][0] <= since or samples[-1][1] <= already:
        return float("nan"), 0
    t1, n1 = samples[-1]
    return (n1 - already) / (t1 - since), n1 - already


def last_line(log_path: Path, marker: str) -> str | None:
    """The last line of a child's log that contains ``marker`` (None when there is none yet)."""
    lines = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if marker in ln]
    return lines[-1] if lines else None


def assigned_at(log_path: Path, marker: str, since_byte: int | None = None) -> float:
    """Wall-clock time of the last line containing ``marker`` in a child's log, or with
    ``since_byte`` the first one from that offset on (the child's own run in a log it shares with
    earlier runs): the JSON ``timestamp`` (ISO, UTC) of a hub line, or the trailing epoch seconds
    of a pass-through line."""
    from datetime import datetime

    if since_byte is None:
        line = last_line(log_path, marker)
    else:
        with log_path.open("rb") as f:
            f.seek(since_byte)
            text = f.read().decode("utf-8", errors="replace")
        line = next((ln for ln in text.splitlines() if marker in ln), None)
    if line is None:
        raise LookupError(f"no {marker!r} in {log_path}")
    if line.startswith("{"):
        import json

        return datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
    return float(line.split()[-1])


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``); NaN elsewhere or
    for no process."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def broker_pid(workdir: Path) -> int | None:
    """The local broker's JVM (its command line names ``workdir``), for its CPU time."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in cmdline and str(workdir) in cmdline:
            return int(proc.name)
    return None


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that ``group`` has committed so far (0 before its first commit)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="meldhub-bench")
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        committed = {}
    finally:
        await admin.close()
    return sum(o.offset for tp, o in committed.items() if tp.topic == topic and o.offset > 0)


@dataclass
class Out:
    topic: str
    timestamp_ms: int
    received_ns: int
    headers: dict[str, str]


async def read_all(bootstrap: str, topics: list[str]) -> list[Out]:
    """Every committed record of ``topics`` (from the beginning up to the current end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_BYTES, fetch_max_bytes=4 * MAX_BYTES,
    )  # fmt: skip
    await consumer.start()
    try:
        parts = await _partitions(bootstrap, topics)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        found: list[Out] = []
        while True:
            positions = {tp: await consumer.position(tp) for tp in parts}
            if all(positions[tp] >= end[tp] for tp in parts):
                return found
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            now = time.time_ns()
            for records in batches.values():
                found += [Out(r.topic, r.timestamp, now, _headers(r)) for r in records]
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    found = await partitions_of(bootstrap, topics)  # raises for a topic that does not exist
    parts = [TopicPartition(t, p) for t in topics for p in found[t]]
    if not parts:
        raise LookupError(f"no partitions for {topics}")
    return parts


async def start_group_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit the end of ``topics`` for a new consumer group, so a consumer that joins it reads only
    what is sent from now on (the hub starts a new group at the beginning) and a run can reuse the
    topics of the previous one."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await _partitions(bootstrap, topics)
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        await consumer.commit({tp: await consumer.position(tp) for tp in parts})
    finally:
        await consumer.stop()


def _headers(r: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", errors="replace") for k, v in (r.headers or ()) if k.startswith("bench-")}


async def paced(
    bootstrap: str,
    src: str,
    outputs: list[str],
    records: list[tuple[bytes, bytes, tuple]],
    rate: float,
    seconds: float,
    warmup: int,
    drain_timeout: float,
    paced_warmup_s: float = 0.0,
) -> tuple[list[float], int, int, float]:
    """Send ``warmup`` records, then ``rate`` records/s for ``paced_warmup_s`` (not measured either),
    then ``rate`` records/s for ``seconds`` with a send-time header, while a read_committed
    consumer of ``outputs`` notes when each arrives.

    Returns (latencies in ms of the measured records that arrived, in sending order; sent, arrived,
    achieved send rate).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed",
        fetch_max_wait_ms=50, max_partition_fetch_bytes=MAX_BYTES,
    )  # fmt: skip
    await consumer.start()
    parts = await _partitions(bootstrap, outputs)
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    arrived: dict[int, int] = {}
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = time.time_ns()
            for recs in batches.values():
                for r in recs:
                    h = _headers(r)
                    if SEQ_HEADER in h:
                        arrived[int(h[SEQ_HEADER])] = now - int(h[SENT_HEADER])

    collector = asyncio.create_task(collect())
    producer = _producer(bootstrap, linger_ms=0)
    await producer.start()
    n = int(rate * seconds)
    sent_futures = []
    try:
        for i in range(warmup):  # not measured: the first batches pay for warm caches
            k, v, h = records[i % len(records)]
            sent_futures.append(await producer.send(src, value=v, key=k, headers=list(h)))
        await asyncio.gather(*sent_futures)
        await asyncio.sleep(2.0)
        unmeasured = int(rate * paced_warmup_s)  # at the rate, but without a sequence number
        t0 = measured_from = time.monotonic()
        for i in range(unmeasured + n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            k, v, h = records[(warmup + i) % len(records)]
            seq = i - unmeasured
            headers = list(h)
            if seq >= 0:
                if seq == 0:
                    measured_from = time.monotonic()
                headers += [(SEQ_HEADER, str(seq).encode()), (SENT_HEADER, str(time.time_ns()).encode())]
            sent_futures.append(await producer.send(src, value=v, key=k, headers=headers))
        send_rate = n / max(time.monotonic() - measured_from, 1e-9)
        await asyncio.gather(*sent_futures)
        deadline = time.monotonic() + drain_timeout
        while len(arrived) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await collector
        await producer.stop()
        await consumer.stop()
    return [arrived[i] / 1e6 for i in sorted(arrived)], n, len(arrived), send_rate  # in sending order


class Child:
    """A child process (the hub or the pass-through) in its own session, output to a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
                start_new_session=True,
            )  # fmt: skip

    def wait_for(self, marker: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            if marker in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path.name}: exited with {self.proc.returncode}:\n{text[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.log_path.name}: no {marker!r} after {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def passthrough(
    bootstrap: str, src: str, dst: str, group: str, mode: str, log_path: Path, outputs: Path | None = None
) -> Child:
    """``mode``: ``transactional`` (the hub's loop), ``coupled`` (its earlier loop) or ``plain``;
    ``outputs``: write the hub's outputs per input instead of the input (``bench/_passthrough.py``)."""
    argv = [sys.executable, "-m", "bench._passthrough", "--bootstrap", bootstrap, "--src", src, "--dst", dst,
            "--group", group, "--mode", "plain" if mode == "plain" else "transactional"]  # fmt: skip
    if mode == "coupled":
        argv.append("--coupled")
    if outputs is not None:
        argv += ["--outputs", str(outputs)]
    return Child(argv, log_path)


def start_hub(
    bootstrap: str, group: str, validator: str, log_path: Path, env: Mapping[str, str] | None = None
) -> Any:
    """``meldhub hub run`` (``hub.demo_run.HubProcess``) with ``MELDHUB_VALIDATOR=validator``
    (and ``env``), returned once it is in its group with both consumers (``hub.joined``). It
    used to return at the inbound consumer's assignment; the refusals consumer's came ~1.5 s
    later (the worker is still busy starting up), and its set-up holds the loop's lock that the
    inbound batches need. In one of five latency runs the first measured meldingen took ~3 s."""
    from hub.demo_run import HubProcess

    env = {"MELDHUB_VALIDATOR": validator, "MELDHUB_PARTITIONS": "3", **(env or {})}
    return HubProcess(bootstrap, log_path, "--group-id", group, env=env).start(timeout=120)
