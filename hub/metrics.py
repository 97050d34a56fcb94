"""Prometheus metrics of the hub, its adapters and the admin tools.

What operators need to see at a glance: how many meldingen go where, where they fail (stage
and error class), how long the stages take, whether a destination is being retried or paused.

Labels are a closed set: stage names, error classes, outcomes and authority ids from the
registry. Never a melding id, a source-supplied string or anything about a person — a label
value that is not of the expected shape is counted as ``other``.

API (all functions are cheap and thread-safe; call them from the loop or a worker thread)::

    metrics.serve()                          # MELDHUB_METRICS_PORT (unset/0: not served)
    metrics.record_outcome(outcome, seconds) # one pipeline Outcome and its processing time
    metrics.record_batch(size, seconds)      # one consumed batch, getmany → commit
    with metrics.time_stage("produce"): ...  # any other stage's latency
    metrics.record_delivery(destination, "delivered" | "transient" | "rejected" | "unauthorized")
    metrics.record_retry(destination)
    metrics.set_paused(destination, True/False)
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from hub import __version__
from hub.errors import ErrorClass

PORT_ENV = "MELDHUB_METRICS_PORT"
ADDR_ENV = "MELDHUB_METRICS_ADDR"
DEFAULT_ADDR = "127.0.0.1"

REGISTRY = CollectorRegistry()
"""The hub's own registry (plus process, platform and GC metrics), served by :func:`serve`."""
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

STAGES = ("decode", "validate", "route", "forward")
"""The pipeline's stages in order (``hub/pipeline.py``)."""
TIMED_STAGES = frozenset({*STAGES, "pipeline", "produce", "commit", "batch", "deliver", "replay"})

_STOPPED_AT: dict[str, str] = {
    ErrorClass.TOO_LARGE: "decode",
    ErrorClass.NOT_UTF8: "decode",
    ErrorClass.NOT_JSON: "decode",
    ErrorClass.NOT_JSONLD: "validate",
    ErrorClass.SHAPE_VIOLATION: "validate",
    ErrorClass.UNKNOWN_CATEGORY: "validate",
    ErrorClass.MISSING_LOCATION: "route",
    ErrorClass.OUTSIDE_REGION: "route",
    ErrorClass.NO_OWNER: "route",
    ErrorClass.NOT_A_REFUSAL: "route",
    ErrorClass.BUG: "forward",  # unknown where: counted at the end, its class says "bug"
}
_ADAPTER_ERROR_CLASSES = frozenset(
    {  # adapters.base.AdapterErrorClass (until merged into ErrorClass)
        "vendor-unavailable",
        "vendor-timeout",
        "vendor-auth",
        "vendor-rejected",
        "vendor-malformed",
        "vendor-unknown-status",
    }
)
_ERROR_CLASSES = frozenset({*(e.value for e in ErrorClass), *_ADAPTER_ERROR_CLASSES})
_DELIVERY_RESULTS = frozenset({"delivered", "transient", "rejected", "unauthorized"})
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

MESSAGES = Counter(
    "meldhub_messages",
    "Meldingen out of the pipeline, by outcome and destination (authority id, or 'deadletter').",
    ["outcome", "destination"],
    registry=REGISTRY,
)
STAGE_MESSAGES = Counter(
    "meldhub_stage_messages",
    "Meldingen per pipeline stage: passed the stage, or failed in it.",
    ["stage", "result"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "meldhub_dead_letters",
    "Dead letters written, by error class.",
    ["error_class"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "meldhub_stage_seconds",
    "Latency per stage: 'pipeline' is one melding through decode→forward; 'batch' is getmany→commit.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "meldhub_batch_size",
    "Records per consumed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000, 5000),
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "meldhub_deliveries",
    "Delivery attempts by adapters to a destination's system, by result.",
    ["destination", "result"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "meldhub_delivery_retries",
    "Delivery retries scheduled, per destination.",
    ["destination"],
    registry=REGISTRY,
)
PAUSED = Gauge(
    "meldhub_destination_paused",
    "1 while deliveries to the destination are paused after repeated failures.",
    ["destination"],
    registry=REGISTRY,
)
ADMIN_ACTIONS = Counter(
    "meldhub_dlq_admin_actions",
    "Admin actions on dead letters in this process (replayed, discarded, revealed-personal-data, exported).",
    ["action"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge("meldhub_build_info", "The running hub release.", ["version"], registry=REGISTRY)
BUILD_INFO.labels(version=__version__).set(1)


def destination_label(value: str | None) -> str:
    """An authority id as label value; anything else (never user input) becomes ``other``."""
    return value if value and _ID.match(value) else "other"


def error_class_label(value: Any) -> str:
    text = str(value) if value is not None else ""
    return text if text in _ERROR_CLASSES else "other"


@lru_cache(maxsize=4096)
def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, remembered: label values are a closed set (see the module
    doc), and looking a child up under the metric's lock costs more than counting with it."""
    return metric.labels(*values)


def record_outcome(outcome: Any, seconds: float | None = None) -> None:
    """Count one :class:`hub.pipeline.Outcome` (routed or dead-lettered) and its processing time."""
    if outcome.error_class is not None:
        cls = error_class_label(outcome.error_class)
        _child(MESSAGES, "dead_lettered", "deadletter").inc()
        _child(DEAD_LETTERS, cls).inc()
        stopped = _STOPPED_AT.get(cls, "forward")
        for stage in STAGES:
            if stage == stopped:
                _child(STAGE_MESSAGES, stage, "failed").inc()
                break
            _child(STAGE_MESSAGES, stage, "passed").inc()
    elif getattr(outcome, "triaged", False):
        _child(MESSAGES, "triaged", "triage").inc()
    else:
        decision = outcome.decision
        kind = "rerouted" if getattr(outcome, "refusal", None) is not None else "routed"
        _child(MESSAGES, kind, destination_label(decision.authority_id if decision else None)).inc()
        for stage in STAGES:
            _child(STAGE_MESSAGES, stage, "passed").inc()
    if seconds is not None:
        _child(STAGE_SECONDS, "pipeline").observe(max(0.0, seconds))


def record_batch(size: int, seconds: float) -> None:
    """One batch: its size and the time from ``getmany`` until its offsets were committed."""
    BATCH_SIZE.observe(size)
    _child(STAGE_SECONDS, "batch").observe(max(0.0, seconds))


def observe_stage(stage: str, seconds: float) -> None:
    _child(STAGE_SECONDS, stage if stage in TIMED_STAGES else "other").observe(max(0.0, seconds))


@contextmanager
def time_stage(stage: str) -> Iterator[None]:
    """``with time_stage("produce"): ...`` observes the block's duration (also on error)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        observe_stage(stage, time.perf_counter() - start)


def record_delivery(destination: str, result: str) -> None:
    DELIVERIES.labels(
        destination=destination_label(destination), result=result if result in _DELIVERY_RESULTS else "other"
    ).inc()


def record_retry(destination: str) -> None:
    RETRIES.labels(destination=destination_label(destination)).inc()


def set_paused(destination: str, paused: bool) -> None:
    PAUSED.labels(destination=destination_label(destination)).set(1 if paused else 0)


def record_admin_action(action: str) -> None:
    known = {"replayed", "discarded", "revealed-personal-data", "exported"}
    ADMIN_ACTIONS.labels(action=action if action in known else "other").inc()


def serve(port: int | None = None, addr: str | None = None) -> int | None:
    """Serve ``/metrics`` over HTTP in a daemon thread. ``port`` defaults to
    ``$MELDHUB_METRICS_PORT``; unset or 0 means: do not serve (returns None). The address is
    ``$MELDHUB_METRICS_ADDR`` or 127.0.0.1 (set 0.0.0.0 where Prometheus scrapes from outside)."""
    if port is None:
        raw = os.environ.get(PORT_ENV, "").strip()
        port = int(raw) if raw else 0
    if not port:
        return None
    start_http_server(port, addr=addr or os.environ.get(ADDR_ENV, DEFAULT_ADDR), registry=REGISTRY)
    return port


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (0 when absent) — for tests and the console."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0
