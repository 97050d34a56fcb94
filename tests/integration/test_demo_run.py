"""``make run`` = ``meldhub demo run``: the quick start as a user runs it, its own Kafka included."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hub.demo_run import meldhub_executable

pytestmark = pytest.mark.kafka


def test_the_demo_routes_dead_letters_and_re_routes_refusals_and_stops_everything(tmp_path: Path) -> None:
    run = subprocess.run(
        [*meldhub_executable(), "demo", "run", "--count", "30", "--workdir", str(tmp_path / "demo"), "--seed", "7"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    fed = re.search(r"fed (\d+) meldingen: (\d+) routed, (\d+) dead-lettered, 0 unaccounted for, 0 delivered more than once", out)
    assert fed, out[-2000:]
    total, routed, dead = map(int, fed.groups())
    assert routed >= 30 and dead >= 8 and routed + dead == total
    refused = re.search(r"refused (\d+) meldingen: (\d+) to the next candidate, (\d+) to triage, 0 unaccounted for, 0 more than once", out)
    assert refused, out[-2000:]
    n, onward, triage = map(int, refused.groups())
    assert n == onward + triage and onward >= 1 and triage >= 1
    assert "meldingen.triage" in out and "stopped the hub and Kafka" in out
