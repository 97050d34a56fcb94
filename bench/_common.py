"""Helpers shared by the bench modules: statistics, markdown, charts, a realistic corpus."""

from __future__ import annotations

import copy
import json
import statistics
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- a corpus of realistic meldingen -----------------------------------------------------------------
CATEGORY = "https://w3id.org/meldingen-hub/id/concept/categorie/"


def _break(doc: dict[str, Any], i: int) -> dict[str, Any]:
    """One of the mistakes channel adapters make, chosen by ``i``."""
    doc = copy.deepcopy(doc)
    kind = i % 10
    if kind == 0:
        del doc["titel"]
    elif kind == 1:
        doc["heeftStatus"][0]["statusdatum"] = "2026-11-31T08:00:00"
    elif kind == 2:
        doc["meldingstype"] = doc["type"] = [CATEGORY + "ufo-waarneming"]
    elif kind == 3:
        doc["heeftBody"][0]["geometrie"]["wkt"] = "POINT (3.2649, 50.8303)"
    elif kind == 4:
        doc["behandelaar"] = ["https://example.org/a", "https://example.org/b"]
    elif kind == 5:
        doc["titel"] = {"@value": "Déchets", "@language": "fr"}
    elif kind == 6:
        doc["identificator"]["notatie"] = "melding-42"
    elif kind == 7:
        doc["heeftBody"][0]["@type"] = "Meldingstatus"
    elif kind == 8:
        doc["type"] = [CATEGORY + "sluikstort"]
    else:
        doc["heeftStatus"][0]["statuswaarde"] = "https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/999"
    return doc


@cache
def corpus(n_valid: int = 200, n_invalid: int = 100, seed: int = 2026) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n_valid`` DemoFeed meldingen (every category and municipality) and ``n_invalid`` broken ones."""
    from hub.demo import DemoFeed
    from hub.geo import MunicipalityIndex
    from hub.registry import Registry

    feed = DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=seed)
    valid = [json.loads(item.value) for item in feed.feed(n_valid, broken_each=0)]
    invalid = [_break(json.loads(feed.valid().value), i) for i in range(n_invalid)]
    return valid, invalid


@cache
def feed_items(n: int, seed: int = 7) -> list[Any]:
    """``n`` valid DemoFeed records (key, value, headers) for the Kafka benchmarks."""
    from hub.demo import DemoFeed
    from hub.geo import MunicipalityIndex
    from hub.registry import Registry

    feed = DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=seed)
    return feed.feed(n, broken_each=0)
