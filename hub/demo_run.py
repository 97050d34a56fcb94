"""``meldhub demo run``: a local Kafka, the hub as a user starts it, a feed, and a report.

Everything the demo starts it also stops, also on Ctrl-C or failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hub.demo import DemoFeed, FeedItem
from hub.geo import MunicipalityIndex
from hub.kafka_io import Delivered, collect, produce
from hub.registry import Registry
from hub.refusal import parse_history, refusal_output
from hub.topics import DEADLETTER, INBOUND, REFUSALS, TRIAGE, Header, authority_topic


def meldhub_executable() -> list[str]:
    """The ``meldhub`` console script of this environment (as a user runs it)."""
    script = Path(sys.executable).with_name("meldhub")
    if script.exists():
        return [str(script)]
    found = shutil.which("meldhub")
    return [found] if found else [sys.executable, "-m", "hub"]


class HubProcess:
    """``meldhub hub run`` as a child process, its JSON log lines going to a file."""

    def __init__(self, bootstrap: str, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.log_path = log_path
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0, until: str = "hub.joined") -> HubProcess:
        """Start it; return once it logged ``until``: by default once it is in its consumer group
        (``hub.joined``); ``hub.ready`` returns as soon as it has subscribed."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*meldhub_executable(), "hub", "run", "--bootstrap-servers", self.bootstrap, *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode("utf-8", errors="replace")
            if f'"{until}"' in text:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"meldhub hub run exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"meldhub hub run logged no {until} within {timeout:.0f}s; see {self.log_path}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)

    def __enter__(self) -> HubProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def report(items: list[FeedItem], delivered: list[Delivered], registry: Registry, console: Console) -> bool:
    """Print what went where; return True when every fed melding was accounted for exactly once."""
    names = {authority_topic(a.id): a.name for a in registry.authorities}
    by_id: dict[str, list[Delivered]] = defaultdict(list)
    for d in delivered:
        if d.melding_id:
            by_id[d.melding_id].append(d)
    kinds = {i.melding_id: i for i in items}

    routed = Table(title="Routed meldingen per destination topic", title_justify="left")
    for col in ("topic", "authority", "meldingen", "categories"):
        routed.add_column(col)
    per_topic: dict[str, Counter[str]] = defaultdict(Counter)
    for d in delivered:
        if d.topic != DEADLETTER and d.melding_id in kinds:
            per_topic[d.topic][kinds[d.melding_id].category or "?"] += 1
    for topic in sorted(per_topic):
        cats = per_topic[topic]
        routed.add_row(
            topic, names.get(topic, "?"), str(sum(cats.values())), ", ".join(f"{c} {n}" for c, n in sorted(cats.items()))
        )
    console.print(routed)

    dead = Table(title=f"Dead letters on {DEADLETTER} per reason", title_justify="left")
    for col in ("error class", "count", "fed as", "example reason"):
        dead.add_column(col)
    per_class: dict[str, list[Delivered]] = defaultdict(list)
    for d in delivered:
        if d.topic == DEADLETTER:
            per_class[d.headers.get(Header.ERROR_CLASS, "?")].append(d)
    for cls in sorted(per_class):
        ds = per_class[cls]
        fed_as = Counter(kinds[d.melding_id].kind for d in ds if d.melding_id in kinds)
        dead.add_row(
            cls, str(len(ds)), ", ".join(sorted(fed_as)), ds[0].headers.get(Header.ERROR_REASON, "")[:110]
        )
    console.print(dead)

    missing = [i for i in items if i.melding_id not in by_id]
    doubled = [m for m, ds in by_id.items() if len(ds) > 1]
    n_dead = sum(len(v) for v in per_class.values())
    console.print(
        f"fed {len(items)} meldingen: {len(delivered) - n_dead} routed, {n_dead} dead-lettered, "
        f"{len(missing)} unaccounted for, {len(doubled)} delivered more than once"
    )
    return not missing and not doubled


def refusal_round(bootstrap: str, delivered: list[Delivered], registry: Registry, console: Console) -> bool:
    """A few owners answer "not ours": where did those meldingen go next? True when each refused
    melding arrived exactly once at its next owner or on the triage topic."""
    routed = [d for d in delivered if d.topic != DEADLETTER]
    # a specialist (a layer or intercommunale rule: the municipality is the next candidate) ...
    specialists: dict[str, Delivered] = {}
    for d in routed:
        if d.headers.get(Header.RULE_ID) != "default-municipality":
            specialists.setdefault(d.headers.get(Header.AUTHORITY, ""), d)  # one per owner: variety
    picks = list(specialists.values())[:3]
    # ... and a municipality, after which no candidate is left: triage
    picks += [d for d in routed if d.headers.get(Header.RULE_ID) == "default-municipality"][:1]
    if not picks:
        return True
    reasons = {
        "awv": "Gemeenteweg naast de gewestweg: niet voor AWV",
        "imog": "Sluikstort op privéterrein: bevoegdheid van de gemeente",
    }
    records = []
    for d in picks:
        by = d.headers[Header.AUTHORITY]
        reason = reasons.get(by, f"Niet voor {by}: hoort bij een andere beheerder")
        headers = [(k, v.encode("utf-8")) for k, v in d.headers.items()]
        _, key, value, out_headers = refusal_output(d.value or b"", headers, by, reason)
        records.append((key, value, out_headers))
    asyncio.run(produce(bootstrap, REFUSALS, records))
    wanted = {d.melding_id for d in picks if d.melding_id}
    topics = [TRIAGE, *(authority_topic(a.id) for a in registry.authorities)]
    # the first deliveries of these meldingen are on the same topics: wait for the ones after a refusal
    after = asyncio.run(
        collect(bootstrap, topics, wanted, timeout=60, settle=1, where=lambda d: Header.ROUTE_HISTORY in d.headers)
    )
    names = {authority_topic(a.id): a.name for a in registry.authorities} | {TRIAGE: "regionale triage"}
    table = Table(title=f"Refused by their owner ({REFUSALS}) and sent on", title_justify="left")
    for col in ("melding", "refused by", "reason", "now on", "handler"):
        table.add_column(col)
    for d in after:
        hop = parse_history(d.headers[Header.ROUTE_HISTORY])[-1]
        table.add_row((d.melding_id or "?")[:8], hop.authority, hop.reason[:60], d.topic, names.get(d.topic, "?"))
    console.print(table)
    counts = Counter(d.melding_id for d in after)
    once = all(counts[m] == 1 for m in wanted)
    console.print(
        f"refused {len(picks)} meldingen: {sum(d.topic != TRIAGE for d in after)} to the next candidate, "
        f"{sum(d.topic == TRIAGE for d in after)} to triage, "
        f"{sum(1 for m in wanted if counts[m] == 0)} unaccounted for, {sum(1 for m in wanted if counts[m] > 1)} more than once"
    )
    return once


def run_demo(count: int, workdir: Path, port: int | None, seed: int | None) -> bool:
    from hub.kafka_local import LocalKafka, free_port

    # Piped output (CI, make run | tee) would wrap at 80 columns; the tables need more.
    console = Console(width=None if sys.stdout.isatty() else 150)
    registry = Registry.load(None)
    feed = DemoFeed(registry, MunicipalityIndex.load(), seed=seed if seed is not None else time.time_ns())
    items = feed.feed(count) + feed.on_layers(registry)
    kafka = LocalKafka(workdir=workdir / "kafka", port=port or free_port())
    console.print(f"[bold]1/5[/] starting Apache Kafka (local JVM broker, work dir {kafka.workdir}) …")
    started_kafka = not kafka.is_running()
    bootstrap = kafka.up()
    hub = HubProcess(bootstrap, workdir / "hub.log")
    try:
        console.print(f"[bold]2/5[/] starting the hub: meldhub hub run --bootstrap-servers {bootstrap} …")
        hub.start()
        broken = sum(1 for i in items if i.kind != "valid")
        console.print(f"[bold]3/5[/] feeding {len(items)} meldingen ({len(items) - broken} valid, "
                      f"{broken} broken on purpose) to {INBOUND} …")
        asyncio.run(produce(bootstrap, INBOUND, ((i.key, i.value, i.headers) for i in items)))
        topics = [DEADLETTER, *(authority_topic(a.id) for a in registry.authorities)]
        console.print("[bold]4/5[/] reading every destination topic back …")
        delivered = asyncio.run(collect(bootstrap, topics, {i.melding_id for i in items}, timeout=120))
        ok = report(items, delivered, registry, console)
        console.print(f"[bold]5/5[/] some owners answer 'not ours' on {REFUSALS} …")
        ok = refusal_round(bootstrap, delivered, registry, console) and ok
        console.print(f"hub log (JSON lines, no personal data): {hub.log_path}")
        return ok
    finally:
        hub.stop()
        if started_kafka:
            kafka.down()
        console.print("stopped the hub" + (" and Kafka" if started_kafka else ""))
