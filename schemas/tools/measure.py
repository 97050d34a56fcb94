"""Measure JSON-LD parsing (rdflib vs pyoxigraph) and SHACL validation time per melding.

    .venv/bin/python schemas/tools/measure.py [--rounds 200]

Why: the consume stage parses and validates every inbound melding; these numbers decide the
parser and tell how many meldingen per second one hub process validates. Prints medians and
95th percentiles over all valid examples (milliseconds per melding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyshacl

from hub.jsonld import inline_contexts, to_graph
from hub.paths import examples_dir
from hub.validation import ShaclValidator


def _timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    for _ in range(max(5, rounds // 10)):  # warm-up
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(0.95 * (len(samples) - 1))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((examples_dir() / "valid").glob("*.jsonld"))]
    start = time.perf_counter()
    validator = ShaclValidator()
    print(f"ShaclValidator() construction: {(time.perf_counter() - start) * 1e3:.1f} ms (once per process)")
    graphs = [to_graph(d) for d in docs]
    triples = statistics.mean(len(g) for g in graphs)

    def each(fn: Callable[[dict], object]) -> Callable[[], None]:
        def run() -> None:
            for d in docs:
                fn(d)

        return run

    def each_graph(fn: Callable[[object], object]) -> Callable[[], None]:
        def run() -> None:
            for g in graphs:
                fn(g)

        return run

    import pyoxigraph as ox

    texts = [json.dumps(inline_contexts(d)) for d in docs]
    rows = [
        ("inline contexts + json.dumps", each(lambda d: json.dumps(inline_contexts(d)))),
        ("pyoxigraph parse only (no rdflib graph)", lambda: [list(ox.parse(t, format=ox.RdfFormat.JSON_LD)) for t in texts]),
        ("to_graph(parser='oxigraph')", each(lambda d: to_graph(d, parser="oxigraph"))),
        ("to_graph(parser='rdflib')", each(lambda d: to_graph(d, parser="rdflib"))),
        ("ShaclValidator.validate(graph)", each_graph(validator.validate)),
        (
            "pyshacl.validate(graph) (shapes re-harvested)",
            each_graph(lambda g: pyshacl.validate(g, shacl_graph=validator.shapes_graph, inplace=True)),
        ),
        ("ShaclValidator.validate(dict) (parse + validate)", each(validator.validate)),
    ]
    print(f"{len(docs)} valid examples, {triples:.0f} triples each on average; ms per melding:")
    for name, fn in rows:
        median, p95 = _timed(fn, rounds)
        print(f"  {name:<50} median {median / len(docs):6.2f}   p95 {p95 / len(docs):6.2f}")


if __name__ == "__main__":
    main()
