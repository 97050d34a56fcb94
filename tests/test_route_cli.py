"""``meldhub route explain|check|asyncapi`` as a user runs them: the installed script, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from hub.registry import DEFAULT_REGISTRY

ROOT = Path(__file__).resolve().parents[1]
MELDHUB = str(Path(sys.executable).with_name("meldhub"))
TOPICS = ROOT / "docs" / "topics"


def meldhub(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MELDHUB, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def melding_at(tmp_path: Path, point: tuple[float, float], category: str = "wegdefect") -> Path:
    doc = json.loads((TOPICS / "meldingen.inbound.jsonld").read_text(encoding="utf-8"))
    doc["heeftBody"][0]["geometrie"]["wkt"] = f"POINT ({point[0]} {point[1]})"
    iri = "https://w3id.org/meldingen-hub/id/concept/categorie/" + category
    doc["meldingstype"] = doc["type"] = [iri]
    path = tmp_path / f"{category}-{point[0]}-{point[1]}.jsonld"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def registry_without(tmp_path: Path, rule_id: str, change: Any = None) -> Path:
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["id"] != rule_id]
    for spec in data["layers"]:
        spec["path"] = str(DEFAULT_REGISTRY.parent / spec["path"])
    if change:
        change(data)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- explain -------------------------------------------------------------------------------------


def test_explain_prints_the_decision_path_of_a_routed_melding() -> None:
    r = meldhub("route", "explain", str(TOPICS / "meldingen.authority.awv.jsonld"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "municipality: Kortrijk (34022)" in out and "category:     wegdefect" in out
    for rule in ("waterway-dvw", "regional-road-awv"):
        assert rule in out
    assert "gewestwegen 'R8 Kortrijkse ring' (hand-made sample layer)" in out
    assert "ROUTED → awv (Agentschap Wegen en Verkeer), topic meldingen.authority.awv, rule regional-road-awv" in out
    assert "default-municipality" not in out  # not tried: the first match decides


def test_explain_all_and_json(tmp_path: Path) -> None:
    r = meldhub("route", "explain", "--all", "--json", str(TOPICS / "meldingen.authority.imog.jsonld"))
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["decision"]["authority"] == "imog" and e["ruleset_version"]
    assert [t["rule"] for t in e["rules"]][-1] == "default-municipality"
    assert e["rules"][-1]["reached"] is False and e["rules"][-1]["matched"] is True
    assert e["shape_problem"] is None


def test_explain_refused_by_shows_the_next_candidate_then_triage() -> None:
    awv = str(TOPICS / "meldingen.authority.awv.jsonld")  # a road defect on the R8: AWV first
    r = meldhub("route", "explain", awv, "--refused-by", "awv")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ROUTED → kortrijk" in r.stdout and "rule default-municipality" in r.stdout
    e = json.loads(meldhub("route", "explain", "--json", awv, "--refused-by", "awv").stdout)
    trace = {t["rule"]: t for t in e["rules"]}
    assert trace["regional-road-awv"]["matched"] is False
    assert "awv refused this melding: passed over for the next candidate" in trace["regional-road-awv"]["reason"]
    assert e["decision"]["authority"] == "kortrijk"
    r = meldhub("route", "explain", awv, "--refused-by", "awv", "--refused-by", "kortrijk")
    assert r.returncode == 1
    assert "other than awv, kortrijk, who refused it" in r.stdout
    assert "meldingen.triage" in r.stdout


def test_explain_a_melding_off_the_regional_road(tmp_path: Path) -> None:
    r = meldhub("route", "explain", str(melding_at(tmp_path, (3.2649, 50.79), "hinder-wegenwerken")))
    assert r.returncode == 0, r.stdout
    assert "outside the 25 m buffer" in r.stdout
    assert "ROUTED → kortrijk" in r.stdout


def test_explain_an_unroutable_melding_exits_non_zero(tmp_path: Path) -> None:
    r = meldhub("route", "explain", str(melding_at(tmp_path, (4.3525, 50.8467))))  # Brussels
    assert r.returncode == 1
    assert "UNROUTABLE outside-region: point (4.3525, 50.8467) lies in Brussel (21004)" in r.stdout
    assert "municipality: Brussel (21004) (not served by this registry)" in r.stdout
    r = meldhub("route", "explain", "--registry", str(registry_without(tmp_path, "default-municipality")),
                str(melding_at(tmp_path, (3.2649, 50.79))))
    assert r.returncode == 1 and "UNROUTABLE no-owner" in r.stdout


def test_explain_an_invalid_melding_says_the_hub_would_dead_letter_it() -> None:
    r = meldhub("route", "explain", str(TOPICS / "meldingen.deadletter.jsonld"))
    assert r.returncode == 1
    assert "INVALID the hub dead-letters this melding before routing: shape-violation: titel" in r.stdout
    assert meldhub("route", "explain", "--no-validate", str(TOPICS / "meldingen.deadletter.jsonld")).returncode == 0


def test_explain_a_file_that_is_no_melding(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]", encoding="utf-8")
    r = meldhub("route", "explain", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "not a melding" in r.stdout
    r = meldhub("route", "explain", str(tmp_path / "missing.jsonld"))
    assert r.returncode == 2 and "cannot read" in r.stdout


# --- check ---------------------------------------------------------------------------------------


def test_check_the_example_region() -> None:
    r = meldhub("route", "check", "--spacing", "400")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "Coverage of Zuid-West-Vlaanderen" in out
    assert "no gaps" in out and "no overlaps" in out
    assert "hand-made sample layers: gewestwegen, bevaarbare-waterwegen, fluvius-assets" in out
    assert "Layer spill" in out and "Wielsbeke (37017)" in out
    assert "OK; 0 overlap(s)" in out


def test_check_fails_on_gaps_with_an_example_point(tmp_path: Path) -> None:
    r = meldhub("route", "check", "--spacing", "1000", "--registry", str(registry_without(tmp_path, "default-municipality")))
    assert r.returncode == 1
    assert "GAPS" in r.stdout and "wegdefect" in r.stdout and "Kortrijk (34022)" in r.stdout
    assert "FAIL:" in r.stdout


def test_check_strict_fails_on_overlaps(tmp_path: Path) -> None:
    def imog_first(d: dict[str, Any]) -> None:
        imog = next(x for x in d["rules"] if x["id"] == "waste-imog")
        d["rules"].remove(imog)
        d["rules"].insert(0, imog)

    path = registry_without(tmp_path, "nothing", imog_first)
    r = meldhub("route", "check", "--spacing", "1500", "--registry", str(path), "--json")
    assert r.returncode == 0
    report = json.loads(r.stdout)
    assert {(o["winner"], o["hidden"]) for o in report["overlaps"]} == {("waste-imog", "waterway-dvw")}
    r = meldhub("route", "check", "--spacing", "1500", "--strict", "--registry", str(path))
    assert r.returncode == 1 and "OVERLAPS" in r.stdout and "waste-imog → imog" in r.stdout


def test_check_with_a_broken_registry(tmp_path: Path) -> None:
    path = registry_without(tmp_path, "nothing", lambda d: d["layers"][0].update(path="/nonexistent.geojson"))
    r = meldhub("route", "check", "--registry", str(path))
    assert r.returncode == 2 and "registry error" in r.stderr and "cannot read layer" in r.stderr


# --- asyncapi ------------------------------------------------------------------------------------


def test_asyncapi_check_says_the_committed_contract_is_up_to_date() -> None:
    r = meldhub("route", "asyncapi", "--check")
    assert r.returncode == 0, r.stdout
    assert "up to date" in r.stdout


def test_asyncapi_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    r = meldhub("route", "asyncapi", "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8") == (ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
