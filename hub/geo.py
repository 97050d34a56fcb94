"""Which municipality is a point in?

The route stage decides the owner by category × place, and in Flanders "place" means the
municipality: it is the default owner and the unit intercommunales and utilities are organised
by. This module answers that one question from the packaged polygons (285 Flemish + 19 Brussels
municipalities, post-2025 NIS codes, CRS84 lon/lat; see ``hub/data/municipalities/SOURCES.md``).

Design choices:

- Loaded once (``MunicipalityIndex.load`` caches per path) and immutable afterwards, so one
  index is shared by every message and every thread.
- A hash grid of 0.02° cells lists, per cell, the few polygons whose bounding box touches
  it; prepared geometries answer the exact test (``intersects_xy``, which for a point is
  *covers*, without creating a geometry object). Together a lookup costs a few microseconds
  (``bench/bench_routing.py``). The STRtree is kept for queries by geometry.
- A point is in a municipality when the polygon *covers* it (interior or boundary), so a
  point exactly on a border is never lost between two neighbours. When several polygons
  cover it (a shared border or a tri-point) the **lowest NIS code** wins: arbitrary, but
  deterministic and explainable, so the same melding always routes the same way.
- Non-finite or out-of-range coordinates raise ``ValueError``: a NaN would otherwise
  silently become "outside every municipality".
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

Region = Literal["Vlaanderen", "Brussel"]

GEOJSON_NAME = "gemeenten-vlaanderen-brussel.geojson"
NIS_MAPPING_NAME = "nis-2024-to-2025.csv"
_DATA_DIR = ("data", "municipalities")
_NIS = re.compile(r"^[1-9][0-9]{4}$")
_CELL = 0.02  # degrees: ~1.4 km × 2.2 km in Flanders, about 2–3 candidate polygons per cell
_intersects_xy = shapely.intersects_xy


@dataclass(frozen=True, slots=True)
class Municipality:
    """A municipality as routing needs it: its NIS code is the key everything else uses."""

    nis: str
    name: str
    region: Region


def region_of(nis: str) -> Region:
    """Brussels municipalities are the NIS codes 21xxx; every other code in the data is Flemish."""
    return "Brussel" if nis.startswith("21") else "Vlaanderen"


def check_lon_lat(lon: float, lat: float) -> None:
    """Refuse coordinates no melding can have, before they reach GEOS."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError(f"point ({lon}, {lat}) has non-finite coordinates")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"point ({lon}, {lat}) is not a lon/lat pair (lon in [-180, 180], lat in [-90, 90])")


class MunicipalityIndex:
    """Point → municipality over a fixed set of polygons (lon/lat, CRS84)."""

    def __init__(self, items: Iterable[tuple[Municipality, BaseGeometry]]) -> None:
        # Sorted by NIS so that "lowest NIS among hits" is simply "first hit in index order".
        ordered = sorted(items, key=lambda item: item[0].nis)
        if not ordered:
            raise ValueError("a municipality index needs at least one polygon")
        municipalities: list[Municipality] = []
        geometries: list[BaseGeometry] = []
        for municipality, geometry in ordered:
            if municipalities and municipalities[-1].nis == municipality.nis:
                raise ValueError(f"NIS code {municipality.nis} appears twice")
            if geometry.is_empty or geometry.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"{municipality.nis}: expected a (Multi)Polygon, got {geometry.geom_type}")
            if not geometry.is_valid:
                raise ValueError(f"{municipality.nis}: invalid polygon ({shapely.is_valid_reason(geometry)})")
            municipalities.append(municipality)
            geometries.append(geometry)
        self._municipalities = tuple(municipalities)
        self._geometries = np.array(geometries, dtype=object)
        shapely.prepare(self._geometries)
        self._tree = shapely.STRtree(self._geometries)
        self._position = {m.nis: i for i, m in enumerate(municipalities)}
        # cell → positions (ascending, i.e. by NIS) of the polygons whose bounding box touches it
        cells: dict[tuple[int, int], list[int]] = {}
        for position, geometry in enumerate(geometries):
            minx, miny, maxx, maxy = geometry.bounds
            for i in range(math.floor(minx / _CELL), math.floor(maxx / _CELL) + 1):
                for j in range(math.floor(miny / _CELL), math.floor(maxy / _CELL) + 1):
                    cells.setdefault((i, j), []).append(position)
        self._cells = {key: tuple(positions) for key, positions in cells.items()}

    @classmethod
    def load(cls, path: str | Path | None = None) -> MunicipalityIndex:
        """The index for a GeoJSON file (default: the packaged one). Cached: loaded once per path."""
        return _load_cached(None if path is None else str(Path(path).resolve()))

    @classmethod
    def from_geojson(cls, data: dict[str, Any]) -> MunicipalityIndex:
        """Build from a FeatureCollection whose features carry ``geoitem`` (NIS) and ``naam``."""
        items = []
        for number, feature in enumerate(data.get("features", [])):
            props = feature.get("properties") or {}
            nis, name = str(props.get("geoitem", "")), props.get("naam")
            if not _NIS.match(nis) or not isinstance(name, str) or not name:
                raise ValueError(f"feature {number}: needs a 5-digit 'geoitem' and a 'naam', got {props!r}")
            items.append((Municipality(nis, name, region_of(nis)), shape(feature["geometry"])))
        return cls(items)

    def locate(self, lon: float, lat: float) -> Municipality | None:
        """The municipality covering (lon, lat), or ``None`` outside Flanders and Brussels.

        On a shared border the lowest NIS code among the covering polygons wins.
        """
        check_lon_lat(lon, lat)
        geometries = self._geometries
        for i in self._cells.get((math.floor(lon / _CELL), math.floor(lat / _CELL)), ()):
            if _intersects_xy(geometries[i], lon, lat):  # a point intersects a polygon iff it is covered
                return self._municipalities[i]
        return None

    def get(self, nis: str) -> Municipality | None:
        i = self._position.get(nis)
        return None if i is None else self._municipalities[i]

    def geometry(self, nis: str) -> BaseGeometry:
        """The polygon of a municipality (KeyError if unknown): for tests and ``route explain``."""
        return self._geometries[self._position[nis]]

    def representative_point(self, nis: str) -> tuple[float, float]:
        """A point guaranteed to lie inside the municipality (not its centroid, which may not)."""
        p = self.geometry(nis).representative_point()
        return (p.x, p.y)

    def __contains__(self, nis: object) -> bool:
        return nis in self._position

    def __iter__(self) -> Iterator[Municipality]:
        return iter(self._municipalities)

    def __len__(self) -> int:
        return len(self._municipalities)


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> MunicipalityIndex:
    raw = Path(path).read_bytes() if path is not None else _packaged(GEOJSON_NAME)
    return MunicipalityIndex.from_geojson(json.loads(raw))


def load_nis_2024_to_2025(path: str | Path | None = None) -> dict[str, str]:
    """Pre-2025 NIS code → post-2025 code (identity rows included, placeholders 9999x left out).

    Used to turn "unknown NIS 37015" in a configuration into "37015 is pre-2025; use 37022".
    """
    return dict(_nis_mapping_cached(None if path is None else str(Path(path).resolve())))


@lru_cache(maxsize=4)
def _nis_mapping_cached(path: str | None) -> tuple[tuple[str, str], ...]:
    raw = Path(path).read_bytes() if path is not None else _packaged(NIS_MAPPING_NAME)
    rows = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    return tuple(
        (r["nis_2024"], r["nis_2025"])
        for r in rows
        if _NIS.match(r["nis_2024"] or "") and _NIS.match(r["nis_2025"] or "") and r.get("name_2025")
    )


def _packaged(name: str) -> bytes:
    node = resources.files("hub")
    for part in (*_DATA_DIR, name):
        node = node.joinpath(part)
    return node.read_bytes()
