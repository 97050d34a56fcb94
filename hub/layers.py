"""Geographic layers for routing: regional roads, navigable waterways, a utility's assets.

A rule of the registry may say "only within ``buffer_m`` metres of a feature of layer L" (e.g.
within 25 m of a regional road → AWV). This module loads such layers and answers that question.

Distances are computed in metres, properly: lon/lat is projected to **Belgian Lambert 2008**
(EPSG:3812, Lambert conformal conic on the GRS80 ellipsoid), implemented here in a few lines
(:func:`to_lambert2008`, :func:`from_lambert2008`) instead of pulling in PROJ. Accuracy:

- the projection formulas match PROJ to the millimetre (``tests/test_layers.py`` checks
  reference values computed with pyproj);
- a conformal projection keeps distances within its scale error, which in Flanders is below
  0.02 % (under 1 cm on a 40 m buffer);
- points and layers are lon/lat "WGS84"; Lambert 2008 is defined on ETRS89. The two differ
  by under 1 m in Belgium today (the hub ignores the difference; phone GPS is 5–10 m off anyway).

Layers are GeoJSON (RFC 7946: CRS84 lon/lat) FeatureCollections with (Multi)LineString,
(Multi)Point or (Multi)Polygon features; each is projected once at load and put in an STRtree,
so "is this point within 25 m of any regional road?" costs a few microseconds. A loaded layer is
cached per (path, mtime, size): a registry reload does not re-read unchanged layers.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

# --- Belgian Lambert 2008 (EPSG:3812) -------------------------------------------------------------

_A = 6378137.0  # GRS80 semi-major axis
_F = 1 / 298.257222101  # GRS80 flattening
_E2 = _F * (2 - _F)
_E = math.sqrt(_E2)
_LAT1 = math.radians(49 + 50 / 60)  # standard parallels 49°50' and 51°10'
_LAT2 = math.radians(51 + 10 / 60)
_LAT0 = math.radians(50 + 47 / 60 + 52.134 / 3600)  # latitude of false origin 50°47'52.134"
_LON0 = math.radians(4 + 21 / 60 + 33.177 / 3600)  # longitude of false origin 4°21'33.177"
_X0 = 649328.0
_Y0 = 665262.0


def _m(phi: float) -> float:
    s = math.sin(phi)
    return math.cos(phi) / math.sqrt(1 - _E2 * s * s)


def _t(phi: float) -> float:
    s = math.sin(phi)
    return math.tan(math.pi / 4 - phi / 2) / ((1 - _E * s) / (1 + _E * s)) ** (_E / 2)


_N = (math.log(_m(_LAT1)) - math.log(_m(_LAT2))) / (math.log(_t(_LAT1)) - math.log(_t(_LAT2)))
_AF = _A * _m(_LAT1) / (_N * _t(_LAT1) ** _N)
_RHO0 = _AF * _t(_LAT0) ** _N


def to_lambert2008(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) in degrees → (x, y) in metres, Belgian Lambert 2008 (EPSG:3812)."""
    phi = math.radians(lat)
    s = math.sin(phi)
    t = math.tan(math.pi / 4 - phi / 2) / ((1 - _E * s) / (1 + _E * s)) ** (_E / 2)
    rho = _AF * t**_N
    theta = _N * (math.radians(lon) - _LON0)
    return _X0 + rho * math.sin(theta), _Y0 + _RHO0 - rho * math.cos(theta)


def to_lambert2008_array(coords: np.ndarray) -> np.ndarray:
    """Vectorised :func:`to_lambert2008` for an (n, 2) array of lon/lat."""
    lon = np.radians(coords[:, 0])
    phi = np.radians(coords[:, 1])
    s = np.sin(phi)
    t = np.tan(np.pi / 4 - phi / 2) / ((1 - _E * s) / (1 + _E * s)) ** (_E / 2)
    rho = _AF * t**_N
    theta = _N * (lon - _LON0)
    return np.column_stack((_X0 + rho * np.sin(theta), _Y0 + _RHO0 - rho * np.cos(theta)))


def from_lambert2008(x: float, y: float) -> tuple[float, float]:
    """(x, y) in metres, EPSG:3812 → (lon, lat) in degrees (inverse of :func:`to_lambert2008`)."""
    dx, dy = x - _X0, _RHO0 - (y - _Y0)
    rho = math.copysign(math.hypot(dx, dy), _N)
    theta = math.atan2(dx, dy)
    t = (rho / _AF) ** (1 / _N)
    phi = math.pi / 2 - 2 * math.atan(t)
    for _ in range(10):
        s = math.sin(phi)
        nxt = math.pi / 2 - 2 * math.atan(t * ((1 - _E * s) / (1 + _E * s)) ** (_E / 2))
        if abs(nxt - phi) < 1e-12:
            phi = nxt
            break
        phi = nxt
    return math.degrees(theta / _N + _LON0), math.degrees(phi)


def project_geometry(geometry: BaseGeometry) -> BaseGeometry:
    """A lon/lat shapely geometry in Lambert 2008 metres."""
    return shapely.transform(geometry, to_lambert2008_array)


def unproject_geometry(geometry: BaseGeometry) -> BaseGeometry:
    """A Lambert 2008 geometry back in lon/lat (for sampling points near a feature)."""

    def inverse(coords: np.ndarray) -> np.ndarray:
        return np.array([from_lambert2008(x, y) for x, y in coords]).reshape(-1, 2)

    return shapely.transform(geometry, inverse)


# --- layers ---------------------------------------------------------------------------------------


_DENSIFY_DEGREES = 0.0005  # ≈ 35 m east-west, 55 m north-south in Flanders


class LayerError(ValueError):
    """A layer file is missing, not GeoJSON, or has geometry the hub cannot use; says where."""


_GEOMETRY_TYPES = {
    "Point": "point",
    "MultiPoint": "point",
    "LineString": "line",
    "MultiLineString": "line",
    "Polygon": "polygon",
    "MultiPolygon": "polygon",
}


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature of a layer: a label for explanations and its properties for ``where`` filters."""

    index: int
    label: str
    properties: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LayerHit:
    """The nearest feature of a layer to a point, and how far it is (metres, Lambert 2008)."""

    layer_id: str
    feature: Feature
    distance_m: float


class Layer:
    """The features of one GeoJSON file, projected to Lambert 2008 and indexed."""

    def __init__(
        self,
        layer_id: str,
        features: Sequence[tuple[BaseGeometry, Mapping[str, Any]]],
        *,
        label_property: str = "naam",
        sha256: str = "",
        source: str = "",
    ) -> None:
        self.id = layer_id
        self.sha256 = sha256
        self.source = source
        feats: list[Feature] = []
        projected: list[BaseGeometry] = []
        lonlat: list[BaseGeometry] = []
        for i, (geometry, props) in enumerate(features):
            label = props.get(label_property) or props.get("id") or f"feature {i}"
            feats.append(Feature(i, str(label), dict(props)))
            lonlat.append(geometry)
            # GeoJSON edges are straight in lon/lat; densify before projecting so that the Lambert
            # edges follow them (a 2 km edge would otherwise bow up to ~0.2 m away)
            projected.append(project_geometry(shapely.segmentize(geometry, _DENSIFY_DEGREES)))
        self.features: tuple[Feature, ...] = tuple(feats)
        self.geometries_lonlat: tuple[BaseGeometry, ...] = tuple(lonlat)
        self._projected = np.array(projected, dtype=object)
        self.kinds = frozenset(_GEOMETRY_TYPES[g.geom_type] for g in lonlat)

    def __len__(self) -> int:
        return len(self.features)

    def projected(self, i: int) -> BaseGeometry:
        return self._projected[i]

    def select(self, where: Mapping[str, Sequence[str]] | None) -> LayerView:
        """The features whose properties match ``where`` (property → allowed values), indexed."""
        if not where:
            chosen = list(range(len(self.features)))
        else:
            chosen = [
                f.index
                for f in self.features
                if all(_text(f.properties.get(key)) in {str(v) for v in values} for key, values in where.items())
            ]
        return LayerView(self, chosen)

    @classmethod
    def from_geojson(
        cls, layer_id: str, data: Any, *, where: str = "", label_property: str = "naam", sha256: str = ""
    ) -> Layer:
        """Build from a parsed GeoJSON FeatureCollection (CRS84 lon/lat)."""
        where = where or layer_id
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
            raise LayerError(f"{where}: expected a GeoJSON FeatureCollection")
        crs = data.get("crs")
        if crs is not None and "CRS84" not in json.dumps(crs) and "4326" not in json.dumps(crs):
            raise LayerError(
                f"{where}: declares crs {json.dumps(crs)}; the hub reads lon/lat (RFC 7946, CRS84) only — "
                "convert with e.g. `ogr2ogr -f GeoJSON -t_srs EPSG:4326 -lco RFC7946=YES out.geojson in.shp`"
            )
        items: list[tuple[BaseGeometry, Mapping[str, Any]]] = []
        for number, feature in enumerate(data.get("features") or []):
            geometry_json = (feature or {}).get("geometry")
            if not geometry_json:
                continue  # GeoJSON allows features without geometry; they can claim no point
            try:
                geometry = shape(geometry_json)
            except Exception as exc:  # noqa: BLE001 - shapely raises several types for bad input
                raise LayerError(f"{where}: feature {number}: unusable geometry ({exc})") from None
            if geometry.geom_type not in _GEOMETRY_TYPES:
                raise LayerError(f"{where}: feature {number}: {geometry.geom_type} is not supported")
            if geometry.is_empty:
                continue
            minx, miny, maxx, maxy = geometry.bounds
            if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
                raise LayerError(
                    f"{where}: feature {number}: coordinates ({minx}, {miny}) are not lon/lat — "
                    "is the file still in Lambert 72/2008? Convert it to EPSG:4326 (see deploy/regions/README.md)"
                )
            if geometry.geom_type in ("Polygon", "MultiPolygon") and not geometry.is_valid:
                raise LayerError(f"{where}: feature {number}: invalid polygon ({shapely.is_valid_reason(geometry)})")
            items.append((geometry, (feature.get("properties") or {})))
        if not items:
            raise LayerError(f"{where}: no features with geometry")
        return cls(layer_id, items, label_property=label_property, sha256=sha256, source=where)

    @classmethod
    def load(cls, layer_id: str, path: str | Path, *, label_property: str = "naam") -> Layer:
        """Read a GeoJSON file; cached per (path, mtime, size, label property)."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise LayerError(f"{path}: cannot read layer {layer_id!r} ({exc.strerror})") from None
        key = (layer_id, str(p), st.st_mtime_ns, st.st_size, label_property)
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None:
            return cached
        raw = p.read_bytes()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LayerError(f"{path}: layer {layer_id!r} is not valid JSON ({exc})") from None
        layer = cls.from_geojson(
            layer_id, data, where=str(path), label_property=label_property, sha256=hashlib.sha256(raw).hexdigest()
        )
        with _cache_lock:
            if len(_cache) > 32:
                _cache.clear()
            _cache[key] = layer
        return layer


_cache: dict[tuple[str, str, int, int, str], Layer] = {}
_cache_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class LayerView:
    """Some features of a layer (a rule's ``where`` selection) with their own spatial indexes.

    Two indexes, because the two questions differ:

    - ``within`` (the routing hot path: "any feature within d metres?") uses a hash grid of
      line pieces: the features' segments, cut to at most one cell long, filed under every cell
      their d-widened box touches. A point then looks up one cell and measures its distance to
      the few pieces there in plain arithmetic — no geometry object is created, and a point
      far from every feature costs one dictionary lookup. Built per distance, on first use.
      Polygon features (and very dense cells) fall back to the STRtree.
    - ``nearest`` (explanations, ``route check``) uses an STRtree.
    """

    def __init__(self, layer: Layer, indices: Iterable[int]) -> None:
        self.layer = layer
        self._indices = np.array(sorted(indices), dtype=np.intp)
        geoms = np.array([layer.projected(int(i)) for i in self._indices], dtype=object)
        self._geoms = geoms
        self._tree = shapely.STRtree(geoms) if len(geoms) else None
        self._has_polygons = any(g.geom_type in ("Polygon", "MultiPolygon") for g in geoms)
        self._grids: dict[float, _PieceGrid] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._indices)

    def within(self, x: float, y: float, distance_m: float) -> bool:
        """Is any selected feature within ``distance_m`` of the projected point?"""
        if self._tree is None:
            return False
        if self._has_polygons:
            return self._tree_within(x, y, distance_m)
        grid = self._grids.get(distance_m)
        if grid is None:
            with self._lock:
                grid = self._grids.get(distance_m)
                if grid is None:
                    grid = _PieceGrid(self._geoms, distance_m)
                    self._grids[distance_m] = grid
        return grid.within(x, y)

    def _tree_within(self, x: float, y: float, distance_m: float) -> bool:
        assert self._tree is not None
        return bool(len(self._tree.query(shapely.Point(x, y), predicate="dwithin", distance=distance_m)))

    def nearest(self, x: float, y: float, max_distance_m: float | None = None) -> LayerHit | None:
        """The nearest selected feature (ties: the lowest feature index), or None if none is near."""
        if self._tree is None:
            return None
        point = shapely.Point(x, y)
        found = self._tree.query_nearest(point, max_distance=max_distance_m, return_distance=True, all_matches=True)
        positions, distances = found
        if len(positions) == 0:
            return None
        best = min(zip(distances.tolist(), positions.tolist(), strict=True), key=lambda dp: (dp[0], dp[1]))
        feature = self.layer.features[int(self._indices[best[1]])]
        return LayerHit(self.layer.id, feature, float(best[0]))

    def geometries(self) -> Iterable[tuple[Feature, BaseGeometry]]:
        """(feature, projected geometry) of the selection, for sampling in ``route check``."""
        for position, i in enumerate(self._indices):
            yield self.layer.features[int(i)], self._geoms[position]


class _PieceGrid:
    """Line pieces (and points) of projected geometries, filed by grid cell, for "within d metres?"."""

    def __init__(self, geometries: Sequence[BaseGeometry], distance_m: float) -> None:
        self.d2 = distance_m * distance_m
        cell = self.cell = max(50.0, 2.0 * distance_m)
        cells: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
        for geometry in geometries:
            for part in getattr(geometry, "geoms", [geometry]):
                coords = shapely.get_coordinates(part).tolist()
                if len(coords) == 1:
                    (px, py), = coords
                    pieces = [(px, py, px, py)]
                else:
                    pieces = []
                    for (x1, y1), (x2, y2) in zip(coords, coords[1:]):
                        n = max(1, math.ceil(math.hypot(x2 - x1, y2 - y1) / cell))
                        for k in range(n):
                            a, b = k / n, (k + 1) / n
                            pieces.append((x1 + (x2 - x1) * a, y1 + (y2 - y1) * a, x1 + (x2 - x1) * b, y1 + (y2 - y1) * b))
                for piece in pieces:
                    ax, ay, bx, by = piece
                    i0 = math.floor((min(ax, bx) - distance_m) / cell)
                    i1 = math.floor((max(ax, bx) + distance_m) / cell)
                    j0 = math.floor((min(ay, by) - distance_m) / cell)
                    j1 = math.floor((max(ay, by) + distance_m) / cell)
                    for i in range(i0, i1 + 1):
                        for j in range(j0, j1 + 1):
                            cells.setdefault((i, j), []).append(piece)
        self.cells = {k: tuple(v) for k, v in cells.items()}

    def within(self, x: float, y: float) -> bool:
        pieces = self.cells.get((math.floor(x / self.cell), math.floor(y / self.cell)))
        if not pieces:
            return False
        d2 = self.d2
        for ax, ay, bx, by in pieces:
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            if length2 == 0.0:
                ex, ey = x - ax, y - ay
            else:
                t = ((x - ax) * dx + (y - ay) * dy) / length2
                t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
                ex, ey = x - (ax + t * dx), y - (ay + t * dy)
            if ex * ex + ey * ey <= d2:
                return True
        return False
