"""Layers (regional roads, waterways, a utility's assets), metres in Lambert 2008, routing on the
real municipality polygons, hot reload of the registry, and the coverage check.

Points near a border or a layer are built from the geometry itself (a shared edge or a feature,
stepped a given number of metres to each side), so the tests do not depend on hand-picked
coordinates staying valid when the data or the sample layers change.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import shapely
import structlog
import yaml

from hub.errors import OutsideRegion
from hub.geo import MunicipalityIndex
from hub.layers import Layer, LayerError, file_sha256, from_lambert2008, to_lambert2008
from hub.registry import CATEGORY_BASE, DEFAULT_REGISTRY, Registry, RegistryError
from hub.routing import ReloadingRouter, Router, check_coverage

LAYERS = DEFAULT_REGISTRY.parent / "layers"


def cat(slug: str) -> str:
    return CATEGORY_BASE + slug


@pytest.fixture(scope="module")
def index() -> MunicipalityIndex:
    return MunicipalityIndex.load()


@pytest.fixture(scope="module")
def router(index: MunicipalityIndex) -> Router:
    return Router(Registry.load(DEFAULT_REGISTRY), index)


def offset(lon: float, lat: float, bearing_xy: tuple[float, float], metres: float) -> tuple[float, float]:
    """The point ``metres`` from (lon, lat) along the unit vector ``bearing_xy`` (Lambert 2008 axes)."""
    x, y = to_lambert2008(lon, lat)
    return from_lambert2008(x + bearing_xy[0] * metres, y + bearing_xy[1] * metres)


def on_feature(router: Router, layer_id: str, label: str, nis: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """A point on the feature inside municipality ``nis``, away from its vertices, and the unit normal there."""
    layer = router.layers[layer_id]
    feature = next(f for f in layer.features if f.label == label)
    line = layer.projected(feature.index)
    for k in range(1, 400):
        d = line.length * k / 400
        p, q = line.interpolate(d), line.interpolate(d + 1.0)
        lon, lat = from_lambert2008(p.x, p.y)
        m = router.index.locate(lon, lat)
        if m is None or m.nis != nis:
            continue
        dx, dy = q.x - p.x, q.y - p.y
        n = math.hypot(dx, dy)
        normal = (-dy / n, dx / n)
        # both sides must stay in the municipality and away from every other feature of any layer
        sides = [offset(lon, lat, normal, s * 80) for s in (1, -1)]
        if all(router.index.locate(*pt) == m for pt in sides) and _clear_of_other_layers(router, layer_id, label, sides):
            return (lon, lat), normal
    raise AssertionError(f"no clean point on {label} in {nis}")


def _clear_of_other_layers(router: Router, layer_id: str, label: str, points: list[tuple[float, float]]) -> bool:
    for lid, layer in router.layers.items():
        for f in layer.features:
            if lid == layer_id and f.label == label:
                continue
            for pt in points:
                if layer.projected(f.index).distance(shapely.Point(*to_lambert2008(*pt))) < 150:
                    return False
    return True


# --- Lambert 2008 --------------------------------------------------------------------------------

# Reference values from PROJ (pyproj 3.7, EPSG:4326 → EPSG:3812, always_xy).
PROJ_REFERENCE = [
    ((3.2649, 50.8280), (572232.6481, 669187.8665)),  # Kortrijk
    ((4.3525, 50.8467), (648855.0356, 670699.9451)),  # Brussel
    ((2.5500, 51.0900), (522585.5137, 699309.7521)),  # De Panne
    ((5.9000, 50.7500), (758053.5454, 661071.2820)),  # Voeren
    ((5.5000, 51.3000), (728890.1265, 721739.8441)),  # Lommel
    ((4.359215833, 50.797815), (649328.0, 665262.0)),  # the false origin
]


@pytest.mark.parametrize(("lonlat", "xy"), PROJ_REFERENCE)
def test_lambert2008_matches_proj_to_the_millimetre(lonlat: tuple[float, float], xy: tuple[float, float]) -> None:
    x, y = to_lambert2008(*lonlat)
    assert abs(x - xy[0]) < 0.001 and abs(y - xy[1]) < 0.001
    lon, lat = from_lambert2008(*xy)
    assert abs(lon - lonlat[0]) < 1e-8 and abs(lat - lonlat[1]) < 1e-8


def test_a_metre_in_lambert_is_a_metre_on_the_ground() -> None:
    # 1/1000 of a degree of latitude at Kortrijk is 111.23 m on the GRS80 ellipsoid
    a, b = to_lambert2008(3.2649, 50.8280), to_lambert2008(3.2649, 50.8290)
    assert abs(math.dist(a, b) - 111.23) < 0.05


# --- layer files ---------------------------------------------------------------------------------


def test_sample_layers_say_they_are_hand_made() -> None:
    for path in sorted(LAYERS.glob("*.geojson")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["meldhub"]["sample"] is True, path
        assert "HAND-MADE SAMPLE" in data["meldhub"]["note"], path
        assert all(f["properties"]["sample"] is True for f in data["features"]), path


def test_layer_refuses_lambert_coordinates_and_foreign_crs(tmp_path: Path) -> None:
    lambert = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[572232, 669187], [572300, 669200]]}}
    ]}
    with pytest.raises(LayerError, match="not lon/lat .* Lambert"):
        Layer.from_geojson("x", lambert)
    lambert["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::31370"}}
    with pytest.raises(LayerError, match="declares crs .*ogr2ogr"):
        Layer.from_geojson("x", lambert)
    with pytest.raises(LayerError, match="expected a GeoJSON FeatureCollection"):
        Layer.from_geojson("x", {"type": "Feature"})
    with pytest.raises(LayerError, match="no features with geometry"):
        Layer.from_geojson("x", {"type": "FeatureCollection", "features": []})
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(LayerError, match="not valid JSON"):
        Layer.load("x", bad)
    with pytest.raises(LayerError, match="cannot read layer"):
        Layer.load("x", tmp_path / "missing.geojson")


def test_distance_to_a_line_is_measured_in_metres() -> None:
    start, end = (3.2600, 50.8200), (3.2700, 50.8200)
    layer = Layer.from_geojson("l", {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"naam": "Teststraat", "beheer": "AWV"},
         "geometry": {"type": "LineString", "coordinates": [list(start), list(end)]}},
        {"type": "Feature", "properties": {"naam": "Gemeenteweg", "beheer": "gemeente"},
         "geometry": {"type": "LineString", "coordinates": [[3.2600, 50.8300], [3.2700, 50.8300]]}},
    ]})
    view = layer.select(None)
    north = (0.0, 1.0)
    for metres in (5.0, 24.0, 26.0, 100.0):
        lon, lat = offset(3.2650, 50.8200, north, metres)
        x, y = to_lambert2008(lon, lat)
        hit = view.nearest(x, y)
        assert hit is not None and hit.feature.label == "Teststraat"
        assert abs(hit.distance_m - metres) < 0.05  # the chord is straight in Lambert; 1 km long → mm sag
        assert view.within(x, y, 25.0) is (metres <= 25.0)
    only_municipal = layer.select({"beheer": ("gemeente",)})
    x, y = to_lambert2008(*offset(3.2650, 50.8200, north, 5.0))
    assert not only_municipal.within(x, y, 25.0)
    assert only_municipal.nearest(x, y).feature.label == "Gemeenteweg"  # type: ignore[union-attr]


# --- routing with layers, on the real polygons -------------------------------------------------


@pytest.mark.parametrize("slug", ["wegdefect", "verkeerslicht-signalisatie", "hinder-wegenwerken"])
@pytest.mark.parametrize(("label", "nis", "municipality"), [
    ("R8 Kortrijkse ring", "34022", "kortrijk"),
    ("N43 Kortrijk-Harelbeke-Waregem", "34040", "waregem"),
])
def test_regional_road_versus_the_adjacent_municipal_street(
    router: Router, slug: str, label: str, nis: str, municipality: str
) -> None:
    (lon, lat), normal = on_feature(router, "gewestwegen", label, nis)
    for side in (1, -1):
        on_road = offset(lon, lat, normal, side * 10)  # the carriageway or its cycle path
        edge = offset(lon, lat, normal, side * 24)  # still inside the 25 m buffer
        street = offset(lon, lat, normal, side * 60)  # a street alongside, outside the buffer
        for point in (on_road, edge):
            d = router.route([cat(slug)], [point])
            assert (d.authority_id, d.rule_id, d.municipality_nis) == ("awv", "regional-road-awv", nis)
        d = router.route([cat(slug)], [street])
        assert (d.authority_id, d.rule_id) == (municipality, "default-municipality")
    e = router.explain([cat(slug)], [offset(lon, lat, normal, 60)])
    road = next(t for t in e.rules if t.rule_id == "regional-road-awv")
    assert not road.matched and road.layer_feature == label and 59 < (road.distance_m or 0) < 61
    assert "outside the 25 m buffer" in road.reason


def test_other_categories_on_a_regional_road_stay_with_the_municipality(router: Router) -> None:
    (lon, lat), _ = on_feature(router, "gewestwegen", "R8 Kortrijkse ring", "34022")
    assert router.route([cat("straatverlichting")], [(lon, lat)]).authority_id == "fluvius"
    assert router.route([cat("geluidsoverlast")], [(lon, lat)]).authority_id == "kortrijk"
    assert router.route([cat("zwerfvuil")], [(lon, lat)]).authority_id == "imog"


def test_navigable_waterway_goes_to_de_vlaamse_waterweg(router: Router) -> None:
    (lon, lat), normal = on_feature(router, "bevaarbare-waterwegen", "Kanaal Bossuit-Kortrijk", "34042")
    bank = offset(lon, lat, normal, 30)
    away = offset(lon, lat, normal, 60)
    for slug in ("zwerfvuil", "sluikstort", "dierenoverlast-dood-dier", "groenonderhoud-bomen"):
        assert router.route([cat(slug)], [bank]).authority_id == "de-vlaamse-waterweg"
    assert router.route([cat("zwerfvuil")], [away]).authority_id == "imog"  # Zwevegem is an Imog member
    assert router.route([cat("groenonderhoud-bomen")], [away]).authority_id == "zwevegem"
    assert router.route([cat("wegdefect")], [bank]).authority_id == "zwevegem"  # a road by the canal is not DVW's


def test_waterway_in_a_non_imog_municipality(router: Router) -> None:
    (lon, lat), normal = on_feature(router, "bevaarbare-waterwegen", "Leie", "34041")
    assert router.route([cat("zwerfvuil")], [offset(lon, lat, normal, 20)]).authority_id == "de-vlaamse-waterweg"
    assert router.route([cat("zwerfvuil")], [offset(lon, lat, normal, 60)]).authority_id == "wevelgem"


def test_graffiti_on_a_utility_cabin_goes_to_the_utility(router: Router) -> None:
    layer = router.layers["fluvius-assets"]
    for feature, geometry in zip(layer.features, layer.geometries_lonlat, strict=True):
        lon, lat = geometry.x, geometry.y
        municipality = router.index.locate(lon, lat)
        assert municipality is not None
        owner = router.registry.municipality_authority(municipality.nis).id  # type: ignore[union-attr]
        assert router.route([cat("graffiti-vandalisme")], [offset(lon, lat, (1, 0), 10)]).authority_id == "fluvius"
        assert router.route([cat("graffiti-vandalisme")], [offset(lon, lat, (1, 0), 40)]).authority_id == owner, feature
        assert router.route([cat("wegdefect")], [(lon, lat)]).authority_id in (owner, "awv")


def test_a_layer_does_not_pull_a_point_into_the_region(router: Router) -> None:
    # the Leie is the French border at Menen: its buffer reaches into France, which is not served
    layer = router.layers["bevaarbare-waterwegen"]
    leie = layer.projected(next(f.index for f in layer.features if f.label == "Leie"))
    for k in range(200):
        p = leie.interpolate(leie.length * k / 200)
        lon, lat = from_lambert2008(p.x, p.y)
        south = offset(lon, lat, (0, -1), 30)
        if router.index.locate(*south) is None and (m := router.index.locate(lon, lat)) and m.nis == "34027":
            break
    else:
        raise AssertionError("no point of the Leie on the French border")
    with pytest.raises(OutsideRegion, match="lies in no Flemish or Brussels municipality"):
        router.route([cat("zwerfvuil")], [south])


# --- borders, 2025 mergers, Brussels and abroad -----------------------------------------------------


def border_points(index: MunicipalityIndex, a: str, b: str, metres: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """A point ``metres`` inside ``a`` and one ``metres`` inside ``b``, across their shared border."""
    shared = shapely.intersection(index.geometry(a).boundary, index.geometry(b).boundary)
    parts = sorted(
        (g for g in getattr(shared, "geoms", [shared]) if g.geom_type == "LineString"), key=lambda g: -g.length
    )
    for part in parts:
        coords = list(part.coords)
        for (x0, y0), (x1, y1) in sorted(zip(coords, coords[1:]), key=lambda s: -math.dist(*s)):
            p0, p1 = to_lambert2008(x0, y0), to_lambert2008(x1, y1)
            if math.dist(p0, p1) < 4 * metres:
                continue
            mx, my = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
            dx, dy = p1[0] - p0[0], p1[1] - p0[1]
            n = math.hypot(dx, dy)
            left = from_lambert2008(mx - dy / n * metres, my + dx / n * metres)
            right = from_lambert2008(mx + dy / n * metres, my - dx / n * metres)
            got = (index.locate(*left), index.locate(*right))
            names = {m.nis for m in got if m}
            if names == {a, b}:
                return (left, right) if got[0].nis == a else (right, left)  # type: ignore[union-attr]
    raise AssertionError(f"no clean border segment between {a} and {b}")


@pytest.mark.parametrize(("a", "b"), [("34022", "34013"), ("34022", "34042"), ("34027", "34041"), ("34040", "34002")])
def test_points_just_inside_either_side_of_a_border_in_the_region(
    router: Router, index: MunicipalityIndex, a: str, b: str
) -> None:
    in_a, in_b = border_points(index, a, b, 15)
    owner = {m.nis: router.registry.municipality_authority(m.nis).id for m in index if m.nis in (a, b)}  # type: ignore[union-attr]
    assert router.route([cat("vraag-burgerzaken")], [in_a]).authority_id == owner[a]
    assert router.route([cat("vraag-burgerzaken")], [in_b]).authority_id == owner[b]


@pytest.mark.parametrize(("inside", "outside", "name"), [
    ("34027", "33029", "Wervik"),  # Menen | Wervik (arrondissement Ieper)
    ("34025", "36010", "Ledegem"),  # Lendelede | Ledegem (arrondissement Roeselare)
    ("34040", "37017", "Wielsbeke"),  # Waregem | Wielsbeke (arrondissement Tielt)
])
def test_points_just_inside_and_just_outside_the_region(
    router: Router, index: MunicipalityIndex, inside: str, outside: str, name: str
) -> None:
    in_region, out_region = border_points(index, inside, outside, 15)
    assert router.route([cat("wegdefect")], [in_region]).municipality_nis == inside
    with pytest.raises(OutsideRegion, match=rf"lies in {name} \({outside}\), outside the region served"):
        router.route([cat("wegdefect")], [out_region])


# Centres of municipalities that merged on 1 January 2025, and the post-2025 municipality they are in now.
MERGED_2025 = [
    ((3.2870, 50.9515), "37022", "Tielt"),  # Meulebeke
    ((3.3960, 51.0400), "37021", "Wingene"),  # Ruiselede
    ((3.7990, 51.0030), "44088", "Merelbeke-Melle"),  # Melle
    ((4.4860, 51.1930), "11002", "Antwerpen"),  # Borsbeek
    ((5.3900, 50.8590), "71072", "Hasselt"),  # Kortessem
    ((3.9650, 50.7440), "23106", "Pajottegem"),  # Galmaarden
]


@pytest.fixture(scope="module")
def flanders_router(index: MunicipalityIndex) -> Router:
    """The example rules over every Flemish municipality (as the benchmark uses them)."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    known = {a["nis"] for a in data["authorities"] if a.get("nis")}
    for m in index:
        if m.region == "Vlaanderen" and m.nis not in known:
            data["authorities"].append({
                "id": f"gemeente-{m.nis}", "kind": "gemeente", "nis": m.nis, "name": m.name,
                "identifier": f"https://w3id.org/meldingen-hub/id/organisatie/gemeente-{m.nis}",
            })
    data["version"], data["region"] = "flanders-test", "Vlaanderen"
    return Router(Registry.model_validate(data), index)


@pytest.mark.parametrize(("point", "nis", "name"), MERGED_2025)
def test_municipalities_merged_in_2025_route_to_the_new_municipality(
    router: Router, flanders_router: Router, point: tuple[float, float], nis: str, name: str
) -> None:
    d = flanders_router.route([cat("wegdefect")], [point])
    assert (d.municipality_nis, d.municipality_name, d.authority_id) == (nis, name, f"gemeente-{nis}")
    with pytest.raises(OutsideRegion, match=rf"lies in {name} \({nis}\)"):
        router.route([cat("wegdefect")], [point])


@pytest.mark.parametrize(("point", "match"), [
    ((4.3525, 50.8467), r"lies in Brussel \(21004\), outside the region served"),
    ((4.4150, 50.8330), r"lies in Etterbeek \(21005\)|lies in Sint-Pieters-Woluwe|lies in Oudergem|lies in Elsene"),
    ((3.0573, 50.6292), "lies in no Flemish or Brussels municipality"),  # Rijsel / Lille
    ((3.2200, 50.7300), "lies in no Flemish or Brussels municipality"),  # Moeskroen / Mouscron (Wallonia)
    ((6.1300, 49.6100), "lies in no Flemish or Brussels municipality"),  # Luxembourg
])
def test_brussels_and_outside_flanders(
    router: Router, flanders_router: Router, point: tuple[float, float], match: str
) -> None:
    for r in (router, flanders_router):
        with pytest.raises(OutsideRegion, match=match):
            r.route([cat("straatverlichting")], [point])


# --- hot reload --------------------------------------------------------------------------------


@pytest.fixture
def region(tmp_path: Path) -> Path:
    """A copy of the example region (registry + layers) that a test may edit."""
    shutil.copytree(DEFAULT_REGISTRY.parent, tmp_path / "region")
    return tmp_path / "region" / "registry.yaml"


def edit(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # atomic, as docs/ recommend
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a distinct mtime on coarse clocks


KORTRIJK = (3.2649, 50.8280)


def test_reload_swaps_in_a_new_version_and_owner(region: Path, index: MunicipalityIndex) -> None:
    rr = ReloadingRouter(region, index, interval_s=0)
    before = rr.route([cat("geluidsoverlast")], [KORTRIJK])
    assert (before.authority_id, before.ruleset_version) == ("kortrijk", "2026.2")

    def noise_to_police(d: dict[str, Any]) -> None:
        d["version"] = "2026.3"
        d["authorities"].append({
            "id": "politiezone-vlas", "kind": "intercommunale", "name": "Politiezone VLAS",
            "identifier": "https://w3id.org/meldingen-hub/id/organisatie/politiezone-vlas",
        })
        d["rules"].insert(0, {
            "id": "noise-police", "description": "Noise in Kortrijk goes to the police zone.",
            "categories": ["geluidsoverlast"], "municipalities": ["34022"], "authority": "politiezone-vlas",
        })

    with structlog.testing.capture_logs() as logs:
        edit(region, noise_to_police)
        after = rr.route([cat("geluidsoverlast")], [KORTRIJK])
    assert (after.authority_id, after.topic, after.rule_id, after.ruleset_version) == (
        "politiezone-vlas", "meldingen.authority.politiezone-vlas", "noise-police", "2026.3"
    )
    assert before.ruleset_version == "2026.2"  # a melding routed before keeps its version
    reloaded = [e for e in logs if e["event"] == "registry.reloaded"]
    assert reloaded and reloaded[0]["old_version"] == "2026.2" and reloaded[0]["new_version"] == "2026.3"
    assert reloaded[0]["authorities_added"] == ["politiezone-vlas"]
    assert rr.reloads == 1 and rr.version == "2026.3"


@pytest.mark.parametrize("broken", [
    "version: [unclosed",
    "version: '2026.9'\nregion: X\nauthorities: []\nrules: []\n",
    None,  # a rule naming an unknown authority
])
def test_a_broken_file_keeps_the_old_rules_and_is_logged(
    region: Path, index: MunicipalityIndex, broken: str | None
) -> None:
    rr = ReloadingRouter(region, index, interval_s=0)
    with structlog.testing.capture_logs() as logs:
        if broken is None:
            edit(region, lambda d: (d.update(version="2026.9"), d["rules"][0].update(authority="mirom")))
        else:
            region.write_text(broken, encoding="utf-8")
            os.utime(region, ns=(0, region.stat().st_mtime_ns + 1_000_000_000))
        d = rr.route([cat("wegdefect")], [KORTRIJK])
        rr.route([cat("wegdefect")], [KORTRIJK])  # asked again: logged once, not per melding
    assert (d.authority_id, d.ruleset_version) == ("kortrijk", "2026.2")
    failed = [e for e in logs if e["event"] == "registry.reload_failed"]
    assert len(failed) == 1 and failed[0]["kept_version"] == "2026.2" and failed[0]["log_level"] == "error"
    # fixed later: picked up
    edit(region, lambda d: None) if broken is None else shutil.copy(DEFAULT_REGISTRY, region)
    if broken is not None:
        edit(region, lambda d: d.update(version="2026.10"))
    else:
        edit(region, lambda d: (d.update(version="2026.10"), d["rules"][0].update(authority="de-vlaamse-waterweg")))
    assert rr.route([cat("wegdefect")], [KORTRIJK]).ruleset_version == "2026.10"


def test_changed_rules_under_the_same_version_are_refused(region: Path, index: MunicipalityIndex) -> None:
    rr = ReloadingRouter(region, index, interval_s=0)
    with structlog.testing.capture_logs() as logs:
        edit(region, lambda d: d["rules"].insert(0, {
            "id": "all-to-awv", "description": "x", "categories": "*", "municipalities": "*", "authority": "awv"}))
        d = rr.route([cat("wegdefect")], [KORTRIJK])
    assert (d.authority_id, d.ruleset_version) == ("kortrijk", "2026.2")
    assert any(e["event"] == "registry.reload_failed" and "bump 'version'" in e["reason"] for e in logs)


def test_a_comment_only_change_is_no_new_ruleset(region: Path, index: MunicipalityIndex) -> None:
    rr = ReloadingRouter(region, index, interval_s=0)
    region.write_text(region.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    with structlog.testing.capture_logs() as logs:
        assert rr.route([cat("wegdefect")], [KORTRIJK]).ruleset_version == "2026.2"
    assert not logs and rr.reloads == 0


def test_a_changed_layer_needs_its_new_sha256_and_a_new_version(region: Path, index: MunicipalityIndex) -> None:
    rr = ReloadingRouter(region, index, interval_s=0)
    point = (3.2649, 50.7900)  # Kortrijk, south of the ring, far from the sample roads
    assert rr.route([cat("wegdefect")], [point]).authority_id == "kortrijk"
    roads = region.parent / "layers" / "gewestwegen.geojson"
    data = json.loads(roads.read_text(encoding="utf-8"))
    data["features"].append({"type": "Feature", "properties": {"naam": "N-test", "sample": True},
                             "geometry": {"type": "LineString", "coordinates": [[3.2639, 50.7900], [3.2659, 50.7900]]}})
    roads.write_text(json.dumps(data), encoding="utf-8")
    with structlog.testing.capture_logs() as logs:
        assert rr.route([cat("wegdefect")], [point]).authority_id == "kortrijk"  # sha256 pin: refused
    assert any("has sha256" in e.get("reason", "") for e in logs)
    sha = file_sha256(roads)
    edit(region, lambda d: (d.update(version="2026.3"),
                            next(s for s in d["layers"] if s["id"] == "gewestwegen").update(sha256=sha)))
    d = rr.route([cat("wegdefect")], [point])
    assert (d.authority_id, d.rule_id, d.ruleset_version) == ("awv", "regional-road-awv", "2026.3")


def test_reload_checks_at_most_every_interval(region: Path, index: MunicipalityIndex) -> None:
    now = [100.0]
    rr = ReloadingRouter(region, index, interval_s=2.0, clock=lambda: now[0])
    edit(region, lambda d: d.update(version="2026.3"))
    now[0] += 1.0
    assert rr.route([cat("wegdefect")], [KORTRIJK]).ruleset_version == "2026.2"  # not yet checked
    now[0] += 1.5
    assert rr.route([cat("wegdefect")], [KORTRIJK]).ruleset_version == "2026.3"
    never = ReloadingRouter(region, index, interval_s=-1, clock=lambda: now[0])
    edit(region, lambda d: d.update(version="2026.4"))
    now[0] += 1000
    assert never.route([cat("wegdefect")], [KORTRIJK]).ruleset_version == "2026.3"
    assert never.reload_now() and never.version == "2026.4"


def test_decisions_under_concurrent_reloads_are_consistent(region: Path, index: MunicipalityIndex) -> None:
    rr = ReloadingRouter(region, index, interval_s=0)
    rule_of = {"2026.2": "default-municipality"}
    seen: list[tuple[str, str]] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            d = rr.route([cat("geluidsoverlast")], [KORTRIJK])
            seen.append((d.ruleset_version, d.rule_id))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(3, 8):
            version = f"2026.{n}"
            rule_id = f"noise-{n}"
            rule_of[version] = rule_id
            edit(region, lambda d, v=version, r=rule_id: (d.update(version=v), d["rules"].insert(0, {
                "id": r, "description": "x", "categories": ["geluidsoverlast"], "municipalities": "*",
                "authority": "{municipality}"})))
            rr.reload_now()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen and all(rule_of[v] == r for v, r in seen)  # never a rule of one version under another
    assert rr.version == "2026.7"


def test_build_pipeline_routes_with_a_reloading_router(region: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.service import build_pipeline
    from hub.settings import HubSettings

    monkeypatch.setenv("MELDHUB_REGISTRY_RELOAD_S", "0")
    pipeline, registry = build_pipeline(HubSettings(registry=region))
    assert isinstance(pipeline.router, ReloadingRouter) and registry.version == "2026.2"
    edit(region, lambda d: d.update(version="2026.3"))
    assert pipeline.router.route([cat("wegdefect")], [KORTRIJK]).ruleset_version == "2026.3"


def test_a_broken_registry_at_start_up_stops_the_hub(region: Path, index: MunicipalityIndex) -> None:
    (region.parent / "layers" / "fluvius-assets.geojson").unlink()
    with pytest.raises(RegistryError, match="fluvius-assets.*cannot read layer"):
        ReloadingRouter(region, index)


# --- coverage check ----------------------------------------------------------------------------


def test_the_example_region_has_no_gap_and_no_overlap(router: Router) -> None:
    report = check_coverage(router, spacing_m=500)
    assert report.ok and not report.gaps and not report.overlaps
    assert set(report.points_per_municipality) == router.registry.region_municipalities
    assert all(n > 0 for n in report.wins.values()), report.wins  # every rule decides somewhere
    spilled = {(s.layer_id, s.where) for s in report.spills}
    assert ("bevaarbare-waterwegen", "outside Flanders and Brussels") in spilled  # the Leie at the French border
    assert ("bevaarbare-waterwegen", "Wielsbeke (37017)") in spilled


def test_gaps_are_found_with_an_example_point(index: MunicipalityIndex) -> None:
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["id"] != "default-municipality"]
    data["rules"].append({"id": "menen-only", "description": "x", "categories": "*", "municipalities": ["34027"],
                          "authority": "{municipality}"})
    r = Router(Registry.model_validate(data), index)
    report = check_coverage(r, spacing_m=1000)
    assert not report.ok
    gaps = {(g.category, g.municipality_nis) for g in report.gaps}
    assert ("wegdefect", "34022") in gaps and ("wegdefect", "34027") not in gaps
    assert ("straatverlichting", "34022") not in gaps  # Fluvius everywhere
    g = next(g for g in report.gaps if (g.category, g.municipality_nis) == ("wegdefect", "34022"))
    assert index.locate(*g.example).nis == "34022"  # type: ignore[union-attr]
    with pytest.raises(Exception, match="no rule"):
        r.route([cat("wegdefect")], [g.example])


def test_an_overlap_hidden_by_the_order_is_reported_unless_declared(index: MunicipalityIndex) -> None:
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    rules = {r["id"]: r for r in data["rules"]}
    # put Imog's waste rule before the waterway rule: Imog's area rule now hides DVW's place claim
    order = ["waste-imog", "waterway-dvw", "regional-road-awv", "utility-assets-fluvius",
             "street-lighting-fluvius", "default-municipality"]
    data["rules"] = [rules[i] for i in order]
    report = check_coverage(Router(Registry.model_validate(data), index), spacing_m=1000)
    found = {(o.category, o.winner, o.hidden) for o in report.overlaps}
    assert found == {(c, "waste-imog", "waterway-dvw") for c in ("zwerfvuil", "sluikstort")}
    o = report.overlaps[0]
    assert (o.winner_owner, o.hidden_owner) == ("imog", "de-vlaamse-waterweg")
    assert Router(Registry.model_validate(data), index).route([cat(o.category)], [o.example]).authority_id == "imog"
    assert report.ok  # overlaps do not fail the check (gaps do); `route check --strict` fails on them
    rules["waste-imog"]["overrides"] = ["waterway-dvw"]  # "yes, Imog also on the banks": declared
    assert not check_coverage(Router(Registry.model_validate(data), index), spacing_m=1000).overlaps


def test_two_layer_rules_claiming_the_same_place(index: MunicipalityIndex) -> None:
    # litter on a regional road bridge over the Leie: AWV and DVW both claim it
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    road = next(r for r in data["rules"] if r["id"] == "regional-road-awv")
    road["categories"] = [*road["categories"], "zwerfvuil"]
    report = check_coverage(Router(Registry.model_validate(data), index), spacing_m=2000)
    (o,) = [o for o in report.overlaps if o.category == "zwerfvuil"]
    assert (o.winner, o.hidden) == ("waterway-dvw", "regional-road-awv")
    x, y = to_lambert2008(*o.example)
    r = Router(Registry.model_validate(data), index)
    assert r.layers["gewestwegen"].select(None).within(x, y, 25)
    assert r.layers["bevaarbare-waterwegen"].select(None).within(x, y, 40)
