"""Ten thousand generated bad inputs (hypothesis) through a running hub on a real broker:
the hub never crashes, each input is dead-lettered exactly once with a class and a reason,
and its memory stays bounded."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.demo import DemoFeed
from hub.errors import ErrorClass
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.registry import Registry
from hub.topics import DEADLETTER, INBOUND, Header
from tests.faults.common import REGISTRY, start_worker, wait_for_progress

pytestmark = pytest.mark.kafka

COUNT = 10_000
CATEGORY_BASE = "https://w3id.org/meldingen-hub/id/concept/categorie/"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _mutations(base: dict) -> st.SearchStrategy[bytes]:
    """Meldingen broken in one way each that the shapes or the router must refuse."""

    def without(key: str) -> bytes:
        doc = json.loads(json.dumps(base))
        del doc[key]
        return json.dumps(doc).encode()

    def with_field(path: tuple, value: object) -> bytes:
        doc = json.loads(json.dumps(base))
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return json.dumps(doc).encode()

    text = st.text(min_size=1, max_size=40).filter(lambda t: "POINT" not in t)
    return st.one_of(
        st.sampled_from(["titel", "identificator", "indiener", "type", "meldingstype"]).map(without),
        text.map(lambda t: with_field(("heeftBody", 0, "geometrie", "wkt"), t)),
        text.map(lambda t: with_field(("heeftStatus", 0, "statusdatum"), t)),
        st.from_regex(r"[a-z]{3,12}", fullmatch=True).filter(lambda s: s not in _SLUGS).map(
            lambda s: with_field(("type",), [CATEGORY_BASE + s])
        ),
        st.integers(min_value=1, max_value=max(1, len(json.dumps(base)) - 1)).map(
            lambda n: json.dumps(base).encode()[:n]  # truncated in transit
        ),
        st.integers(min_value=0, max_value=len(json.dumps(base)) - 1).map(
            lambda n: json.dumps(base).encode()[:n] + b"\xc3\x28" + json.dumps(base).encode()[n:]
        ),
    )


_SLUGS = {
    "zwerfvuil", "sluikstort", "wegdefect", "straatverlichting", "geluidsoverlast",
}  # fmt: skip


def test_ten_thousand_bad_inputs_are_each_dead_lettered_once_and_the_hub_survives(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    registry = Registry.load(REGISTRY)
    feed = DemoFeed(registry, MunicipalityIndex.load(), seed=10_000)
    base = json.loads(feed.valid().value)
    corpus: list[bytes] = []

    @settings(max_examples=COUNT, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), _mutations(base)))
    def gather(value: bytes) -> None:
        corpus.append(value)

    gather()
    while len(corpus) < COUNT:  # hypothesis may stop early on a small search space
        corpus.append(random.Random(len(corpus)).randbytes(50))
    keys = [f"bad-{n:05d}".encode() for n in range(len(corpus))]

    log = tmp_path / "hub.log"
    hub = start_worker(kafka_bootstrap, log)
    try:
        asyncio.run(produce(kafka_bootstrap, INBOUND, ((k, v, ()) for k, v in zip(keys, corpus, strict=True))))
        wait_for_progress(COUNT // 5, log, timeout=600)
        rss_early = _rss_kib(hub.proc.pid)
        delivered = asyncio.run(
            collect(kafka_bootstrap, [DEADLETTER], {k.decode() for k in keys}, timeout=900, settle=2, by_key=True)
        )
        assert hub.proc.poll() is None, "the hub died on bad input"
        rss_late = _rss_kib(hub.proc.pid)
    finally:
        hub.stop()

    by_key = {}
    for d in delivered:
        assert d.key not in by_key, f"{d.key!r} dead-lettered twice"
        by_key[d.key] = d
    missing = [k for k in keys if k not in by_key]
    assert not missing, f"{len(missing)} bad inputs were not dead-lettered, e.g. {missing[:3]}"
    known = {c.value for c in ErrorClass} - {ErrorClass.BUG.value}
    for key, value in zip(keys, corpus, strict=True):
        d = by_key[key]
        assert d.value == (value or None) or d.value == value
        assert d.headers[Header.ERROR_CLASS] in known, (d.headers[Header.ERROR_CLASS], d.headers[Header.ERROR_REASON])
        assert d.headers[Header.ERROR_REASON].strip()
    # bounded memory: processing the last 80 % of the flood grew the hub by less than 64 MiB
    assert rss_late - rss_early < 64 * 1024, (rss_early, rss_late)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
