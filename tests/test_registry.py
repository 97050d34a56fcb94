"""The authority registry: the example region's content, and every load-time check."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.geo import MunicipalityIndex
from hub.registry import (
    CATEGORY_SLUGS,
    DEFAULT_REGISTRY,
    REGISTRY_ENV,
    Registry,
    RegistryError,
    default_registry_path,
)
from hub.topics import authority_topic


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(DEFAULT_REGISTRY)


@pytest.fixture
def base() -> dict[str, Any]:
    """The example registry as plain data, to break one thing at a time."""
    return yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))


def imog(data: dict[str, Any]) -> dict[str, Any]:
    """The example's waste rule (the tests below break it one way at a time)."""
    return next(r for r in data["rules"] if r["id"] == "waste-imog")


def write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict[str, Any] | str) -> str:
    with pytest.raises(RegistryError) as info:
        Registry.load(write(tmp_path, data))
    return str(info.value)


# --- the example region --------------------------------------------------------------------


def test_example_region_is_arrondissement_kortrijk_post_2025(registry: Registry) -> None:
    index = MunicipalityIndex.load()
    arrondissement_kortrijk = {m.nis for m in index if m.nis.startswith("34")}
    assert len(arrondissement_kortrijk) == 12
    assert registry.region_municipalities == arrondissement_kortrijk
    assert registry.region == "Zuid-West-Vlaanderen"
    for nis in registry.region_municipalities:
        authority = registry.municipality_authority(nis)
        assert authority is not None and authority.kind == "gemeente"
        assert index.get(nis).name.lower().replace(" ", "-") == authority.id  # type: ignore[union-attr]


def test_example_registry_authorities(registry: Registry) -> None:
    assert isinstance(registry.version, str) and registry.version
    kinds = {a.id: a.kind for a in registry.authorities}
    assert kinds["imog"] == "intercommunale"
    assert kinds["awv"] == "gewestelijk-agentschap"
    assert kinds["fluvius"] == "nutsbedrijf"
    assert registry.authority("awv").identifier == "https://data.vlaanderen.be/id/organisatie/OVO000098"
    assert registry.authority("fluvius").identifier.endswith("/0477445084")  # KBO 0477.445.084
    assert not registry.authority("awv").hub_local and registry.authority("imog").hub_local
    for a in registry.authorities:
        assert a.topic == authority_topic(a.id)


def test_default_path_is_the_example_region_unless_env_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, base: dict[str, Any]
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    assert default_registry_path() == DEFAULT_REGISTRY and DEFAULT_REGISTRY.is_file()
    base["version"] = "from-env"
    monkeypatch.setenv(REGISTRY_ENV, str(write(tmp_path, base)))
    assert Registry.load().version == "from-env"


def test_unquoted_nis_codes_are_accepted(tmp_path: Path, base: dict[str, Any]) -> None:
    text = write(tmp_path, base).read_text().replace("'34022'", "34022")
    assert "nis: 34022" in text
    assert "34022" in Registry.load(write(tmp_path, text)).region_municipalities


def test_category_iris_are_accepted_as_well_as_slugs(tmp_path: Path, base: dict[str, Any]) -> None:
    imog(base)["categories"] = ["https://w3id.org/meldingen-hub/id/concept/categorie/zwerfvuil"]
    loaded = Registry.load(write(tmp_path, base))
    assert next(r for r in loaded.rules if r.id == "waste-imog").categories == ("zwerfvuil",)


# --- errors at load --------------------------------------------------------------------------


def test_rule_with_unknown_authority(tmp_path: Path, base: dict[str, Any]) -> None:
    imog(base)["authority"] = "mirom"
    msg = load_error(tmp_path, base)
    assert "waste-imog" in msg and "unknown authority 'mirom'" in msg


def test_duplicate_authority_id(tmp_path: Path, base: dict[str, Any]) -> None:
    base["authorities"].append(copy.deepcopy(base["authorities"][-1]))
    assert "duplicate authority id(s): ['fluvius']" in load_error(tmp_path, base)


def test_duplicate_rule_id(tmp_path: Path, base: dict[str, Any]) -> None:
    base["rules"][-1]["id"] = "waste-imog"
    assert "duplicate rule id(s): ['waste-imog']" in load_error(tmp_path, base)


def test_duplicate_nis(tmp_path: Path, base: dict[str, Any]) -> None:
    base["authorities"][1]["nis"] = base["authorities"][0]["nis"]
    assert "duplicate NIS code(s): ['34002']" in load_error(tmp_path, base)


@pytest.mark.parametrize("bad_id", ["Stad Kortrijk", "kortrijk_stad", "-kortrijk", "x" * 64, "{municipality}"])
def test_authority_id_must_be_a_valid_topic_suffix(tmp_path: Path, base: dict[str, Any], bad_id: str) -> None:
    base["authorities"][0]["id"] = bad_id
    assert "invalid authority id" in load_error(tmp_path, base)


def test_rule_naming_a_municipality_outside_the_region(tmp_path: Path, base: dict[str, Any]) -> None:
    imog(base)["municipalities"] = ["34022", "44021"]
    msg = load_error(tmp_path, base)
    assert "rule 'waste-imog'" in msg and "['44021'] are not gemeente authorities" in msg


def test_rule_naming_a_pre_2025_code_says_what_it_became(tmp_path: Path, base: dict[str, Any]) -> None:
    imog(base)["municipalities"] = ["37007"]
    assert "37007 became 37022 on 1 January 2025" in load_error(tmp_path, base)


def test_gemeente_with_a_pre_2025_code_says_what_it_became(tmp_path: Path, base: dict[str, Any]) -> None:
    base["authorities"].append({"id": "tielt", "kind": "gemeente", "nis": "37015", "name": "Stad Tielt",
                                "identifier": "https://w3id.org/meldingen-hub/id/organisatie/tielt"})
    msg = load_error(tmp_path, base)
    assert "37015 is not a post-2025 NIS code" in msg and "37015 became 37022" in msg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: imog(d).update(categories=["zwerfvuil", "sluikstorten"]), "unknown category ['sluikstorten']"),
        (lambda d: imog(d).update(categories=[]), "categories is empty"),
        (lambda d: imog(d).update(municipalities=["3402"]), "NIS codes must be 5 digits"),
        (lambda d: imog(d).update(municipalities=["34022", "34022"]), "more than once"),
        (lambda d: imog(d).update(id="Waste Imog"), "rule id 'Waste Imog'"),
        (lambda d: d["authorities"][0].pop("nis"), "is a gemeente but has no 'nis'"),
        (lambda d: d["authorities"][-1].update(nis="34022"), "only a gemeente has a 'nis'"),
        (lambda d: d["authorities"][0].update(kind="provincie"), "authorities.[anzegem].kind"),
        (lambda d: d["authorities"][0].update(identifier="OVO000098"), "not an absolute http(s) IRI"),
        (lambda d: d.update(version=2026.1), "must be a quoted string"),
        (lambda d: d.update(rules=[]), "no rules"),
        (lambda d: d.update(authoritys=[]), "authoritys: Extra inputs are not permitted"),
        (lambda d: imog(d).update(authorty="imog"), "rules.[waste-imog].authorty"),
    ],
)
def test_inconsistent_registry_is_refused_with_a_clear_reason(
    tmp_path: Path, base: dict[str, Any], mutate: Any, expected: str
) -> None:
    mutate(base)
    msg = load_error(tmp_path, base)
    assert expected in msg
    assert str(tmp_path / "registry.yaml") in msg  # always names the file


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: imog(d).update(layer={"id": "spoorwegen", "buffer_m": 10}), "unknown layer 'spoorwegen'"),
        (lambda d: imog(d).update(layer={"id": "gewestwegen", "buffer_m": -1}), "greater than or equal to 0"),
        (lambda d: imog(d).update(layer={"id": "gewestwegen", "buffer_m": 5000}), "less than or equal to 1000"),
        (lambda d: imog(d).update(layer={"id": "gewestwegen"}), "buffer_m: Field required"),
        (lambda d: imog(d).update(overrides=["waterway-dvw"]), "overrides 'waterway-dvw', which is not a later rule"),
        (lambda d: imog(d).update(overrides=["nope"]), "overrides 'nope'"),
        (lambda d: d["layers"].append(dict(d["layers"][0])), "duplicate layer id(s): ['gewestwegen']"),
        (lambda d: d["layers"][0].update(sha256="abc"), "is not 64 lower-case hex digits"),
        (lambda d: d["layers"][0].update(id="Gewest Wegen"), "layer id 'Gewest Wegen'"),
        (lambda d: d["layers"][0].pop("description"), "layers.[gewestwegen].description: Field required"),
    ],
)
def test_layer_conditions_are_checked_at_load(tmp_path: Path, base: dict[str, Any], mutate: Any, expected: str) -> None:
    mutate(base)
    assert expected in load_error(tmp_path, base)


def test_example_registry_layers_are_hand_made_samples_and_pinned(registry: Registry) -> None:
    assert {spec.id for spec in registry.layers} == {"gewestwegen", "bevaarbare-waterwegen", "fluvius-assets"}
    for spec in registry.layers:
        assert spec.sample, f"{spec.id}: the shipped layers are hand-made samples and must say so"
        assert spec.sha256 and registry.layer_path(spec).is_file()
        assert registry.layer_path(spec).parent == DEFAULT_REGISTRY.parent / "layers"
    dvw = registry.authority("de-vlaamse-waterweg")
    assert dvw.kind == "gewestelijk-agentschap" and dvw.hub_local  # no OVO code found: hub-local, unverified
    road = next(r for r in registry.rules if r.id == "regional-road-awv")
    assert road.layer is not None and road.layer.id == "gewestwegen" and road.layer.buffer_m == 25
    assert set(road.categories) == {"wegdefect", "verkeerslicht-signalisatie", "hinder-wegenwerken"}
    assert not any(r.authority == "awv" and r.layer is None for r in registry.rules), "AWV only on regional roads"


def test_layer_paths_are_relative_to_the_registry_file(tmp_path: Path, base: dict[str, Any]) -> None:
    loaded = Registry.load(write(tmp_path, base))
    assert loaded.source == (tmp_path / "registry.yaml").resolve()
    assert loaded.layer_path("gewestwegen") == tmp_path / "layers" / "gewestwegen.geojson"
    base["layers"][0]["path"] = "/srv/layers/wegen.geojson"
    assert Registry.load(write(tmp_path, base)).layer_path("gewestwegen") == Path("/srv/layers/wegen.geojson")
    # built from data (no file): relative to the example region
    assert Registry.model_validate(base).layer_path("fluvius-assets") == DEFAULT_REGISTRY.parent / "layers" / "fluvius-assets.geojson"


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read registry"):
        Registry.load(tmp_path / "missing.yaml")
    assert "not valid YAML" in load_error(tmp_path, "version: [unclosed")
    assert "expected a mapping" in load_error(tmp_path, "- just\n- a list\n")


def test_category_scheme_has_the_fourteen_hub_categories() -> None:
    assert len(CATEGORY_SLUGS) == 14
