"""The pydantic melding model: lossless round trips, router accessors, the Kafka envelope."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from rdflib.compare import isomorphic

from hub import categories
from hub.errors import NotJson, NotJsonLd, NotUtf8, ShapeViolation
from hub.jsonld import HUB_CONTEXT_IRI, to_graph
from hub.melding import (
    Envelope,
    Geometrie,
    Identificator,
    Melding,
    MeldingBody,
    Meldingstatus,
    Persoon,
    parse_gml_point,
    parse_wkt_point,
)
from hub.paths import ENV_VAR, examples_dir, schemas_dir
from hub.topics import JSONLD_CONTENT_TYPE, Header
from hub.validation import ShaclValidator

VALID = sorted((examples_dir() / "valid").glob("*.jsonld"))
CAT = categories.CONCEPT_NS


def _load(name: str | Path) -> dict:
    path = name if isinstance(name, Path) else examples_dir() / "valid" / name
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_round_trip_is_lossless(path: Path) -> None:
    doc = _load(path)
    again = Melding.from_jsonld(doc).to_jsonld()
    assert again == doc
    assert json.dumps(again, sort_keys=True) == json.dumps(doc, sort_keys=True)  # same JSON types too
    assert isomorphic(to_graph(again), to_graph(doc))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_example_has_an_id_and_a_known_category(path: Path) -> None:
    m = Melding.from_jsonld(_load(path))
    assert len(m.melding_id) == 36
    assert m.category_iris and all(categories.by_iri(iri) for iri in m.category_iris)


def test_unknown_terms_and_explicit_forms_survive() -> None:
    doc = _load("zwerfvuil-kortrijk.jsonld")
    doc["x-vendor"] = {"ticket": 4711, "tags": ["a", None, 1.5, True]}
    doc["heeftBody"][0]["x-extra"] = "kept"
    doc["titel"] = {"@value": "Zwerfvuil", "@language": "nl"}
    doc["indiener"] = {"@id": "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"}
    doc["samenvatting"] = None
    assert Melding.from_jsonld(doc).to_jsonld() == doc


def test_typed_access() -> None:
    m = Melding.from_jsonld(_load("zwerfvuil-kortrijk.jsonld"))
    assert isinstance(m.identificator, Identificator)
    assert isinstance(m.heeftBody[0], MeldingBody) and isinstance(m.heeftBody[0].geometrie, Geometrie)
    assert isinstance(m.heeftStatus[0], Meldingstatus)
    assert isinstance(m.melder, Persoon) and m.melder.naam == "An Vermeulen"
    assert m.addresses[0].gemeentenaam == "Kortrijk"
    assert m.statuses[0].statuswaarde == "https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/511"


def test_melding_id_and_categories() -> None:
    m = Melding.from_jsonld(_load("riolering-wegdefect-waregem-crs84.jsonld"))
    assert m.melding_id == "5abc2bca-68a4-46fa-a776-6067e4648e04"
    assert m.category_iris == [CAT + "riolering-wateroverlast", CAT + "wegdefect"]
    explicit = Melding.from_jsonld(_load("graffiti-vandalisme-deerlijk-expliciet.jsonld"))
    assert explicit.category_iris == [CAT + "graffiti-vandalisme"]  # {"@id"} form and plain form de-duplicated


def test_melding_id_missing_raises_a_hub_error() -> None:
    doc = _load("zwerfvuil-kortrijk.jsonld")
    del doc["identificator"]
    with pytest.raises(ShapeViolation):
        _ = Melding.from_jsonld(doc).melding_id


@pytest.mark.parametrize(
    ("name", "points"),
    [
        ("zwerfvuil-kortrijk.jsonld", [(3.2649, 50.8303)]),
        ("wegdefect-zwevegem-gml.jsonld", [(3.339, 50.8125)]),  # GML in EPSG:4326 (lat lon)
        ("dood-dier-harelbeke-epsg4326.jsonld", [(3.3, 50.86)]),  # WKT in EPSG:4326 (lat lon)
        ("riolering-wegdefect-waregem-crs84.jsonld", [(3.427, 50.888)]),
        ("straatverlichting-wevelgem-fotos.jsonld", [(3.184, 50.81)]),  # photo bodies have no geometry
        ("vraag-burgerzaken-kortrijk-zonder-geometrie.jsonld", []),
    ],
)
def test_points_are_lon_lat(name: str, points: list[tuple[float, float]]) -> None:
    assert Melding.from_jsonld(_load(name)).points() == points


@pytest.mark.parametrize(
    ("wkt", "expected"),
    [
        ("POINT (3.2649 50.8303)", (3.2649, 50.8303)),
        ("point(3.2649 50.8303)", (3.2649, 50.8303)),
        ("POINT Z (3.1 50.2 12)", (3.1, 50.2)),
        ("<http://www.opengis.net/def/crs/OGC/1.3/CRS84> POINT (3.1 50.2)", (3.1, 50.2)),
        ("<http://www.opengis.net/def/crs/EPSG/0/4326> POINT (50.2 3.1)", (3.1, 50.2)),
        ("<http://www.opengis.net/def/crs/EPSG/0/31370> POINT (72000 170000)", None),  # Lambert 72: skipped
        ("POINT (3.1, 50.2)", None),
        ("LINESTRING (3 50, 3.1 50.1)", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_wkt_point(wkt: str | None, expected: tuple[float, float] | None) -> None:
    assert parse_wkt_point(wkt) == expected


@pytest.mark.parametrize(
    ("gml", "expected"),
    [
        ("<gml:Point><gml:pos>3.1 50.2</gml:pos></gml:Point>", (3.1, 50.2)),
        ('<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>50.2 3.1</gml:pos></gml:Point>', (3.1, 50.2)),
        ('<Point srsName="http://www.opengis.net/def/crs/OGC/1.3/CRS84"><pos>3.1 50.2</pos></Point>', (3.1, 50.2)),
        ('<gml:Point srsName="EPSG:31370"><gml:pos>72000 170000</gml:pos></gml:Point>', None),
        ("<gml:LineString><gml:posList>3 50 3.1 50.1</gml:posList></gml:LineString>", None),
        ("<gml:Point><gml:pos>x y</gml:pos></gml:Point>", None),
    ],
)
def test_parse_gml_point(gml: str, expected: tuple[float, float] | None) -> None:
    assert parse_gml_point(gml) == expected


def test_with_behandelaar_sets_it_and_keeps_the_rest() -> None:
    doc = _load("sluikstort-harelbeke-anoniem.jsonld")
    original = copy.deepcopy(doc)
    m = Melding.from_jsonld(doc)
    routed = m.with_behandelaar("https://w3id.org/meldingen-hub/id/organisatie/nis-34013")
    assert routed["behandelaar"] == "https://w3id.org/meldingen-hub/id/organisatie/nis-34013"
    assert {k: v for k, v in routed.items() if k != "behandelaar"} == original
    assert doc == original and m.behandelaar is None  # nothing mutated
    assert routed == {**m.to_jsonld(), "behandelaar": routed["behandelaar"]}  # what the model says
    assert ShaclValidator().validate(routed).conforms


def test_from_jsonld_rejects_non_objects_and_wrong_types() -> None:
    with pytest.raises(NotJsonLd):
        Melding.from_jsonld(["not", "an", "object"])
    doc = _load("zwerfvuil-kortrijk.jsonld")
    doc["heeftStatus"] = [42]
    with pytest.raises(ShapeViolation):
        Melding.from_jsonld(doc)


# -- envelope ----------------------------------------------------------------------------------
def test_envelope_round_trip_through_kafka_bytes() -> None:
    doc = _load("geluidsoverlast-menen-statushistoriek.jsonld")
    envelope = Envelope.for_melding(Melding.from_jsonld(doc), source="meldpunt-menen")
    key, value, headers = envelope.to_kafka()
    assert key == b"cdd5ff01-eee6-4c79-a125-4bb7cad40625"
    assert json.loads(value) == doc
    assert dict(headers) == {
        Header.MELDING_ID: key,
        Header.CONTENT_TYPE: JSONLD_CONTENT_TYPE.encode(),
        Header.SCHEMA: HUB_CONTEXT_IRI.encode(),
        Header.SOURCE: b"meldpunt-menen",
    }
    back = Envelope.from_kafka(key, value, headers)
    assert back == envelope
    assert back.value.to_jsonld() == doc


def test_envelope_key_defaults_to_melding_id() -> None:
    doc = _load("zwerfvuil-kortrijk.jsonld")
    raw = json.dumps(doc).encode()
    envelope = Envelope.from_kafka(None, raw, [("x", None)])
    assert envelope.key == "3f6c2a1e-8d4b-4c7a-9e21-5b0d7f6a1c42"
    assert envelope.headers == {"x": ""}


@pytest.mark.parametrize(
    ("raw", "error"),
    [(b"\xff\xfe{", NotUtf8), (b'{"@context": ', NotJson), (b"[1, 2]", NotJsonLd)],
)
def test_envelope_from_bad_bytes(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        Envelope.from_kafka(b"k", raw, [])


def test_envelope_extra_headers() -> None:
    m = Melding.from_jsonld(_load("zwerfvuil-kortrijk.jsonld"))
    envelope = Envelope.for_melding(m, **{Header.AUTHORITY: "kortrijk"})
    assert envelope.headers[Header.AUTHORITY] == "kortrijk"
    assert Header.SOURCE not in envelope.headers


# -- categories and paths ----------------------------------------------------------------------
def test_categories_lookup() -> None:
    cat = categories.by_slug("zwerfvuil")
    assert cat is not None and cat.label == "Zwerfvuil"
    assert categories.by_iri(CAT + "zwerfvuil") is cat
    assert categories.by_slug("bestaat-niet") is None
    assert categories.iri_for("wegdefect") == CAT + "wegdefect"
    with pytest.raises(KeyError):
        categories.iri_for("bestaat-niet")
    assert "afval/prullenbak-is-vol" in categories.by_slug("volle-vuilnisbak").signalen_slugs()  # type: ignore[union-attr]


def test_schemas_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = schemas_dir()
    assert (default / "shapes" / "melding-shapes.ttl").is_file()
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert schemas_dir() == tmp_path.resolve()
    monkeypatch.delenv(ENV_VAR)
    assert schemas_dir() == default
