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
    base["rules"][0]["categories"] = ["https://w3id.org/meldingen-hub/id/concept/categorie/zwerfvuil"]
    assert Registry.load(write(tmp_path, base)).rules[0].categories == ("zwerfvuil",)


# --- errors at load --------------------------------------------------------------------------


def test_rule_with_unknown_authority(tmp_path: Path, base: dict[str, Any]) -> None:
    base["rules"][0]["authority"] = "mirom"
    msg = load_error(tmp_path, base)
    assert "waste-imog" in msg and "unknown authority 'mirom'" in msg


def test_duplicate_authority_id(tmp_path: Path, base: dict[str, Any]) -> None:
    base["authorities"].append(copy.deepcopy(base["authorities"][-1]))
    assert "duplicate authority id(s): ['fluvius']" in load_error(tmp_path, base)


def test_duplicate_rule_id(tmp_path: Path, base: dict[str, Any]) -> None:
    base["rules"][1]["id"] = base["rules"][0]["id"]
    assert "duplicate rule id(s): ['waste-imog']" in load_error(tmp_path, base)


def test_duplicate_nis(tmp_path: Path, base: dict[str, Any]) -> None:
    base["authorities"][1]["nis"] = base["authorities"][0]["nis"]
    assert "duplicate NIS code(s): ['34002']" in load_error(tmp_path, base)


@pytest.mark.parametrize("bad_id", ["Stad Kortrijk", "kortrijk_stad", "-kortrijk", "x" * 64, "{municipality}"])
def test_authority_id_must_be_a_valid_topic_suffix(tmp_path: Path, base: dict[str, Any], bad_id: str) -> None:
    base["authorities"][0]["id"] = bad_id
    assert "invalid authority id" in load_error(tmp_path, base)


def test_rule_naming_a_municipality_outside_the_region(tmp_path: Path, base: dict[str, Any]) -> None:
    base["rules"][0]["municipalities"] = ["34022", "44021"]
    msg = load_error(tmp_path, base)
    assert "rule 'waste-imog'" in msg and "['44021'] are not gemeente authorities" in msg


def test_rule_naming_a_pre_2025_code_says_what_it_became(tmp_path: Path, base: dict[str, Any]) -> None:
    base["rules"][0]["municipalities"] = ["37007"]
    assert "37007 became 37022 on 1 January 2025" in load_error(tmp_path, base)


def test_gemeente_with_a_pre_2025_code_says_what_it_became(tmp_path: Path, base: dict[str, Any]) -> None:
    base["authorities"].append({"id": "tielt", "kind": "gemeente", "nis": "37015", "name": "Stad Tielt",
                                "identifier": "https://w3id.org/meldingen-hub/id/organisatie/tielt"})
    msg = load_error(tmp_path, base)
    assert "37015 is not a post-2025 NIS code" in msg and "37015 became 37022" in msg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["rules"][0].update(categories=["zwerfvuil", "sluikstorten"]), "unknown category ['sluikstorten']"),
        (lambda d: d["rules"][0].update(categories=[]), "categories is empty"),
        (lambda d: d["rules"][0].update(municipalities=["3402"]), "NIS codes must be 5 digits"),
        (lambda d: d["rules"][0].update(municipalities=["34022", "34022"]), "more than once"),
        (lambda d: d["rules"][0].update(id="Waste Imog"), "rule id 'Waste Imog'"),
        (lambda d: d["authorities"][0].pop("nis"), "is a gemeente but has no 'nis'"),
        (lambda d: d["authorities"][-1].update(nis="34022"), "only a gemeente has a 'nis'"),
        (lambda d: d["authorities"][0].update(kind="provincie"), "authorities.[anzegem].kind"),
        (lambda d: d["authorities"][0].update(identifier="OVO000098"), "not an absolute http(s) IRI"),
        (lambda d: d.update(version=2026.1), "must be a quoted string"),
        (lambda d: d.update(rules=[]), "no rules"),
        (lambda d: d.update(authoritys=[]), "authoritys: Extra inputs are not permitted"),
        (lambda d: d["rules"][0].update(authorty="imog"), "rules.[waste-imog].authorty"),
    ],
)
def test_inconsistent_registry_is_refused_with_a_clear_reason(
    tmp_path: Path, base: dict[str, Any], mutate: Any, expected: str
) -> None:
    mutate(base)
    msg = load_error(tmp_path, base)
    assert expected in msg
    assert str(tmp_path / "registry.yaml") in msg  # always names the file


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read registry"):
        Registry.load(tmp_path / "missing.yaml")
    assert "not valid YAML" in load_error(tmp_path, "version: [unclosed")
    assert "expected a mapping" in load_error(tmp_path, "- just\n- a list\n")


def test_category_scheme_has_the_fourteen_hub_categories() -> None:
    assert len(CATEGORY_SLUGS) == 14
