"""Run-time settings of the hub, from options, the environment (``MELDHUB_*``) or defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.pipeline import MAX_MESSAGE_BYTES


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MELDHUB_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("MELDHUB_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    group_id: str = "meldingen-hub"
    registry: Path | None = None
    """Authority registry YAML; ``None`` takes ``MELDHUB_REGISTRY`` or the example region."""
    registry_reload_s: float = 2.0
    """How often (at most) the registry and its layers are checked for a new version; 0 checks
    on every melding, a negative value never."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    partitions: int = 3
    """Partitions of topics the hub creates; the consumer group scales up to this many workers."""
    replication_factor: int = 1
    create_topics: bool = True
    batch_size: int = Field(default=1000, ge=1)
    """Most records one fetch hands to the stage (over all its partitions). Each partition's
    share is one transaction, and a transaction's round trips and markers cost about as much for
    5 records as for 500: with a backlog, 1000 drained 1.7× faster than 200 (bench/). Under light
    load batches stay small (what arrived during the last fetch wait), so latency does not grow."""
    fetch_max_wait_ms: int = Field(default=100, ge=0)
    """How long the broker may hold a fetch of the inbound partitions with no new records, while
    none of them is in a transaction (then ``committing_fetch_max_wait_ms`` applies: a partition
    that resumes after its transaction joins only the next fetch). Under load the fetch in flight
    ends as soon as any of its partitions has records. Each empty
    fetch costs the broker CPU. ``meldingen.refusals`` is read by a consumer of its own
    (``side_fetch_max_wait_ms``), so its idle partitions never hold an inbound fetch; with both
    topics in one consumer this had to be 10 ms. Idle, the broker then spent 0.08–0.11 cores on
    one hub, now ~0.03 (warmed-up broker, three A/B runs, bench/ machine)."""
    committing_fetch_max_wait_ms: int = Field(default=5, ge=0)
    """The fetch wait while a partition is paused for its transaction. The fetch in flight then
    serves the other partitions only, and the partition, resumed after its commit, joins the next
    fetch: with ``fetch_max_wait_ms`` (100 ms) it waited up to that long whenever the others were
    quiet — at 30 meldingen/s p90 ≈ 80–90 ms, p99 ≈ 90–120 ms (bench/). With a worker idle, no
    partition is paused and the long wait applies."""
    side_fetch_max_wait_ms: int = Field(default=500, ge=0)
    """The fetch wait of the consumer of the mostly idle inputs (``meldingen.refusals``): a refusal
    is read as soon as it is written; this only bounds how often the broker is asked when none is."""
    fetcher_wakeup_ms: int = Field(default=10, ge=1)
    """Longest the consumer's background fetcher sleeps without a reason to wake (aiokafka's
    ``consumer_timeout_ms``, default 200). aiokafka can miss the end of a fetch that finished
    while a paused partition resumed, and then sends no fetch until this runs out: with 200 ms,
    every partition stalled for 200 ms a few times a minute at 500 meldingen/s (bench/)."""
    producer_linger_ms: int = Field(default=0, ge=0)
    """How long a transactional producer's record batch waits for more records before it goes out.
    The loop hands a partition batch's outputs over in one go (they fill their record batches
    before the sender runs) and then waits for their acknowledgements before it adds the offsets
    and commits, so a linger is added to every transaction: at 500 meldingen/s, 5 ms made the
    median latency 4–7 ms longer (raw pass-through 16.3 → 20.4 ms, hub 26.1 → 33.0; bench/)."""
    producer_batch_bytes: int = Field(default=256 * 1024, ge=1024, le=1_000_000)
    """Bytes a producer gathers per output partition into one record batch (aiokafka's
    ``max_batch_size``, default 16 KiB). A full batch makes the next send wait until it is on its
    way, so with 16 KiB (about nine meldingen) a large transaction went out in a string of round
    trips; with 256 KiB a backlog drained ~15 % faster (bench/). Memory grows only as filled. At
    most 1,000,000: a batch must fit the broker's default ``message.max.bytes`` of the owner topics."""
    producer_retry_backoff_ms: int = 10
    """Back-off of the transactional producers' retries. Right after a commit the coordinator
    answers the next transaction with CONCURRENT_TRANSACTIONS until its markers are written; the
    client default (100 ms) made that a 100 ms stall per partition (measured in bench/)."""
    txn_start_retry_ms: float = Field(default=2.0, ge=0.5, le=100.0)
    """How soon a partition's next transaction asks again to add its first output partitions
    while the coordinator is still writing the previous transaction's markers (it answers
    CONCURRENT_TRANSACTIONS for a few ms after each commit). aiokafka waits a fixed 20 ms there
    (``aiokafka.producer.sender.BACKOFF_OVERRIDE``, not ``retry_backoff_ms``), so every batch
    after the first paid ~20 ms before its first output was acknowledged; the hub sets this for
    its process (:func:`hub.service.tune_aiokafka`). bench/ machine, 3 records per transaction:
    first acknowledgement after a commit 28 ms with 20, 13 with 2, 9 with 1 (each retry is one
    more request to the coordinator)."""
    transaction_timeout_s: float = Field(default=60.0, gt=0)
    """Longest a partition batch's transaction may take before it is given up (aborted by fencing
    its producer) and the batch read again; matches the producer's transaction timeout."""
    session_timeout_ms: int = 10000
    """How long a silent worker keeps its partitions; the broker's minimum is 6000 by default."""
    log_level: str = "INFO"
    protect_contact_details: bool = False
    """Encrypt the reporter's contact details per melding for the owner and the hub (keys from
    ``MELDHUB_PRIVACY_HUB_KEY`` and ``MELDHUB_PRIVACY_RECIPIENTS``; see docs/security.md)."""
    max_route_hops: int = Field(default=3, ge=1)
    """Refusals ("not ours") after which a melding goes to the triage topic instead of the next
    candidate owner (hub/refusal.py)."""
    validator: Literal["pyshacl", "compiled"] = "compiled"
    """SHACL engine: the compiled validator (default; same reports as pyshacl, proven by
    tests/test_shacl_differential.py) or pyshacl itself, the reference."""

    @property
    def topic_max_message_bytes(self) -> int:
        """Broker-side limit for inbound and dead-letter topics: above the hub's own limit, so
        an oversized melding still reaches the hub and is dead-lettered with a reason instead of
        being refused at the producer where nobody sees it."""
        return max(4 * self.max_message_bytes, 4 * 1024 * 1024)
