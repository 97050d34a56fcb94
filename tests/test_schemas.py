"""The hub's schemas: examples against shapes, shapes against codelists, context and loader."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.compare import isomorphic
from rdflib.namespace import SKOS

from hub import categories
from hub.errors import HubError, NotJson, NotJsonLd, ShapeViolation, UnknownCategory
from hub.jsonld import (
    AP_CONTEXT_IRI,
    HUB_CONTEXT_IRI,
    KNOWN_CONTEXTS,
    decode_json,
    load_context,
    to_graph,
)
from hub.paths import codelists_dir, context_dir, examples_dir, schemas_dir, shapes_file
from hub.validation import REDACTED, SH, ShaclValidator

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # only for provenance checks; skipped when absent
VALID = sorted((examples_dir() / "valid").glob("*.jsonld"))
INVALID = sorted((examples_dir() / "invalid").glob("*.jsonld"))

# invalid example -> expected {(field, component)} or the hub error class raised before SHACL
EXPECTED: dict[str, set[tuple[str, str]] | type[HubError]] = {
    "missing-titel": {("titel", "MinCountConstraintComponent")},
    "empty-titel": {("titel", "MinLengthConstraintComponent")},
    "titel-not-dutch": {("titel", "LanguageInConstraintComponent")},
    "unknown-category": {("meldingstype", "InConstraintComponent"), ("type", "InConstraintComponent")},
    "category-mismatch": {("meldingstype", "EqualsConstraintComponent")},
    "missing-category-type": {("type", "MinCountConstraintComponent"), ("meldingstype", "EqualsConstraintComponent")},
    "bad-status-value": {("statuswaarde", "InConstraintComponent")},
    "bad-statusdatum": {("statusdatum", "DatatypeConstraintComponent")},
    "statusdatum-without-timezone": {("statusdatum", "PatternConstraintComponent")},
    "status-without-beschrijving": {("beschrijving", "MinCountConstraintComponent")},
    "geometry-without-wkt-or-gml": {("wkt|gml", "MinCountConstraintComponent")},
    "bad-wkt": {("wkt", "PatternConstraintComponent")},
    "missing-identificator": {("identificator", "MinCountConstraintComponent")},
    "identificator-not-uuid": {("notatie", "PatternConstraintComponent")},
    "missing-indiener": {("indiener", "MinCountConstraintComponent")},
    "two-behandelaars": {("behandelaar", "MaxCountConstraintComponent")},
    "bad-email": {("email", "PatternConstraintComponent")},
    "bad-postcode": {("postcode", "PatternConstraintComponent")},
    "bijlage-not-a-url": {("bijlage", "PatternConstraintComponent")},
    "body-without-type": {("heeftBody", "ClassConstraintComponent")},
    "not-json": NotJson,
    "not-jsonld-no-context": NotJsonLd,
    "not-jsonld-unknown-context": NotJsonLd,
    "not-jsonld-no-melding": NotJsonLd,
    "not-jsonld-relative-iri": NotJsonLd,
}

CATEGORY_SLUGS = {
    "zwerfvuil", "sluikstort", "volle-vuilnisbak", "wegdefect", "voetpad-fietspad-defect", "straatverlichting",
    "verkeerslicht-signalisatie", "hinder-wegenwerken", "riolering-wateroverlast", "groenonderhoud-bomen",
    "dierenoverlast-dood-dier", "graffiti-vandalisme", "geluidsoverlast", "vraag-burgerzaken",
}  # fmt: skip


@pytest.fixture(scope="module")
def validator() -> ShaclValidator:
    return ShaclValidator()


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# -- examples ----------------------------------------------------------------------------------
def test_enough_valid_examples() -> None:
    assert len(VALID) >= 7  # the canonical one + at least 6 more
    towns = {"Kortrijk", "Harelbeke", "Zwevegem", "Wevelgem", "Deerlijk", "Menen", "Waregem"}
    found = {t for p in VALID for t in towns if t.lower() in p.name}
    assert len(found) >= 6


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_conforms(validator: ShaclValidator, path: Path) -> None:
    result = validator.validate(_load(path))
    assert result.conforms, result.as_text()
    assert result.violations == []


def test_valid_examples_cover_the_special_cases() -> None:
    docs = {p.name: _load(p) for p in VALID}
    assert any("melder" not in d for d in docs.values()), "an anonymous melding"
    geometries = [b.get("geometrie", {}) for d in docs.values() for b in d.get("heeftBody", [])]
    assert any("gml" in g and "wkt" not in g for g in geometries), "a GML-only geometry"
    assert any(sum("bijlage" in b for b in d.get("heeftBody", [])) >= 2 for d in docs.values()), "several photos"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_fails_for_its_reason(validator: ShaclValidator, path: Path) -> None:
    expected = EXPECTED[path.stem]
    if isinstance(expected, type):
        with pytest.raises(expected) as info:
            validator.validate(decode_json(path.read_bytes()))
        assert "\n" not in info.value.reason
        return
    result = validator.validate(_load(path))
    assert not result.conforms
    assert {(v.field, v.component) for v in result.violations} == expected, result.as_text()
    assert result.is_unknown_category == (path.stem == "unknown-category")


def test_every_invalid_example_is_expected_and_documented() -> None:
    names = {p.stem for p in INVALID}
    assert names == set(EXPECTED)
    readme = (examples_dir() / "invalid" / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert f"`{name}.jsonld`" in readme, f"{name} missing from invalid/README.md"


def test_every_term_of_the_examples_is_defined_in_the_context() -> None:
    """A term missing from the context is silently dropped by JSON-LD: catch it here."""
    ctx = load_context(HUB_CONTEXT_IRI)

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            own = {k for k in node if not k.startswith("@")}
            return own.union(*(keys(v) for k, v in node.items() if k != "@context"))
        if isinstance(node, list):
            return set().union(*(keys(v) for v in node)) if node else set()
        return set()

    used = set().union(*(keys(_load(p)) for p in VALID))
    assert used <= set(ctx), used - set(ctx)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_rdflib_and_oxigraph_parse_the_same_graph(path: Path) -> None:
    doc = _load(path)
    assert isomorphic(to_graph(doc, parser="oxigraph"), to_graph(doc, parser="rdflib"))


# -- shapes and codelists ----------------------------------------------------------------------
def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_codelists", schemas_dir() / "tools" / "sync_codelists.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _concepts(file: str, scheme: str) -> set[str]:
    g = Graph().parse(codelists_dir() / file)
    return {str(c) for c in g.subjects(SKOS.inScheme, URIRef(scheme))}


def _sh_in(path: URIRef) -> list[set[str]]:
    g = Graph().parse(shapes_file())
    return [{str(x) for x in Collection(g, lst)} for s in g.subjects(SH.path, path) for lst in g.objects(s, SH["in"])]


def test_shapes_sh_in_lists_agree_with_codelists() -> None:
    categories_ = _concepts("categorieen.ttl", categories.SCHEME_IRI)
    statuses = _concepts("MeldingStatuswaarde.ttl", "https://data.vlaanderen.be/id/conceptscheme/MeldingStatuswaarde")
    assert _sh_in(URIRef("http://www.w3.org/ns/oa#motivatedBy")) == [categories_]
    assert _sh_in(URIRef("http://purl.org/dc/terms/type")) == [categories_]
    assert _sh_in(URIRef("https://data.vlaanderen.be/ns/melding#statuswaarde")) == [statuses]
    sync = _sync_module()
    text = shapes_file().read_text(encoding="utf-8")
    assert sync.synced(text) == text, "run python schemas/tools/sync_codelists.py"


def test_sync_detects_drift() -> None:
    sync = _sync_module()
    text = shapes_file().read_text(encoding="utf-8")
    drifted = text.replace("<https://w3id.org/meldingen-hub/id/concept/categorie/zwerfvuil>\n", "", 1)
    assert drifted != text
    assert sync.synced(drifted) == text


def test_melding_statuswaarde_has_11_concepts() -> None:
    g = Graph().parse(codelists_dir() / "MeldingStatuswaarde.ttl")
    concepts = set(g.subjects(SKOS.inScheme, URIRef("https://data.vlaanderen.be/id/conceptscheme/MeldingStatuswaarde")))
    assert len(concepts) == 11
    assert {str(g.value(c, SKOS.notation)) for c in concepts} == {
        "511", "557", "496", "133", "475", "250", "733", "647", "751", "138", "956"
    }  # fmt: skip


@pytest.mark.skipif(not (SHARED / "oslo").is_dir(), reason="shared OSLO folder not available")
def test_upstream_copies_are_unchanged() -> None:
    pairs = {
        codelists_dir() / "MeldingStatuswaarde.ttl": SHARED / "oslo/melding/MeldingStatuswaarde.ttl",
        context_dir() / "upstream/issue-tracking-voor-burgers-en-organisaties.jsonld": SHARED
        / "oslo/melding/issue-tracking-voor-burgers-en-organisaties.jsonld",
        context_dir() / "upstream/verkeersmeldingen_nl.jsonld": SHARED / "oslo/verkeersmeldingen/verkeersmeldingen_nl.jsonld",
    }
    for ours, theirs in pairs.items():
        assert ours.read_bytes() == theirs.read_bytes(), ours


def test_upstream_context_hashes_match_provenance() -> None:
    readme = (context_dir() / "upstream" / "README.md").read_text(encoding="utf-8")
    for name in KNOWN_CONTEXTS.values():
        if name.startswith("upstream/"):
            digest = hashlib.sha256((context_dir() / name).read_bytes()).hexdigest()
            assert digest in readme, name


def test_category_scheme() -> None:
    cats = categories.categories()
    assert {c.slug for c in cats} == CATEGORY_SLUGS
    g = Graph().parse(codelists_dir() / "categorieen.ttl")
    for c in cats:
        assert c.iri == categories.CONCEPT_NS + c.slug
        assert c.label and c.definition
        assert g.value(URIRef(c.iri), SKOS.prefLabel).language == "nl"
        assert g.value(URIRef(c.iri), SKOS.definition).language == "nl"


@pytest.mark.skipif(not (SHARED / "data/signalen-categories").is_dir(), reason="shared Signalen data not available")
def test_signalen_matches_name_existing_slugs() -> None:
    rows = json.loads((SHARED / "data/signalen-categories/categories.fixture.json").read_text(encoding="utf-8"))
    by_pk = {r["pk"]: r["fields"] for r in rows}
    pairs = {f"{by_pk[f['parent']]['slug']}/{f['slug']}" for f in by_pk.values() if f["parent"]}
    for c in categories.categories():
        for iri in c.exact_matches + c.close_matches + c.related_matches:
            assert iri.startswith(categories.SIGNALEN_NS)
            assert iri[len(categories.SIGNALEN_NS):] in pairs, iri


def test_shapes_load_and_use_integer_cardinalities(validator: ShaclValidator) -> None:
    g = validator.shapes_graph
    for p in (SH.minCount, SH.maxCount, SH.minLength):
        for value in g.objects(None, p):
            assert isinstance(value, Literal) and value.datatype == URIRef("http://www.w3.org/2001/XMLSchema#integer")  # fix of defect 4


def test_sh_names_are_context_terms() -> None:
    terms = set(load_context(HUB_CONTEXT_IRI))
    g = Graph().parse(shapes_file())
    names = {str(n) for n in g.objects(None, SH.name)}
    assert names - {"wkt|gml"} <= terms


def test_context_fixes_the_upstream_defects() -> None:
    ctx = load_context(HUB_CONTEXT_IRI)
    assert ctx["org"] == "http://www.w3.org/ns/org#"  # defect 1
    assert ctx["schema"] == "http://schema.org/" and ctx["persoon"].startswith("https://")  # defect 2
    for term in ("identificator", "meldingstype", "type", "heeftBody", "heeftTarget", "heeftStatus", "indiener",
                 "behandelaar", "betrokkene", "melder", "statuswaarde", "statuswijzigingDoor", "geometrie"):  # fmt: skip
        assert ctx[term]["@type"] == "@id", term  # defect 6
    assert ctx["titel"]["@language"] == "nl"
    assert ctx["statusdatum"]["@type"] == ctx["toegekendOp"]["@type"] == "xsd:dateTime"
    assert ctx["wkt"]["@type"] == "geo:wktLiteral"


# -- validation reports ------------------------------------------------------------------------
def test_personal_data_is_redacted(validator: ShaclValidator) -> None:
    doc = _load(examples_dir() / "valid" / "zwerfvuil-kortrijk.jsonld")
    secrets = ["an.vermeulen-at-example", "0470/ABC", "mailto:an@example.org"]
    doc["melder"]["contactpunt"]["email"] = secrets[0]
    doc["melder"]["contactpunt"]["telefoon"] = secrets[1]
    doc["melder"]["naam"] = {"@value": "An Vermeulen", "@language": "nl"}  # datatype violation on a name
    doc["betrokkene"] = [{"@id": secrets[2], "@type": "Persoon", "contactpunt": {"@type": "Contactpunt", "email": "x"}}]
    result = validator.validate(doc)
    assert not result.conforms
    fields = {v.field for v in result.violations}
    assert {"email", "telefoon", "naam"} <= fields
    report = result.as_text() + json.dumps(result.as_json(), ensure_ascii=False) + result.summary()
    for secret in secrets + ["An Vermeulen", "mailto:"]:
        assert secret not in report
    assert all(v.value == REDACTED for v in result.violations if v.field in {"email", "telefoon", "naam"})


def test_report_names_field_rule_and_problem(validator: ShaclValidator) -> None:
    result = validator.validate(_load(examples_dir() / "invalid" / "missing-titel.jsonld"))
    text = result.as_text()
    assert "titel" in text and "MinCountConstraintComponent" in text and "required" in text
    (violation,) = result.violations
    assert violation.path == "http://purl.org/dc/terms/title"
    assert violation.severity == "Violation"
    assert violation.focus_node.startswith("https://w3id.org/meldingen-hub/id/melding/")


def test_blank_node_focus_is_located(validator: ShaclValidator) -> None:
    result = validator.validate(_load(examples_dir() / "invalid" / "bad-status-value.jsonld"))
    assert result.violations[0].focus_node.endswith("› heeftStatus")


def test_raise_if_invalid(validator: ShaclValidator) -> None:
    validator.validate(_load(VALID[0])).raise_if_invalid()
    with pytest.raises(UnknownCategory) as unknown:
        validator.validate(_load(examples_dir() / "invalid" / "unknown-category.jsonld")).raise_if_invalid()
    assert unknown.value.details and unknown.value.details[0]["field"] in {"meldingstype", "type"}
    with pytest.raises(ShapeViolation):
        validator.validate(_load(examples_dir() / "invalid" / "missing-titel.jsonld")).raise_if_invalid()


def test_validate_accepts_a_graph(validator: ShaclValidator) -> None:
    assert validator.validate(to_graph(_load(VALID[0]))).conforms


def _deep(depth: int) -> list:
    node: list = []
    for _ in range(depth):
        node = [node]
    return node


# -- JSON-LD loader ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "not a JSON-LD object"),
        ({"@type": "Melding"}, "no @context"),
        ({"@context": "https://example.org/x.jsonld", "@type": "Melding"}, "unknown remote context"),
        ({"@context": {"@import": "https://example.org/x.jsonld"}, "@type": "Melding"}, "unknown remote context"),
        ({"@context": HUB_CONTEXT_IRI, "@type": "Meldingstatus"}, "no node with"),
        ({"@context": HUB_CONTEXT_IRI, "@graph": [{"@type": "Melding"}, {"@type": "Melding"}]}, "2 nodes typed Melding"),
        ({"@context": HUB_CONTEXT_IRI, "@id": "melding/1", "@type": "Melding"}, "@id is not an absolute IRI"),
        ({"@context": AP_CONTEXT_IRI, "@id": "melding/1", "@type": "Melding"}, "relative IRI as @id"),
        ({"@context": HUB_CONTEXT_IRI, "@type": "Melding", "melder": "An Vermeulen"}, "melder: not an absolute IRI"),
        ({"@context": {"titel": {"@id": 5}}, "@type": "Melding"}, "JSON-LD parse error"),
        ({"@context": HUB_CONTEXT_IRI, "@type": "Melding", "x": _deep(5000)}, "nested too deeply"),
    ],
)
def test_to_graph_refuses_what_is_not_a_jsonld_melding(doc: object, reason: str) -> None:
    with pytest.raises(NotJsonLd) as info:
        to_graph(doc)
    assert reason in info.value.reason and "\n" not in info.value.reason
    assert "Vermeulen" not in info.value.reason  # a bad reference may be personal data: never echoed


def test_loader_serves_upstream_contexts_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    doc = {
        "@context": AP_CONTEXT_IRI,
        "@id": "https://w3id.org/meldingen-hub/id/melding/x",
        "@type": "Melding",
        "titel": "Put in de weg",
    }
    for parser in ("oxigraph", "rdflib"):
        g = to_graph(doc, parser=parser)  # type: ignore[arg-type]
        assert (URIRef(doc["@id"]), URIRef("http://purl.org/dc/terms/title"), None) in g


def test_blank_node_ids_are_references() -> None:
    doc = {"@context": HUB_CONTEXT_IRI, "@id": "_:m", "@type": "Melding", "melder": {"@id": "_:p", "@type": "Persoon"}}
    assert len(to_graph(doc)) == 3


def test_load_context_returns_a_copy() -> None:
    ctx = load_context(HUB_CONTEXT_IRI)
    ctx["titel"] = "tampered"
    assert load_context(HUB_CONTEXT_IRI)["titel"] != "tampered"


def test_hub_context_file_is_identified_by_its_iri() -> None:
    assert KNOWN_CONTEXTS[HUB_CONTEXT_IRI] == "melding-v1.jsonld"
    assert re.search(r"melding-v1\.jsonld$", HUB_CONTEXT_IRI)
