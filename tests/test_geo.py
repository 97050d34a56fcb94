"""Point → municipality on the real packaged polygons (post-2025 NIS codes).

Border tests build their points from the geometry itself (a shared edge, stepped 50 m to each
side) and check the index against plain shapely on the raw GeoJSON, so they do not depend on
hand-picked coordinates staying valid when the data is refreshed.
"""

from __future__ import annotations

import json
import math
import random
from importlib import resources

import pytest
import shapely
from shapely.geometry import Point, shape
from shapely.geometry.polygon import orient

from hub.geo import Municipality, MunicipalityIndex, load_nis_2024_to_2025, region_of

METRES_PER_DEGREE_LAT = 111_320.0


@pytest.fixture(scope="module")
def index() -> MunicipalityIndex:
    return MunicipalityIndex.load()


@pytest.fixture(scope="module")
def raw_shapes() -> dict[str, shapely.Geometry]:
    """The polygons straight from the packaged GeoJSON: the oracle the index is checked against."""
    path = resources.files("hub").joinpath("data").joinpath("municipalities").joinpath(
        "gemeenten-vlaanderen-brussel.geojson"
    )
    data = json.loads(path.read_bytes())
    return {f["properties"]["geoitem"]: shape(f["geometry"]) for f in data["features"]}


def brute_force(raw: dict[str, shapely.Geometry], lon: float, lat: float) -> str | None:
    hits = sorted(nis for nis, geom in raw.items() if geom.covers(Point(lon, lat)))
    return hits[0] if hits else None


def shared_edge(
    raw: dict[str, shapely.Geometry], a: str, b: str | None, min_len_m: float = 300.0
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A segment of ``a``'s exterior ring, oriented so ``a`` lies on its LEFT, whose two ends are
    vertices of ``b``'s boundary (``b=None``: the ends are on no other polygon, i.e. the Flemish
    outer border), at least ``min_len_m`` long and with no third polygon touching its ends."""
    others = {nis: g for nis, g in raw.items() if nis not in (a, b)}
    b_vertices = set(map(tuple, shapely.get_coordinates(raw[b]))) if b else set()
    polys = raw[a].geoms if raw[a].geom_type == "MultiPolygon" else [raw[a]]
    for poly in polys:
        ring = list(orient(poly, 1.0).exterior.coords)  # counter-clockwise: interior on the left
        for p, q in zip(ring, ring[1:]):
            if b and not (p in b_vertices and q in b_vertices):
                continue
            if _metres(p, q) < min_len_m:
                continue
            ends = [Point(p), Point(q)]
            if any(g.distance(e) < 1e-9 for g in others.values() for e in ends):
                continue  # a tri-point or (for b=None) a border with another municipality
            return p, q
    raise AssertionError(f"no suitable edge between {a} and {b}")


def _metres(p: tuple[float, float], q: tuple[float, float]) -> float:
    lat = math.radians((p[1] + q[1]) / 2)
    return math.hypot((q[0] - p[0]) * METRES_PER_DEGREE_LAT * math.cos(lat), (q[1] - p[1]) * METRES_PER_DEGREE_LAT)


def step_off(p: tuple[float, float], q: tuple[float, float], metres: float) -> tuple[tuple[float, float], ...]:
    """The edge's midpoint moved ``metres`` to the left and to the right of p→q."""
    lat0 = math.radians((p[1] + q[1]) / 2)
    kx = METRES_PER_DEGREE_LAT * math.cos(lat0)  # metres per degree of longitude here
    dx, dy = (q[0] - p[0]) * kx, (q[1] - p[1]) * METRES_PER_DEGREE_LAT
    norm = math.hypot(dx, dy)
    nx, ny = -dy / norm * metres, dx / norm * metres  # left normal, in metres
    mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    return (mx + nx / kx, my + ny / METRES_PER_DEGREE_LAT), (mx - nx / kx, my - ny / METRES_PER_DEGREE_LAT)


# --- the data ------------------------------------------------------------------------------


def test_packaged_index_has_all_post_2025_municipalities(index: MunicipalityIndex) -> None:
    regions = [m.region for m in index]
    assert len(index) == 304
    assert regions.count("Vlaanderen") == 285
    assert regions.count("Brussel") == 19
    assert all(m.nis.startswith("21") for m in index if m.region == "Brussel")


def test_load_is_cached(index: MunicipalityIndex) -> None:
    assert MunicipalityIndex.load() is index


# --- points well inside ------------------------------------------------------------------------

INSIDE = {
    "Kortrijk, Grote Markt": ((3.2649, 50.8280), "34022"),
    "Harelbeke centre": ((3.3093, 50.8538), "34013"),
    "Zwevegem centre": ((3.3378, 50.8127), "34042"),
    "Wevelgem centre": ((3.1797, 50.8096), "34041"),
    "Waregem centre": ((3.4271, 50.8884), "34040"),
    "Menen centre": ((3.1229, 50.7966), "34027"),
    "Lendelede centre": ((3.2370, 50.8860), "34025"),
    "Gent, Korenmarkt": ((3.7215, 51.0545), "44021"),
}


@pytest.mark.parametrize("label", INSIDE)
def test_point_well_inside_resolves_to_its_municipality(index: MunicipalityIndex, label: str) -> None:
    (lon, lat), nis = INSIDE[label]
    m = index.locate(lon, lat)
    assert m is not None and m.nis == nis, label
    assert m.region == "Vlaanderen"


def test_every_representative_point_resolves_to_its_own_municipality(index: MunicipalityIndex) -> None:
    for m in index:
        assert index.locate(*index.representative_point(m.nis)) == m


# --- 2025 mergers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "point", "old", "new", "new_name"),
    [
        ("Meulebeke centre", (3.2870, 50.9515), "37007", "37022", "Tielt"),
        ("Ruiselede centre", (3.3947, 51.0408), "37012", "37021", "Wingene"),
        ("Borsbeek centre", (4.4889, 51.1911), "11007", "11002", "Antwerpen"),
    ],
)
def test_merged_municipality_resolves_to_its_new_code(
    index: MunicipalityIndex, label: str, point: tuple[float, float], old: str, new: str, new_name: str
) -> None:
    assert load_nis_2024_to_2025()[old] == new
    assert old not in index
    assert index.locate(*point) == Municipality(new, new_name, "Vlaanderen"), label


# --- Brussels, Wallonia, France --------------------------------------------------------------


def test_point_in_brussels_is_in_region_brussel(index: MunicipalityIndex) -> None:
    assert index.locate(4.3525, 50.8467) == Municipality("21004", "Brussel", "Brussel")
    assert region_of("21004") == "Brussel" and region_of("34022") == "Vlaanderen"


@pytest.mark.parametrize(
    ("label", "lon", "lat"),
    [("Lille (FR)", 3.06, 50.63), ("Mons (Wallonia)", 3.95, 50.45), ("Mouscron (Wallonia)", 3.2150, 50.7440),
     ("Amsterdam (NL)", 4.90, 52.37), ("null island", 0.0, 0.0)],
)
def test_point_outside_flanders_and_brussels_is_none(
    index: MunicipalityIndex, label: str, lon: float, lat: float
) -> None:
    assert index.locate(lon, lat) is None, label


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(math.nan, 50.8), (3.2, math.nan), (math.inf, 50.8), (3.2, -math.inf), (181.0, 50.8), (3.2, 90.5)],
)
def test_non_finite_or_out_of_range_coordinates_are_rejected(index: MunicipalityIndex, lon: float, lat: float) -> None:
    with pytest.raises(ValueError):
        index.locate(lon, lat)


# --- borders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [("34022", "34013"), ("34022", "34042"), ("34041", "34027"), ("34040", "34002")])
def test_fifty_metres_either_side_of_a_shared_border(
    index: MunicipalityIndex, raw_shapes: dict[str, shapely.Geometry], a: str, b: str
) -> None:
    p, q = shared_edge(raw_shapes, a, b)
    left, right = step_off(p, q, 50.0)
    assert index.locate(*left).nis == a  # type: ignore[union-attr]
    assert index.locate(*right).nis == b  # type: ignore[union-attr]


def test_fifty_metres_either_side_of_the_flemish_border(
    index: MunicipalityIndex, raw_shapes: dict[str, shapely.Geometry]
) -> None:
    p, q = shared_edge(raw_shapes, "34022", None)  # Kortrijk's border with Wallonia (Mouscron)
    inside, outside = step_off(p, q, 50.0)
    assert index.locate(*inside).nis == "34022"  # type: ignore[union-attr]
    assert index.locate(*outside) is None


def test_point_exactly_on_a_shared_border_goes_to_the_lowest_nis(
    index: MunicipalityIndex, raw_shapes: dict[str, shapely.Geometry]
) -> None:
    p, _ = shared_edge(raw_shapes, "34022", "34013")  # a vertex of both Kortrijk and Harelbeke
    assert raw_shapes["34022"].covers(Point(p)) and raw_shapes["34013"].covers(Point(p))
    assert index.locate(*p).nis == "34013"  # type: ignore[union-attr]  # 34013 < 34022
    assert index.locate(*p) == index.locate(*p)


def test_index_agrees_with_brute_force_on_random_points(
    index: MunicipalityIndex, raw_shapes: dict[str, shapely.Geometry]
) -> None:
    rng = random.Random(20250101)
    for _ in range(1500):
        lon, lat = rng.uniform(2.5, 5.95), rng.uniform(50.65, 51.52)  # Flanders' bounding box
        m = index.locate(lon, lat)
        assert (m.nis if m else None) == brute_force(raw_shapes, lon, lat), (lon, lat)


# --- construction -------------------------------------------------------------------------------


def test_bad_feature_is_refused() -> None:
    def collection(nis: str, ring: list[list[int]]) -> dict[str, object]:
        feature = {"properties": {"geoitem": nis, "naam": "X"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        return {"features": [feature]}

    with pytest.raises(ValueError, match="5-digit"):
        MunicipalityIndex.from_geojson(collection("123", [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]))
    with pytest.raises(ValueError, match="invalid polygon"):  # a bow-tie
        MunicipalityIndex.from_geojson(collection("12345", [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]))
