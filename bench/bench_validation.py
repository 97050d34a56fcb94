"""Per-melding SHACL validation: the compiled validator against pyshacl, same corpus, same run.

What is timed, one call at a time with ``perf_counter_ns``, on 200 DemoFeed meldingen (every
category and municipality) and 100 broken ones (ten kinds of adapter mistakes):

- ``validate(dict)`` — JSON-LD → RDF → SHACL → report, what a caller with a decoded melding pays;
- ``validate(graph)`` — SHACL and report only, on a graph made beforehand by ``hub.jsonld.to_graph``;
- ``Pipeline.process`` — the hub's whole pure pipeline per record (decode, validate the decoded
  dict, model, route, forward), with each validator, as ``meldhub hub run`` executes it.

Both validators see the same melding back to back (pyshacl once, the compiled one a few times,
median), so machine noise hits both alike. Verdicts and violations are compared on the whole
corpus. Target (reported, not asserted): compiled ≥ 20× faster per melding, identical verdicts.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from bench._common import DOCS, corpus, median, met, percentile, pyplot, table

ORDER = 10
TARGET_RATIO = 20.0
COMPILED_REPEATS = 5
_BLANK = re.compile(r"_:[A-Za-z0-9]+")


def _norm(result: Any) -> tuple[bool, list[tuple[Any, ...]]]:
    rows = sorted(
        tuple(_BLANK.sub("_:b", x) if isinstance(x, str) else x for x in (v.focus_node, v.path, v.component, v.message, v.value))
        for v in result.violations
    )
    return result.conforms, rows


def _time_once(fn: Any, arg: Any) -> float:
    t = time.perf_counter_ns()
    fn(arg)
    return (time.perf_counter_ns() - t) / 1e6


def _pair(ref_fn: Any, comp_fn: Any, inputs: list[Any]) -> tuple[list[float], list[float]]:
    """Per-input ms for the reference (one call) and the compiled validator (median of a few)."""
    ref_ms, comp_ms = [], []
    for x in inputs:
        ref_ms.append(_time_once(ref_fn, x))
        comp_ms.append(median([_time_once(comp_fn, x) for _ in range(COMPILED_REPEATS)]))
    return ref_ms, comp_ms


def run() -> str:
    from hub.geo import MunicipalityIndex
    from hub.jsonld import to_graph
    from hub.pipeline import Pipeline, Record
    from hub.registry import Registry
    from hub.routing import Router
    from hub.shacl_compiled import CompiledValidator
    from hub.validation import ShaclValidator

    valid, invalid = corpus()
    t = time.perf_counter()
    ref = ShaclValidator()
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    comp = CompiledValidator()
    t_comp = time.perf_counter() - t

    # warm-up (first calls pay imports and caches)
    for d in valid[:20] + invalid[:20]:
        ref.validate(d)
        comp.validate(d)

    # identical verdicts and reports over the whole corpus
    docs = valid + invalid
    same = sum(_norm(ref.validate(d)) == _norm(comp.validate(d)) for d in docs)
    conforming = sum(ref.validate(d).conforms for d in docs)
    comp.stats.clear()

    rows = []
    medians: dict[str, tuple[float, float]] = {}
    for label, inputs, as_graph in (
        ("valid, `validate(dict)`", valid, False),
        ("broken, `validate(dict)`", invalid, False),
        ("valid, `validate(graph)`", valid, True),
        ("broken, `validate(graph)`", invalid, True),
    ):
        xs = [to_graph(d) for d in inputs] if as_graph else inputs
        r, c = _pair(ref.validate, comp.validate, xs)
        medians[label] = (median(r), median(c))
        rows.append(
            [
                label,
                len(inputs),
                f"{median(r):.2f} / {percentile(r, 0.95):.2f}",
                f"{median(c):.3f} / {percentile(c, 0.95):.3f}",
                f"**{median(r) / median(c):.0f}×**",
            ]
        )
    fast_share = comp.stats["fast"] / max(1, comp.stats["fast"] + comp.stats["parsed"])

    # the hub's pipeline per record, as `meldhub hub run` runs it
    registry = Registry.load(None)
    router = Router(registry, MunicipalityIndex.load())
    records = [
        Record(json.dumps(d, ensure_ascii=False).encode(), None, (), "meldingen.inbound", 0, i)
        for i, d in enumerate(docs)
    ]
    p_ref, p_comp = Pipeline(ref, router), Pipeline(comp, router)
    for rec in records[:20]:
        p_ref.process(rec)
        p_comp.process(rec)
    pr, pc = _pair(p_ref.process, p_comp.process, records)
    rows.append(
        [
            "all, `Pipeline.process` (hub stage)",
            len(records),
            f"{median(pr):.2f} / {percentile(pr, 0.95):.2f}",
            f"{median(pc):.3f} / {percentile(pc, 0.95):.3f}",
            f"**{median(pr) / median(pc):.1f}×**",
        ]
    )

    # the hub stage gives the same outputs with either validator
    same_outcomes = sum(
        (a := p_comp.process(rec)).output == (b := p_ref.process(rec)).output or _same_dead(a, b) for rec in records
    )

    chart = _chart(medians, (median(pr), median(pc)))
    dict_ratio = min(medians["valid, `validate(dict)`"][0] / medians["valid, `validate(dict)`"][1],
                     medians["broken, `validate(dict)`"][0] / medians["broken, `validate(dict)`"][1])  # fmt: skip


    return "\n\n".join(
        [
            "## SHACL validation per melding: compiled vs pyshacl",
            "`bench/bench_validation.py`. The reference is `hub.validation.ShaclValidator` (pyshacl "
            "with its shapes harvested once); the contender is `hub.shacl_compiled.CompiledValidator` "
            "(`MELDHUB_VALIDATOR=compiled`). Milliseconds per melding, median / 95th percentile, each "
            "melding timed with both back to back.",
            table(["melding, call", "n", "pyshacl ms", "compiled ms", "speed-up"], rows),
            f"![per-melding validation time]({chart})",
            "\n".join(
                [
                    f"- Verdicts and reports: **{same} of {len(docs)} identical** (verdict, focus node, path, "
                    f"component, message, value); {conforming} conform, {len(docs) - conforming} do not. "
                    "The differential test (`tests/test_shacl_differential.py`) checks the same on 5,000 "
                    "generated meldingen.",
                    f"- {fast_share:.0%} of the `validate(dict)` calls took the compiled validator's own "
                    "JSON-LD expander; the rest went through `hub.jsonld.to_graph` (same triples). pyshacl "
                    f"fallback runs: {comp.stats['pyshacl']} (every hub shape is compiled).",
                    f"- Construction, once per process: pyshacl {t_ref * 1e3:.0f} ms, compiled {t_comp * 1e3:.0f} ms "
                    "(it also prepares pyshacl for shapes it could not compile).",
                    f"- Target ≥ {TARGET_RATIO:.0f}× per melding (`validate(dict)`, the worse of valid/broken: "
                    f"{dict_ratio:.0f}×): {met(dict_ratio >= TARGET_RATIO)}; identical verdicts: "
                    f"{met(same == len(docs))}.",
                    f"- In the hub stage (`Pipeline.process`: decode, validate the decoded dict, model, route, "
                    f"forward) the compiled validator makes the whole record {median(pr) / median(pc):.1f}× cheaper; "
                    f"the outputs of both pipelines are equal for {same_outcomes} of {len(records)} records "
                    "(dead letters compared by error class, reason and violations).",
                ]
            ),
        ]
    )


def _same_dead(a: Any, b: Any) -> bool:
    """Two dead-letter outcomes equal but for their first-seen header and blank-node labels."""

    def details(o: Any) -> str:
        return _BLANK.sub("_:b", json.dumps(o.details, sort_keys=True))

    return a.error_class == b.error_class and a.reason == b.reason and details(a) == details(b)


def _chart(medians: dict[str, tuple[float, float]], pipeline: tuple[float, float]) -> str:
    plt = pyplot()
    labels = [k.replace("`", "") for k in medians] + ["Pipeline.process"]
    ref = [v[0] for v in medians.values()] + [pipeline[0]]
    comp = [v[1] for v in medians.values()] + [pipeline[1]]
    fig, ax = plt.subplots(figsize=(8, 4.0), dpi=110)
    y = range(len(labels))
    ax.barh([i + 0.2 for i in y], ref, height=0.4, label="pyshacl (reference)", color="#b0b0b0")
    ax.barh([i - 0.2 for i in y], comp, height=0.4, label="compiled", color="#1f77b4")
    for i, (r, c) in enumerate(zip(ref, comp, strict=True)):
        ax.text(r * 1.05, i + 0.2, f"{r:.2f} ms", va="center", fontsize=7)
        ax.text(c * 1.05, i - 0.2, f"{c:.3f} ms  ({r / c:.0f}×)", va="center", fontsize=7)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per melding (median, log scale)")
    ax.set_title("SHACL validation per melding", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(right=max(ref) * 8)
    fig.tight_layout()
    name = "benchmarks-validation.png"
    fig.savefig(DOCS / name)
    plt.close(fig)
    return name
