"""Refusal and re-routing on a real broker, with the hub as a user runs it (``meldhub hub run``).

An owner answers "not ours" by producing the melding it received back to ``meldingen.refusals``
(what its adapter or its own Kafka client does); the hub sends it to the next candidate, or to
``meldingen.triage`` when none is left, and tells the citizen's channel — each exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from hub.demo import DemoFeed
from hub.demo_run import HubProcess
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.refusal import parse_history, refusal_output
from hub.registry import Registry
from hub.status import TOEGEWEZEN, StatusChange
from hub.topics import DEADLETTER, INBOUND, REFUSALS, STATUS, TRIAGE, Header, authority_topic

pytestmark = pytest.mark.kafka

REGISTRY = Path(__file__).parents[1] / "data" / "registry-no-layers.yaml"


def test_refused_meldingen_reach_the_next_owner_or_triage_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    registry = Registry.load(REGISTRY)
    feed = DemoFeed(registry, MunicipalityIndex.load(), seed=4201)  # seeds are unique per test: one shared broker
    waste = [feed.valid(category="zwerfvuil", nis="34022") for _ in range(40)]  # Imog first, then Kortrijk
    sewer = [feed.valid(category="riolering-wateroverlast", nis="34042") for _ in range(15)]  # Zwevegem only
    hub = HubProcess(kafka_bootstrap, tmp_path / "hub.log", env={"MELDHUB_REGISTRY": str(REGISTRY)}).start()
    try:
        asyncio.run(produce(kafka_bootstrap, INBOUND, ((i.key, i.value, i.headers) for i in waste + sewer)))
        first = asyncio.run(
            collect(kafka_bootstrap, [authority_topic("imog"), authority_topic("zwevegem")], {i.melding_id for i in waste + sewer}, timeout=120)
        )
        assert Counter(d.topic for d in first) == {authority_topic("imog"): 40, authority_topic("zwevegem"): 15}

        # every owner refuses what it got, with the record exactly as it consumed it
        refusals = []
        for d in first:
            by = d.headers[Header.AUTHORITY]
            _, key, value, headers = refusal_output(d.value, [(k, v.encode()) for k, v in d.headers.items()], by, f"niet voor {by}")
            refusals.append((key, value, headers))
        asyncio.run(produce(kafka_bootstrap, REFUSALS, refusals))

        wanted = {i.melding_id for i in waste + sewer}
        second = asyncio.run(
            collect(kafka_bootstrap, [authority_topic("kortrijk"), TRIAGE, DEADLETTER], wanted, timeout=120, settle=3)
        )
        statuses = asyncio.run(collect(kafka_bootstrap, [STATUS], wanted, timeout=60, settle=2))
        assert hub.proc is not None and hub.proc.poll() is None
    finally:
        hub.stop()

    by_id = Counter(d.melding_id for d in second)
    assert all(by_id[m] == 1 for m in wanted), "each refused melding lands exactly once"
    topic_of = {d.melding_id: d for d in second}
    for item in waste:
        d = topic_of[item.melding_id]
        assert d.topic == authority_topic("kortrijk")
        (hop,) = parse_history(d.headers[Header.ROUTE_HISTORY])
        assert hop.authority == "imog" and hop.rule == "waste-imog" and hop.reason == "niet voor imog"
        assert json.loads(d.value)["behandelaar"].endswith("/kortrijk")
    for item in sewer:
        d = topic_of[item.melding_id]
        assert d.topic == TRIAGE and [h.authority for h in parse_history(d.headers[Header.ROUTE_HISTORY])] == ["zwevegem"]

    assert Counter(s.melding_id for s in statuses) == Counter(wanted), "one status event per refusal"
    for s in statuses:
        change = StatusChange.from_jsonld(json.loads(s.value))
        assert change.status.notation == TOEGEWEZEN
        assert s.headers[Header.SOURCE] == "meldingsapp-" + ("kortrijk" if change.melding_id in {i.melding_id for i in waste} else "zwevegem")

    log = [json.loads(line) for line in (tmp_path / "hub.log").read_text().splitlines() if line.startswith("{")]
    assert sum(1 for ln in log if ln["event"] == "melding.triaged") == 15
    assert sum(1 for ln in log if ln["event"] == "melding.refused") == 40
