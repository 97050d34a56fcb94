"""Realistic demo meldingen for Zuid-West-Vlaanderen, valid and deliberately broken.

Used by ``meldhub demo`` (and so ``make run``) and by the integration tests. Points are
sampled inside the real municipality polygons, so routing sees what it will see in
production; texts are Dutch, as a citizen writes them.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from shapely.geometry import Point

from hub.categories import Category, load_categories
from hub.geo import MunicipalityIndex
from hub.registry import Registry
from hub.topics import Header

CONTEXT = "https://w3id.org/meldingen-hub/context/melding-v1.jsonld"
MELDING_BASE = "https://w3id.org/meldingen-hub/id/melding/"
APPLICATION_BASE = "https://w3id.org/meldingen-hub/id/applicatie/"
STATUS_INGEDIEND = "https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/511"
TEXTS = Path(__file__).parent / "data" / "demo" / "meldingen-nl.yaml"

# Broken on purpose, one per error class the hub must dead-letter (not the "bug" class).
BROKEN_KINDS = (
    "not-utf8",
    "not-json",
    "not-jsonld",
    "shape-violation",
    "unknown-category",
    "missing-location",
    "outside-region",
    "too-large",
)


@dataclass(frozen=True)
class FeedItem:
    """One record for ``meldingen.inbound`` and what the feed meant by it."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    melding_id: str
    kind: str  # "valid" or one of BROKEN_KINDS
    category: str | None = None
    municipality_nis: str | None = None
    reporter: tuple[str, str, str] | None = field(default=None, repr=False)


@cache
def _texts() -> dict[str, Any]:
    return yaml.safe_load(TEXTS.read_text(encoding="utf-8"))


class DemoFeed:
    """Generates meldingen for the municipalities of a registry's region."""

    def __init__(self, registry: Registry, index: MunicipalityIndex, seed: int = 2026) -> None:
        self.rng = random.Random(seed)
        self.index = index
        self.categories: list[Category] = load_categories()
        self.municipalities = sorted(
            (a.nis, a.identifier, a.id, index.get(a.nis).name if index.get(a.nis) else a.name)
            for a in registry.authorities
            if a.kind == "gemeente" and a.nis
        )
        if not self.municipalities:
            raise ValueError("the registry lists no municipalities to generate meldingen for")
        self.now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

    # -- valid ---------------------------------------------------------------------------

    def point_in(self, nis: str) -> tuple[float, float]:
        geom = self.index.geometry(nis)
        minx, miny, maxx, maxy = geom.bounds
        for _ in range(1000):
            lon, lat = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if geom.contains(Point(lon, lat)):
                return round(lon, 6), round(lat, 6)
        raise RuntimeError(f"could not sample a point inside {nis}")

    def melding(
        self,
        category: str | None = None,
        nis: str | None = None,
        point: tuple[float, float] | None = None,
        anonymous: bool | None = None,
    ) -> tuple[dict[str, Any], tuple[str, str, str] | None, str]:
        """A canonical melding (JSON-LD dict), its reporter (or None) and its municipality NIS."""
        rng = self.rng
        cat = next(c for c in self.categories if c.slug == category) if category else rng.choice(self.categories)
        nis_, org_iri, authority_id, gemeente = (
            next(m for m in self.municipalities if m[0] == nis) if nis else rng.choice(self.municipalities)
        )
        lon, lat = point or self.point_in(nis_)
        title, description = rng.choice(_texts()["categorieen"][cat.slug])
        street = rng.choice(_texts()["straten"])
        melding_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        submitted = (self.now + timedelta(minutes=rng.randint(0, 60 * 24 * 3))).isoformat()
        source = f"meldingsapp-{authority_id}"
        doc: dict[str, Any] = {
            "@context": CONTEXT,
            "@id": MELDING_BASE + melding_id,
            "@type": "Melding",
            "identificator": {
                "@type": "Identificator",
                "notatie": melding_id,
                "toegekendDoor": org_iri,
                "toegekendOp": submitted,
            },
            "titel": title,
            "samenvatting": f"{title} ({street}, {gemeente})",
            "meldingstype": [cat.iri],
            "type": [cat.iri],
            "heeftBody": [
                {
                    "@type": "MeldingBody",
                    "beschrijving": description,
                    "geometrie": {"@type": "Geometrie", "wkt": f"POINT ({lon} {lat})"},
                }
            ],
            "heeftTarget": [
                {
                    "@type": "Adresvoorstelling",
                    "straatnaam": street,
                    "huisnummer": str(rng.randint(1, 180)),
                    "gemeentenaam": gemeente,
                }
            ],
            "heeftStatus": [
                {
                    "@type": "Meldingstatus",
                    "statuswaarde": STATUS_INGEDIEND,
                    "statusdatum": submitted,
                    "statuswijzigingDoor": org_iri,
                    "beschrijving": "Melding ingediend.",
                }
            ],
            "indiener": org_iri,
            "meldingsapplicatie": APPLICATION_BASE + source,
        }
        reporter = None
        if not (anonymous if anonymous is not None else rng.random() < 0.25):
            reporter = tuple(rng.choice(_texts()["melders"]))
            doc["melder"] = {
                "@id": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                "@type": "Persoon",
                "naam": reporter[0],
                "contactpunt": {"@type": "Contactpunt", "email": reporter[1], "telefoon": reporter[2]},
            }
        return doc, reporter, nis_

    def valid(self, **kwargs: Any) -> FeedItem:
        doc, reporter, nis = self.melding(**kwargs)
        melding_id = doc["identificator"]["notatie"]
        return FeedItem(
            melding_id.encode(),
            json.dumps(doc, ensure_ascii=False).encode(),
            _headers(doc),
            melding_id,
            "valid",
            doc["type"][0].rsplit("/", 1)[-1],
            nis,
            reporter,
        )

    # -- broken --------------------------------------------------------------------------

    def broken(self, kind: str) -> FeedItem:
        doc, reporter, nis = self.melding()
        melding_id = doc["identificator"]["notatie"]
        value: bytes
        if kind == "not-utf8":
            value = json.dumps(doc, ensure_ascii=False).encode("latin-1", errors="replace") + b"\xff\xfe caf\xe9"
        elif kind == "not-json":
            value = b"Melding: put in de weg aan de Kerkstraat, graag snel herstellen"
        elif kind == "not-jsonld":
            value = json.dumps({"title": doc["titel"], "lat": 50.8, "lon": 3.26}).encode()
        elif kind == "shape-violation":
            del doc["titel"]
            doc["heeftStatus"][0]["statusdatum"] = "gisteren"
            value = json.dumps(doc, ensure_ascii=False).encode()
        elif kind == "unknown-category":
            doc["meldingstype"] = doc["type"] = ["https://w3id.org/meldingen-hub/id/concept/categorie/ufo-waarneming"]
            value = json.dumps(doc, ensure_ascii=False).encode()
        elif kind == "missing-location":
            del doc["heeftBody"][0]["geometrie"]
            value = json.dumps(doc, ensure_ascii=False).encode()
        elif kind == "outside-region":
            # Rijsel (Lille), France: a valid point, but no authority of the region owns it.
            doc["heeftBody"][0]["geometrie"]["wkt"] = "POINT (3.0573 50.6292)"
            value = json.dumps(doc, ensure_ascii=False).encode()
        elif kind == "too-large":
            doc["heeftBody"][0]["beschrijving"] = "Foto als tekst geplakt: " + "A" * (1024 * 1024 + 10)
            value = json.dumps(doc, ensure_ascii=False).encode()
        else:
            raise ValueError(f"unknown kind of broken melding: {kind}")
        return FeedItem(melding_id.encode(), value, _headers(doc), melding_id, kind, None, nis, reporter)

    def on_layers(self, registry: Registry) -> list[FeedItem]:
        """One melding on each geographic layer of the registry's rules (a vertex of its first
        feature, the rule's first category), so the demo shows place-based ownership too:
        a pit on a regional road goes to AWV, litter on a towpath to the waterway manager."""
        items = []
        for rule in registry.rules:
            if rule.layer is None or rule.categories == "*":
                continue
            data = json.loads(registry.layer_path(rule.layer.id).read_text(encoding="utf-8"))
            coords = data["features"][0]["geometry"]["coordinates"]
            while isinstance(coords[0], list):  # LineString / Polygon: down to a vertex
                coords = coords[len(coords) // 2]
            lon, lat = float(coords[0]), float(coords[1])
            where = self.index.locate(lon, lat)
            if where is None or where.nis not in {m[0] for m in self.municipalities}:
                continue
            items.append(self.valid(category=rule.categories[0], nis=where.nis, point=(lon, lat)))
        return items

    def feed(self, n_valid: int, broken_each: int = 1) -> list[FeedItem]:
        """``n_valid`` valid meldingen over every category and municipality, plus
        ``broken_each`` of every broken kind, shuffled."""
        items = []
        for i in range(n_valid):
            cat = self.categories[i % len(self.categories)].slug
            nis = self.municipalities[(i // len(self.categories) + i) % len(self.municipalities)][0]
            items.append(self.valid(category=cat, nis=nis))
        items += [self.broken(kind) for kind in BROKEN_KINDS for _ in range(broken_each)]
        self.rng.shuffle(items)
        return items


def _headers(doc: dict[str, Any]) -> tuple[tuple[str, bytes], ...]:
    source = doc["meldingsapplicatie"].rsplit("/", 1)[-1]
    return ((Header.SOURCE, source.encode()), (Header.MELDING_ID, doc["identificator"]["notatie"].encode()))
