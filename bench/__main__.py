"""``python -m bench``: run every ``bench/bench_*.py`` and write docs/benchmarks.md.

Each module exposes ``run() -> str``, a markdown section (starting with a ``##`` heading); it may
write charts to ``docs/benchmarks-*.png`` and reference them from its section. All sections come
from one run on one machine, so every figure can be read against a baseline measured alongside it.

    python -m bench                       # all modules → docs/benchmarks.md
    python -m bench validation hub        # some modules → stdout (docs/benchmarks.md untouched)
    python -m bench validation --out x.md # some modules → x.md

A module may set ``ORDER`` (int, default 50) to choose its place in the document.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def modules() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in Path(__file__).parent.glob("bench_*.py"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_section() -> str:
    try:
        from hub.kafka_local import pinned_version

        kafka = pinned_version()
    except Exception as e:  # noqa: BLE001
        kafka = f"unknown ({type(e).__name__})"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    libs = ", ".join(f"{d} {_version(d)}" for d in ("aiokafka", "pyshacl", "rdflib", "pyoxigraph", "shapely"))
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| date | {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} |",
            f"| machine | {os.cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()} |",
            f"| load average at start (1/5/15 min) | {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} |",
            f"| Python | {platform.python_version()} ({platform.python_implementation()}) |",
            f"| Kafka | Apache Kafka {kafka} (local single-node KRaft broker, `hub.kafka_local`) |",
            f"| libraries | {libs} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"modules to run (default: all of {', '.join(modules())})")
    parser.add_argument("--out", type=Path, help="markdown file to write (default: docs/benchmarks.md for a full run)")
    args = parser.parse_args(argv)
    names = args.names or modules()
    unknown = sorted(set(names) - set(modules()))
    if unknown:
        parser.error(f"no bench/bench_{unknown[0]}.py")
    out = args.out or (DOCS / "benchmarks.md" if not args.names else None)

    loaded = []
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        loaded.append((getattr(module, "ORDER", 50), name, module))
    loaded.sort(key=lambda t: (t[0], t[1]))

    header = machine_section()
    sections = []
    failed = 0
    started = time.monotonic()
    for _, name, module in loaded:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            section = module.run().strip()
        except Exception:  # noqa: BLE001 - one broken module must not hide the others' results
            failed += 1
            section = f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()[-3000:]}\n```"
        sections.append(section + f"\n\n<sub>bench_{name}: {time.monotonic() - t0:.0f} s</sub>")
        print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

    text = "\n\n".join(
        [
            "# Benchmarks",
            "Written by `make bench` (`python -m bench`, one module per section: `bench/bench_*.py`); do not edit "
            "by hand. Every figure below comes from this one run on this one machine; ratios are against "
            "baselines measured in the same run. The machine is shared, so absolute numbers are noisy.",
            header,
            *sections,
            f"<sub>total: {time.monotonic() - started:.0f} s</sub>",
        ]
    ) + "\n"
    if out is None:
        print(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"bench: wrote {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
