"""The route stage on the real polygons and the example region's registry."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from hub.errors import ErrorClass, MissingLocation, NoOwner, OutsideRegion, UnknownCategory
from hub.geo import MunicipalityIndex
from hub.registry import CATEGORY_BASE, CATEGORY_SLUGS, DEFAULT_REGISTRY, Registry, RegistryError
from hub.routing import RouteDecision, Router

KORTRIJK = (3.2649, 50.8280)
HARELBEKE = (3.3093, 50.8538)
ZWEVEGEM = (3.3378, 50.8127)
WEVELGEM = (3.1797, 50.8096)
MENEN = (3.1229, 50.7966)
BRUSSEL = (4.3525, 50.8467)
GENT = (3.7215, 51.0545)
MEULEBEKE = (3.2870, 50.9515)  # merged into Tielt (37022) in 2025
LILLE = (3.06, 50.63)
MONS = (3.95, 50.45)


def cat(slug: str) -> str:
    return CATEGORY_BASE + slug


@pytest.fixture(scope="module")
def index() -> MunicipalityIndex:
    return MunicipalityIndex.load()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(DEFAULT_REGISTRY)


@pytest.fixture(scope="module")
def router(registry: Registry, index: MunicipalityIndex) -> Router:
    return Router(registry, index)


# --- owners -------------------------------------------------------------------------------------


def test_litter_in_kortrijk_goes_to_imog(router: Router, registry: Registry) -> None:
    d = router.route([cat("zwerfvuil")], [KORTRIJK])
    assert d == RouteDecision(
        authority_id="imog",
        authority_name="Imog",
        authority_iri=registry.authority("imog").identifier,
        topic="meldingen.authority.imog",
        municipality_nis="34022",
        municipality_name="Kortrijk",
        rule_id="waste-imog",
        ruleset_version=registry.version,
    )


def test_road_defect_in_kortrijk_goes_to_kortrijk(router: Router) -> None:
    d = router.route([cat("wegdefect")], [KORTRIJK])
    assert (d.authority_id, d.topic, d.rule_id) == ("kortrijk", "meldingen.authority.kortrijk", "default-municipality")
    assert d.authority_name == "Stad Kortrijk"


def test_street_lighting_in_wevelgem_goes_to_fluvius(router: Router) -> None:
    d = router.route([cat("straatverlichting")], [WEVELGEM])
    assert (d.authority_id, d.topic, d.municipality_nis) == ("fluvius", "meldingen.authority.fluvius", "34041")


@pytest.mark.parametrize(
    ("slug", "point", "owner"),
    [
        ("sluikstort", HARELBEKE, "imog"),
        ("volle-vuilnisbak", ZWEVEGEM, "imog"),
        ("zwerfvuil", MENEN, "menen"),  # Menen is not an Imog member (Mirom)
        # off the regional roads, traffic lights and roadworks are the municipality's (on them: test_layers.py)
        ("verkeerslicht-signalisatie", HARELBEKE, "harelbeke"),
        ("hinder-wegenwerken", MENEN, "menen"),
        ("riolering-wateroverlast", ZWEVEGEM, "zwevegem"),
        ("vraag-burgerzaken", WEVELGEM, "wevelgem"),
    ],
)
def test_owner_by_category_and_place(router: Router, slug: str, point: tuple[float, float], owner: str) -> None:
    assert router.route([cat(slug)], [point]).authority_id == owner


def test_first_category_decides(router: Router) -> None:
    assert router.route([cat("wegdefect"), cat("zwerfvuil")], [KORTRIJK]).authority_id == "kortrijk"
    assert router.route([cat("zwerfvuil"), cat("wegdefect")], [KORTRIJK]).authority_id == "imog"


def test_first_point_decides(router: Router) -> None:
    assert router.route([cat("wegdefect")], [MENEN, KORTRIJK, BRUSSEL]).authority_id == "menen"


def test_same_input_same_decision(router: Router) -> None:
    assert router.route([cat("wegdefect")], [HARELBEKE]) == router.route([cat("wegdefect")], [HARELBEKE])


def test_every_category_has_an_owner_in_every_region_municipality(
    router: Router, registry: Registry, index: MunicipalityIndex
) -> None:
    known = {a.id for a in registry.authorities}
    for nis in sorted(registry.region_municipalities):
        point = index.representative_point(nis)
        for slug in sorted(CATEGORY_SLUGS):
            d = router.route([cat(slug)], [point])
            assert d.municipality_nis == nis
            assert d.authority_id in known, (slug, nis)


# --- failures -------------------------------------------------------------------------------


def test_no_points_is_missing_location(router: Router) -> None:
    with pytest.raises(MissingLocation) as info:
        router.route([cat("wegdefect")], [])
    assert info.value.error_class is ErrorClass.MISSING_LOCATION


@pytest.mark.parametrize("point", [(math.nan, 50.8), (3.2, math.inf), (200.0, 50.8)])
def test_unusable_point_is_missing_location(router: Router, point: tuple[float, float]) -> None:
    with pytest.raises(MissingLocation, match="not a usable location"):
        router.route([cat("wegdefect")], [point])


@pytest.mark.parametrize("categories", [[], ["https://example.org/categorie/zwerfvuil"], [cat("kapotte-bank")]])
def test_unknown_or_missing_category(router: Router, categories: list[str]) -> None:
    with pytest.raises(UnknownCategory):
        router.route(categories, [KORTRIJK])


def test_point_in_brussels_is_outside_region_and_says_where(router: Router) -> None:
    with pytest.raises(OutsideRegion) as info:
        router.route([cat("wegdefect")], [BRUSSEL])
    assert info.value.reason == (
        "point (4.3525, 50.8467) lies in Brussel (21004), outside the region served (Zuid-West-Vlaanderen)"
    )
    assert info.value.details["municipality_nis"] == "21004"


@pytest.mark.parametrize(("point", "where"), [(GENT, "Gent (44021)"), (MEULEBEKE, "Tielt (37022)")])
def test_flemish_point_outside_the_region(router: Router, point: tuple[float, float], where: str) -> None:
    with pytest.raises(OutsideRegion, match=rf"lies in {where.replace('(', '[(]').replace(')', '[)]')}"):
        router.route([cat("wegdefect")], [point])


@pytest.mark.parametrize("point", [LILLE, MONS])
def test_point_in_france_or_wallonia_is_outside_region(router: Router, point: tuple[float, float]) -> None:
    with pytest.raises(OutsideRegion, match="lies in no Flemish or Brussels municipality") as info:
        router.route([cat("wegdefect")], [point])
    assert "\n" not in info.value.reason
    assert "swapped" not in info.value.reason


def test_swapped_lon_lat_is_pointed_out(router: Router) -> None:
    with pytest.raises(OutsideRegion, match="it would lie in Kortrijk: lon/lat swapped"):
        router.route([cat("wegdefect")], [(KORTRIJK[1], KORTRIJK[0])])


def test_no_matching_rule_is_no_owner(index: MunicipalityIndex) -> None:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["id"] != "default-municipality"]
    router = Router(Registry.model_validate(data), index)
    version = data["version"].replace(".", r"\.")
    with pytest.raises(NoOwner, match=rf"no rule of ruleset {version} matches category wegdefect in Kortrijk \(34022\)"):
        router.route([cat("wegdefect")], [KORTRIJK])
    assert router.route([cat("straatverlichting")], [KORTRIJK]).authority_id == "fluvius"


def test_router_refuses_a_registry_whose_municipalities_have_no_polygon(
    registry: Registry, index: MunicipalityIndex
) -> None:
    only_kortrijk = MunicipalityIndex([(index.get("34022"), index.geometry("34022"))])  # type: ignore[list-item]
    with pytest.raises(RegistryError, match="no polygon"):
        Router(registry, only_kortrijk)


# --- explain ----------------------------------------------------------------------------------


def test_explain_lists_the_rules_tried_and_why(router: Router) -> None:
    e = router.explain([cat("zwerfvuil"), cat("wegdefect")], [MENEN, KORTRIJK])
    assert [(t.rule_id, t.matched) for t in e.rules] == [
        ("waterway-dvw", False),
        ("regional-road-awv", False),
        ("utility-assets-fluvius", False),
        ("waste-imog", False),
        ("street-lighting-fluvius", False),
        ("default-municipality", True),
    ]
    assert e.rules[0].reason.startswith("nearest bevaarbare-waterwegen feature 'Leie' (hand-made sample layer) is ")
    assert e.rules[0].reason.endswith("m away, outside the 40 m buffer")
    assert e.rules[0].layer_feature == "Leie" and e.rules[0].distance_m is not None and e.rules[0].distance_m > 40
    assert "category zwerfvuil is not one of ['wegdefect', 'verkeerslicht-signalisatie', 'hinder-wegenwerken']" in e.rules[1].reason
    assert "Menen (34027) is not one of the rule's 9 municipalities" in e.rules[3].reason
    assert "category zwerfvuil is not one of ['straatverlichting']" in e.rules[4].reason
    assert e.rules[-1].reason.endswith("menen")
    assert e.decision == router.route([cat("zwerfvuil")], [MENEN])
    assert e.category == "zwerfvuil" and e.point == MENEN and e.municipality and e.municipality.nis == "34027"
    assert len(e.notes) == 2 and e.error_class is None


def test_explain_stops_at_the_first_match(router: Router) -> None:
    e = router.explain([cat("zwerfvuil")], [KORTRIJK])
    assert [t.rule_id for t in e.rules] == ["waterway-dvw", "regional-road-awv", "utility-assets-fluvius", "waste-imog"]
    assert [t.matched for t in e.rules] == [False, False, False, True]


def test_explain_all_rules_shows_what_the_order_hides(router: Router) -> None:
    e = router.explain([cat("zwerfvuil")], [KORTRIJK], all_rules=True)
    assert len(e.rules) == len(router.registry.rules)
    assert e.decision is not None and e.decision.rule_id == "waste-imog"
    after = e.rules[4:]
    assert all(not t.reached for t in after)
    default = e.rules[-1]
    assert default.matched and default.reason.startswith("not reached (waste-imog decided); would match:")


@pytest.mark.parametrize(
    ("categories", "points", "error_class"),
    [
        ([cat("wegdefect")], [], "missing-location"),
        ([cat("wegdefect")], [BRUSSEL], "outside-region"),
        ([], [KORTRIJK], "unknown-category"),
    ],
)
def test_explain_never_raises(
    router: Router, categories: list[str], points: list[tuple[float, float]], error_class: str
) -> None:
    e = router.explain(categories, points)
    assert e.decision is None and e.error_class == error_class and e.error_reason
    if points == [BRUSSEL]:
        assert e.municipality is not None and e.municipality.nis == "21004"
