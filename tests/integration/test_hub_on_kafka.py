"""The hub as a user runs it (``meldhub hub run`` subprocess) on a real Kafka broker."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from hub.demo import BROKEN_KINDS, DemoFeed, FeedItem
from hub.demo_run import HubProcess
from hub.geo import MunicipalityIndex
from hub.kafka_io import Delivered, collect, produce
from hub.registry import Registry
from hub.topics import DEADLETTER, INBOUND, REFUSALS, Header, authority_topic
from tests.oracle import expected_owner

pytestmark = pytest.mark.kafka

REGISTRY = Path(__file__).parents[1] / "data" / "registry-no-layers.yaml"
HUB_ENV = {"MELDHUB_REGISTRY": str(REGISTRY)}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(REGISTRY)


@pytest.fixture(scope="module")
def index() -> MunicipalityIndex:
    return MunicipalityIndex.load()


def _all_topics(registry: Registry) -> list[str]:
    return [DEADLETTER, *(authority_topic(a.id) for a in registry.authorities)]


def _by_id(delivered: list[Delivered]) -> dict[str, list[Delivered]]:
    out: dict[str, list[Delivered]] = defaultdict(list)
    for d in delivered:
        out[d.melding_id].append(d)
    return out


def test_every_melding_lands_once_on_its_owner_topic_or_the_dead_letter_topic(
    kafka_bootstrap: str, registry: Registry, index: MunicipalityIndex, tmp_path: Path
) -> None:
    feed = DemoFeed(registry, index, seed=20261124)
    items = feed.feed(210, broken_each=3)
    # odd records a producer can send besides broken meldingen
    odd = [
        FeedItem(b"odd-tombstone", None, (), "odd-tombstone", "not-json"),  # type: ignore[arg-type]
        FeedItem(b"odd-array", b"[1, 2, 3]", (), "odd-array", "not-jsonld"),
        FeedItem(b"odd-deep", b"[" * 100_000 + b"]" * 100_000, (), "odd-deep", "not-json"),
    ]
    hub = HubProcess(kafka_bootstrap, tmp_path / "hub.log", env=HUB_ENV).start()
    try:
        asyncio.run(produce(kafka_bootstrap, INBOUND, ((i.key, i.value, i.headers) for i in items + odd)))
        wanted = {i.melding_id for i in items + odd}
        delivered = asyncio.run(collect(kafka_bootstrap, _all_topics(registry), wanted, timeout=240, settle=3))
        assert hub.proc is not None and hub.proc.poll() is None, "bad input must never stop the hub"
    finally:
        hub.stop()

    by_id = _by_id(delivered)
    assert len([i for i in items if i.kind == "valid"]) >= 200
    for item in items + odd:
        got = by_id.get(item.melding_id, [])
        assert len(got) == 1, f"{item.kind} melding {item.melding_id} delivered {len(got)} times"
        (d,) = got
        if item.kind == "valid":
            owner = expected_owner(item.category, item.municipality_nis)
            assert d.topic == authority_topic(owner), (item.category, item.municipality_nis)
            doc = json.loads(d.value)
            authority = next(a for a in registry.authorities if a.id == owner)
            assert doc["behandelaar"] == authority.identifier
            assert d.headers[Header.AUTHORITY] == owner
            assert d.headers[Header.RULESET_VERSION] == registry.version
            assert d.key == item.key
        else:
            assert d.topic == DEADLETTER
            assert d.headers[Header.ERROR_CLASS] == item.kind
            assert d.value == item.value, "a dead letter keeps the original bytes"
            assert d.headers[Header.ORIGINAL_TOPIC] == INBOUND
            assert d.headers[Header.ERROR_REASON]

    # every error class the issue names was exercised
    assert {d.headers[Header.ERROR_CLASS] for d in delivered if d.topic == DEADLETTER} >= set(BROKEN_KINDS)

    # the hub's log: JSON lines, correlation id on each melding line, no personal data
    log_text = (tmp_path / "hub.log").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    melding_lines = [ln for ln in lines if ln["event"].startswith("melding.")]
    assert len(melding_lines) == len(items) + len(odd)
    assert all(ln.get("correlation_id") for ln in melding_lines)
    for item in items:
        if item.reporter:
            for secret in item.reporter:
                assert secret not in log_text, "personal data in the hub log"


def _routed_count(log_path: Path) -> int:
    if not log_path.exists():
        return 0
    return log_path.read_text(encoding="utf-8", errors="replace").count('"melding.')


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_the_hub_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str, registry: Registry, index: MunicipalityIndex, tmp_path: Path, sig: signal.Signals
) -> None:
    feed = DemoFeed(registry, index, seed=int(sig) * 1000 + 1)
    # long enough that the kill lands mid-stream: SIGTERM lets the batches in progress finish, up to
    # one fetch (1000 records, MELDHUB_BATCH_SIZE) per partition
    items = feed.feed(8000, broken_each=2)
    log_path = tmp_path / "hub.log"
    hub = HubProcess(kafka_bootstrap, log_path, env=HUB_ENV).start()
    try:
        baseline = _routed_count(log_path)
        asyncio.run(produce(kafka_bootstrap, INBOUND, ((i.key, i.value, i.headers) for i in items)))
        deadline = time.monotonic() + 120
        while _routed_count(log_path) - baseline < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _routed_count(log_path) - baseline >= 50, "the hub did not start processing"
        hub.stop(sig)
        done_before_kill = _routed_count(log_path) - baseline
        assert done_before_kill < len(items), "the stream had already been fully processed: not a mid-stream kill"
    finally:
        hub.stop()

    hub = HubProcess(kafka_bootstrap, log_path, env=HUB_ENV).start()
    try:
        wanted = {i.melding_id for i in items}
        delivered = asyncio.run(collect(kafka_bootstrap, _all_topics(registry), wanted, timeout=240))
    finally:
        hub.stop()

    by_id = _by_id(delivered)
    lost = [i.melding_id for i in items if i.melding_id not in by_id]
    assert not lost, f"{len(lost)} meldingen lost after {sig.name}"
    for item in items:
        topics = {d.topic for d in by_id[item.melding_id]}
        expected = (
            authority_topic(expected_owner(item.category, item.municipality_nis))
            if item.kind == "valid"
            else DEADLETTER
        )
        assert topics == {expected}
        assert len(by_id[item.melding_id]) == 1, f"melding delivered twice after {sig.name}"


def _events(log_path: Path) -> list[dict[str, object]]:
    out = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("event"), str):
            out.append(doc)
    return out


def test_a_started_hub_is_in_its_group_with_both_consumers_and_says_so_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``HubProcess.start`` (the demo's, the tests' and the benchmark's) returns at ``hub.joined``:
    the inbound and the refusals consumer both have their partitions, so what is fed next waits
    for no group join. A second worker joining later rebalances the group; each says joined once."""
    group = f"joined-{uuid.uuid4().hex[:8]}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = HubProcess(kafka_bootstrap, first_log, "--group-id", group, env=HUB_ENV).start()
    try:
        names = [str(e["event"]) for e in _events(first_log)]
        assert names.count("hub.joined") == 1
        before = names[: names.index("hub.joined")]
        assert "hub.partitions_assigned" in before and "hub.side_partitions_assigned" in before
        (joined,) = [e for e in _events(first_log) if e["event"] == "hub.joined"]
        assert joined["group_id"] == group
        assert {str(p).rsplit("/", 1)[0] for p in joined["partitions"]} == {INBOUND, REFUSALS}  # type: ignore[attr-defined]

        assigned_before = [e["event"] for e in _events(first_log)].count("hub.partitions_assigned")
        second = HubProcess(kafka_bootstrap, second_log, "--group-id", group, env=HUB_ENV).start()
        try:
            assert [e["event"] for e in _events(second_log)].count("hub.joined") == 1
            deadline = time.monotonic() + 60
            while [e["event"] for e in _events(first_log)].count("hub.partitions_assigned") <= assigned_before:
                assert time.monotonic() < deadline, "the first worker saw no rebalance when the second joined"
                time.sleep(0.2)
            assert [e["event"] for e in _events(first_log)].count("hub.joined") == 1
        finally:
            second.stop()
    finally:
        first.stop()
