"""The compiled SHACL validator, component by component, against pyshacl (the reference).

Each case is a small shapes graph with one constraint component and two data graphs: one that
conforms and one that breaks it. Both validators must give the same result (verdict and every
Violation field); the breaking one must report the component. Shapes the compiler does not
support must be handed to pyshacl, never skipped. No timing assertions here (see bench/).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import Graph

from hub.errors import NotJsonLd
from hub.jsonld import to_graph
from hub.paths import examples_dir
from hub.shacl_compiled import CompiledValidator
from hub.shacl_compiled._fastjsonld import HubJsonLd
from hub.validation import REDACTED, ShaclValidator, ValidationResult, make_validator

PREFIXES = """
@prefix sh:   <http://www.w3.org/ns/shacl#> .
@prefix rdf:  <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .
@prefix ex:   <https://example.org/> .
"""

_BLANK = re.compile(r"_:[A-Za-z0-9]+")


def normalized(result: ValidationResult) -> tuple[bool, list[tuple[str | None, ...]]]:
    """Verdict and violations with blank-node labels (random per parse) made equal."""
    rows = [
        tuple(None if x is None else _BLANK.sub("_:b", x) for x in (
            v.focus_node, v.path, v.field, v.component, v.message, v.value, v.severity
        ))
        for v in result.violations
    ]  # fmt: skip
    return result.conforms, sorted(rows, key=lambda r: tuple(x or "" for x in r))


def validators(tmp_path: Path, shapes: str) -> tuple[ShaclValidator, CompiledValidator]:
    path = tmp_path / "shapes.ttl"
    path.write_text(PREFIXES + shapes, encoding="utf-8")
    return ShaclValidator(path), CompiledValidator(path)


def both(ref: ShaclValidator, compiled: CompiledValidator, data: str) -> ValidationResult:
    """Validate Turtle data with both; assert identical results; return the compiled one."""
    expected = ref.validate(Graph().parse(data=PREFIXES + data, format="turtle"))
    got = compiled.validate(Graph().parse(data=PREFIXES + data, format="turtle"))
    assert normalized(got) == normalized(expected)
    return got


def node_shape(body: str, target: str = "sh:targetClass ex:A") -> str:
    return f"ex:S a sh:NodeShape ; {target} ; {body} .\n"


def prop(path: str, body: str) -> str:
    return f"sh:property [ sh:path {path} ; {body} ]"


# (id, shapes, conforming data, violating data, component the violation names)
CASES = [
    (
        "class",
        node_shape(prop("ex:p", "sh:class ex:B")),
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:B .",
        "ex:a a ex:A ; ex:p ex:b , 'literal' .",
        "ClassConstraintComponent",
    ),
    (
        "class-via-subclass",
        node_shape(prop("ex:p", "sh:class ex:B")),
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:C . ex:C rdfs:subClassOf ex:D . ex:D rdfs:subClassOf ex:B .",
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:C . ex:B rdfs:subClassOf ex:C .",
        "ClassConstraintComponent",
    ),
    (
        "datatype",
        node_shape(prop("ex:p", "sh:datatype xsd:integer")),
        'ex:a a ex:A ; ex:p 5 , "07"^^xsd:integer .',
        'ex:a a ex:A ; ex:p "x"^^xsd:integer , "5" , ex:iri .',
        "DatatypeConstraintComponent",
    ),
    (
        "datatype-string-and-langstring",
        node_shape(prop("ex:p", "sh:datatype xsd:string") + " ; " + prop("ex:q", "sh:datatype rdf:langString")),
        'ex:a a ex:A ; ex:p "x" , "y"^^xsd:string ; ex:q "z"@nl .',
        'ex:a a ex:A ; ex:p "x"@nl ; ex:q "z" .',
        "DatatypeConstraintComponent",
    ),
    (
        "datatype-datetime",
        node_shape(prop("ex:p", "sh:datatype xsd:dateTime")),
        'ex:a a ex:A ; ex:p "2026-11-20T08:15:00+01:00"^^xsd:dateTime .',
        'ex:a a ex:A ; ex:p "2026-11-31T08:15:00+01:00"^^xsd:dateTime .',
        "DatatypeConstraintComponent",
    ),
    (
        "nodeKind",
        node_shape(prop("ex:p", "sh:nodeKind sh:IRI") + " ; " + prop("ex:q", "sh:nodeKind sh:BlankNodeOrLiteral")),
        'ex:a a ex:A ; ex:p ex:b ; ex:q [] , "x" .',
        'ex:a a ex:A ; ex:p "x" , [] ; ex:q ex:b .',
        "NodeKindConstraintComponent",
    ),
    (
        "minCount",
        node_shape(prop("ex:p", "sh:minCount 2")),
        "ex:a a ex:A ; ex:p ex:b , ex:c .",
        "ex:a a ex:A ; ex:p ex:b .",
        "MinCountConstraintComponent",
    ),
    (
        "maxCount",
        node_shape(prop("ex:p", "sh:maxCount 1")),
        "ex:a a ex:A ; ex:p ex:b .",
        'ex:a a ex:A ; ex:p ex:b , "b" .',
        "MaxCountConstraintComponent",
    ),
    (
        "minLength",
        node_shape(prop("ex:p", "sh:minLength 3")),
        'ex:a a ex:A ; ex:p "abc" , ex:b .',
        'ex:a a ex:A ; ex:p "ab" , [] .',
        "MinLengthConstraintComponent",
    ),
    (
        "maxLength",
        node_shape(prop("ex:p", "sh:maxLength 3")),
        'ex:a a ex:A ; ex:p "abc" , 12 .',
        'ex:a a ex:A ; ex:p "abcd" , ex:long-iri .',
        "MaxLengthConstraintComponent",
    ),
    (
        "pattern",
        node_shape(prop("ex:p", 'sh:pattern "^ab" ; sh:flags "i"')),
        'ex:a a ex:A ; ex:p "ABc" , "abd"@nl .',
        'ex:a a ex:A ; ex:p "xab" , [] .',
        "PatternConstraintComponent",
    ),
    (
        "pattern-on-normalised-datetime",
        node_shape(prop("ex:p", 'sh:pattern "Z$"')),
        'ex:a a ex:A ; ex:p "2026-11-20T08:15:00Z"^^ex:notAKnownDatatype .',
        'ex:a a ex:A ; ex:p "2026-11-20T08:15:00Z"^^xsd:dateTime .',  # rdflib writes +00:00
        "PatternConstraintComponent",
    ),
    (
        "languageIn",
        node_shape(prop("ex:p", 'sh:languageIn ( "nl" "en" )')),
        'ex:a a ex:A ; ex:p "x"@nl-BE , "y"@EN .',
        'ex:a a ex:A ; ex:p "x"@fr , "y" .',
        "LanguageInConstraintComponent",
    ),
    (
        "uniqueLang",
        node_shape(prop("ex:p", "sh:uniqueLang true")),
        'ex:a a ex:A ; ex:p "a"@nl , "b"@en , "c" , "d" .',
        'ex:a a ex:A ; ex:p "a"@nl , "b"@NL .',
        "UniqueLangConstraintComponent",
    ),
    (
        "in",
        node_shape(prop("ex:p", 'sh:in ( ex:x "y" 3 )')),
        'ex:a a ex:A ; ex:p ex:x , "y" , 3 .',
        'ex:a a ex:A ; ex:p ex:z , "y"@nl , "3" .',
        "InConstraintComponent",
    ),
    (
        "hasValue",
        node_shape(prop("ex:p", "sh:hasValue ex:x")),
        "ex:a a ex:A ; ex:p ex:x , ex:y .",
        "ex:a a ex:A ; ex:p ex:y .",
        "HasValueConstraintComponent",
    ),
    (
        "equals",
        node_shape(prop("ex:p", "sh:equals ex:q")),
        "ex:a a ex:A ; ex:p ex:x , ex:y ; ex:q ex:y , ex:x .",
        "ex:a a ex:A ; ex:p ex:x ; ex:q ex:y .",
        "EqualsConstraintComponent",
    ),
    (
        "disjoint",
        node_shape(prop("ex:p", "sh:disjoint ex:q")),
        "ex:a a ex:A ; ex:p ex:x ; ex:q ex:y .",
        "ex:a a ex:A ; ex:p ex:x , ex:y ; ex:q ex:y .",
        "DisjointConstraintComponent",
    ),
    (
        "closed",
        node_shape(prop("ex:p", "sh:minCount 0") + " ; sh:closed true ; sh:ignoredProperties ( rdf:type )"),
        "ex:a a ex:A ; ex:p ex:x .",
        'ex:a a ex:A ; ex:p ex:x ; ex:q "extra" .',
        "ClosedConstraintComponent",
    ),
    (
        "node",
        node_shape(prop("ex:p", "sh:node ex:T"))
        + "ex:T a sh:NodeShape ; " + prop("ex:name", "sh:minCount 1 ; sh:datatype xsd:string") + " .",
        'ex:a a ex:A ; ex:p ex:b . ex:b ex:name "B" .',
        "ex:a a ex:A ; ex:p ex:b , [ ex:name 5 ] .",
        "NodeConstraintComponent",
    ),
    (
        "property-nested",
        node_shape(prop("ex:p", prop("ex:q", "sh:minCount 1"))),
        "ex:a a ex:A ; ex:p [ ex:q ex:x ] .",
        "ex:a a ex:A ; ex:p [ ex:r ex:x ] .",
        "MinCountConstraintComponent",
    ),
    (
        "and",
        node_shape(prop("ex:p", "sh:and ( [ sh:class ex:B ] [ sh:nodeKind sh:IRI ] )")),
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:B .",
        "ex:a a ex:A ; ex:p [ a ex:B ] .",
        "AndConstraintComponent",
    ),
    (
        "or",
        node_shape(prop("ex:p", "sh:or ( [ sh:datatype xsd:string ] [ sh:class ex:B ] )")),
        'ex:a a ex:A ; ex:p "x" , ex:b . ex:b a ex:B .',
        "ex:a a ex:A ; ex:p ex:c , 4 .",
        "OrConstraintComponent",
    ),
    (
        "not",
        node_shape(prop("ex:p", "sh:not [ sh:class ex:B ]")),
        "ex:a a ex:A ; ex:p ex:c .",
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:B .",
        "NotConstraintComponent",
    ),
    (
        "xone",
        node_shape(prop("ex:p", "sh:xone ( [ sh:class ex:B ] [ sh:class ex:C ] )")),
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:B .",
        "ex:a a ex:A ; ex:p ex:b , ex:d . ex:b a ex:B , ex:C .",
        "XoneConstraintComponent",
    ),
    (
        "path-alternative",
        node_shape(prop("[ sh:alternativePath ( ex:p ex:q ) ]", "sh:minCount 1")),
        "ex:a a ex:A ; ex:q ex:x .",
        "ex:a a ex:A ; ex:r ex:x .",
        "MinCountConstraintComponent",
    ),
    (
        "path-inverse",
        node_shape(prop("[ sh:inversePath ex:p ]", "sh:maxCount 1")),
        "ex:a a ex:A . ex:x ex:p ex:a .",
        "ex:a a ex:A . ex:x ex:p ex:a . ex:y ex:p ex:a .",
        "MaxCountConstraintComponent",
    ),
    (
        "path-sequence",
        node_shape(prop("( ex:p ex:q )", "sh:datatype xsd:string")),
        'ex:a a ex:A ; ex:p [ ex:q "x" ] .',
        "ex:a a ex:A ; ex:p [ ex:q 5 ] .",
        "DatatypeConstraintComponent",
    ),
    (
        "path-zero-or-more",
        node_shape(prop("[ sh:zeroOrMorePath ex:p ]", "sh:class ex:A")),
        "ex:a a ex:A ; ex:p ex:b . ex:b a ex:A ; ex:p ex:a .",
        "ex:a a ex:A ; ex:p ex:b . ex:b ex:p ex:c . ex:c a ex:A .",
        "ClassConstraintComponent",
    ),
    (
        "path-one-or-more",
        node_shape(prop("[ sh:oneOrMorePath ex:p ]", "sh:maxCount 2")),
        "ex:a a ex:A ; ex:p ex:b . ex:b ex:p ex:c .",
        "ex:a a ex:A ; ex:p ex:b . ex:b ex:p ex:c . ex:c ex:p ex:d .",
        "MaxCountConstraintComponent",
    ),
    (
        "path-zero-or-one",
        node_shape(prop("[ sh:zeroOrOnePath ex:p ]", "sh:maxCount 2")),
        "ex:a a ex:A ; ex:p ex:b .",
        "ex:a a ex:A ; ex:p ex:b , ex:c .",
        "MaxCountConstraintComponent",
    ),
    (
        "target-node",
        node_shape(prop("ex:p", "sh:minCount 1"), target="sh:targetNode ex:a"),
        "ex:a ex:p ex:x .",
        "ex:b ex:p ex:x .",  # ex:a is a target even when it is not in the data
        "MinCountConstraintComponent",
    ),
    (
        "target-subjects-of",
        node_shape(prop("ex:p", "sh:maxCount 1"), target="sh:targetSubjectsOf ex:p"),
        "ex:a ex:p ex:x . ex:b ex:p ex:y .",
        "ex:a ex:p ex:x , ex:y .",
        "MaxCountConstraintComponent",
    ),
    (
        "target-objects-of",
        node_shape("sh:class ex:B", target="sh:targetObjectsOf ex:p"),
        "ex:a ex:p ex:b . ex:b a ex:B .",
        "ex:a ex:p ex:b , ex:c . ex:b a ex:B .",
        "ClassConstraintComponent",
    ),
    (
        "target-implicit-class",
        "ex:A a rdfs:Class , sh:NodeShape ; " + prop("ex:p", "sh:minCount 1") + " .",
        "ex:a a ex:A ; ex:p ex:x .",
        "ex:a a ex:Sub . ex:Sub rdfs:subClassOf ex:A .",
        "MinCountConstraintComponent",
    ),
    (
        "node-shape-constraints",
        node_shape('sh:nodeKind sh:IRI ; sh:pattern "^https://example.org/a" ; sh:in ( ex:a ex:a2 )'),
        "ex:a a ex:A .",
        "ex:b a ex:A . [] a ex:A .",
        "NodeKindConstraintComponent",
    ),
    (
        "severity-warning-and-message",
        node_shape(prop("ex:p", 'sh:minCount 1 ; sh:severity sh:Warning ; sh:message "p please"')),
        "ex:a a ex:A ; ex:p ex:x .",
        "ex:a a ex:A .",
        "MinCountConstraintComponent",
    ),
]


@pytest.mark.parametrize(("shapes", "good", "bad", "component"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_component_agrees_with_pyshacl(tmp_path: Path, shapes: str, good: str, bad: str, component: str) -> None:
    ref, compiled = validators(tmp_path, shapes)
    assert compiled.supported, compiled.unsupported
    assert both(ref, compiled, good).conforms
    result = both(ref, compiled, bad)
    assert not result.conforms
    assert component in {v.component for v in result.violations}
    assert compiled.stats["pyshacl"] == 0


def test_deactivated_shape_is_skipped(tmp_path: Path) -> None:
    ref, compiled = validators(tmp_path, node_shape(prop("ex:p", "sh:minCount 1 ; sh:deactivated true")))
    assert both(ref, compiled, "ex:a a ex:A .").conforms


def test_shape_values_that_look_like_code_stay_data(tmp_path: Path) -> None:
    """The compiled shapes are generated Python: values from the shapes file (patterns, sh:in
    members, IRIs) must be compared as data, never become part of the generated source."""
    code = "x\\\")) or __import__('os')._exit(3) #{COMP}"
    shapes = node_shape(
        prop("<https://example.org/p{COMP}>", f'sh:in ( "{code}" ) ; sh:pattern "^x\\\\\\"\\\\)" ; sh:maxCount 1')
    )
    ref, compiled = validators(tmp_path, shapes)
    assert compiled.supported
    assert both(ref, compiled, f'ex:a a ex:A ; <https://example.org/p{{COMP}}> "{code}" .').conforms
    bad = both(ref, compiled, 'ex:a a ex:A ; <https://example.org/p{COMP}> "y", "z" .')
    assert {v.component for v in bad.violations} == {
        "InConstraintComponent", "PatternConstraintComponent", "MaxCountConstraintComponent"
    }


def test_warning_severity_is_reported(tmp_path: Path) -> None:
    ref, compiled = validators(tmp_path, node_shape(prop("ex:p", "sh:minCount 1 ; sh:severity sh:Warning")))
    (violation,) = both(ref, compiled, "ex:a a ex:A .").violations
    assert violation.severity == "Warning"


def test_node_reports_nested_details_like_pyshacl(tmp_path: Path) -> None:
    shapes = node_shape(prop("ex:p", "sh:node ex:T")) + "ex:T a sh:NodeShape ; " + prop("ex:q", "sh:minCount 1") + " ."
    ref, compiled = validators(tmp_path, shapes)
    result = both(ref, compiled, "ex:a a ex:A ; ex:p ex:b .")
    assert {v.component for v in result.violations} == {"NodeConstraintComponent", "MinCountConstraintComponent"}


# -- fallback to pyshacl -------------------------------------------------------------------------
SPARQL_SHAPE = node_shape(
    """sh:sparql [
        sh:message "ex:p must not be 'bad'" ;
        sh:select "SELECT $this ?value WHERE { $this <https://example.org/p> ?value . FILTER (str(?value) = 'bad') }"
    ]"""
)
QUALIFIED_SHAPE = node_shape(prop("ex:p", "sh:qualifiedValueShape [ sh:class ex:B ] ; sh:qualifiedMinCount 1"))
OTHER_SHAPE = "ex:Other a sh:NodeShape ; sh:targetClass ex:O ; " + prop("ex:p", "sh:minCount 1") + " .\n"


@pytest.mark.parametrize(
    ("shapes", "component"),
    [(SPARQL_SHAPE, "SPARQLConstraintComponent"), (QUALIFIED_SHAPE, "QualifiedMinCountConstraintComponent")],
    ids=["sparql", "qualifiedValueShape"],
)
def test_unsupported_component_falls_back_to_pyshacl(tmp_path: Path, shapes: str, component: str) -> None:
    ref, compiled = validators(tmp_path, shapes + OTHER_SHAPE)
    assert "https://example.org/S" in compiled.unsupported
    assert "https://example.org/Other" not in compiled.unsupported
    assert not compiled.supported

    result = both(ref, compiled, 'ex:a a ex:A ; ex:p "bad" .')
    assert not result.conforms
    assert component in {v.component for v in result.violations}
    assert compiled.stats["pyshacl"] == 1

    # data the unsupported shape does not apply to stays on the compiled path
    result = both(ref, compiled, "ex:o a ex:O .")
    assert [v.component for v in result.violations] == ["MinCountConstraintComponent"]
    assert compiled.stats["pyshacl"] == 1


def test_a_shape_referencing_an_unsupported_shape_falls_back(tmp_path: Path) -> None:
    shapes = node_shape(prop("ex:p", "sh:node ex:T")) + (
        "ex:T a sh:NodeShape ; sh:property [ sh:path ex:q ; sh:minInclusive 3 ] ."
    )
    ref, compiled = validators(tmp_path, shapes)
    assert "https://example.org/S" in compiled.unsupported
    result = both(ref, compiled, "ex:a a ex:A ; ex:p [ ex:q 1 ] .")
    assert not result.conforms
    assert compiled.stats["pyshacl"] == 1


def test_recursive_shapes_fall_back(tmp_path: Path) -> None:
    shapes = node_shape(prop("ex:p", "sh:node ex:S") + " ; " + prop("ex:q", "sh:minCount 1"))
    ref, compiled = validators(tmp_path, shapes)
    assert "https://example.org/S" in compiled.unsupported
    both(ref, compiled, "ex:a a ex:A ; ex:q ex:x ; ex:p ex:b . ex:b ex:q ex:y .")
    assert compiled.stats["pyshacl"] == 1


def test_custom_constraint_component_falls_back(tmp_path: Path) -> None:
    shapes = (
        """ex:MustBeOne a sh:ConstraintComponent ;
            sh:parameter [ sh:path ex:mustBe ] ;
            sh:validator [ a sh:SPARQLAskValidator ;
                sh:message "must be {$mustBe}" ; sh:ask "ASK { FILTER ($value = $mustBe) }" ] .
        """
        + node_shape(prop("ex:p", "ex:mustBe 1"))
    )
    ref, compiled = validators(tmp_path, shapes)
    assert "https://example.org/S" in compiled.unsupported
    result = both(ref, compiled, "ex:a a ex:A ; ex:p 2 .")
    assert compiled.stats["pyshacl"] == 1
    assert not result.conforms


# -- the hub's own shapes --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub_validators() -> tuple[ShaclValidator, CompiledValidator]:
    return ShaclValidator(), CompiledValidator()


def _example(kind: str, name: str) -> dict:
    return json.loads((examples_dir() / kind / f"{name}.jsonld").read_text(encoding="utf-8"))


def test_every_hub_shape_is_compiled(hub_validators: tuple[ShaclValidator, CompiledValidator]) -> None:
    _, compiled = hub_validators
    assert compiled.supported and compiled.unsupported == {}


def test_make_validator_compiled() -> None:
    assert isinstance(make_validator("compiled"), CompiledValidator)


def test_personal_values_are_redacted(hub_validators: tuple[ShaclValidator, CompiledValidator]) -> None:
    ref, compiled = hub_validators
    doc = _example("valid", "zwerfvuil-kortrijk")
    doc["melder"]["contactpunt"]["email"] = "an.vermeulen-at-example"
    doc["melder"]["naam"] = {"@value": "An Vermeulen", "@language": "nl"}
    doc["betrokkene"] = [{"@id": "mailto:an@example.org", "@type": "Persoon", "contactpunt": {"@type": "Contactpunt", "email": "x"}}]
    result = compiled.validate(doc)
    assert normalized(result) == normalized(ref.validate(doc))
    text = json.dumps(result.as_json(), ensure_ascii=False)
    assert "An Vermeulen" not in text and "an.vermeulen" not in text and "mailto:" not in text
    assert all(v.value == REDACTED for v in result.violations if v.field in {"email", "naam"})


def test_blank_node_focus_is_located(hub_validators: tuple[ShaclValidator, CompiledValidator]) -> None:
    _, compiled = hub_validators
    result = compiled.validate(_example("invalid", "bad-status-value"))
    assert result.violations[0].focus_node.endswith("› heeftStatus")


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        {"titel": "no context"},
        {"@context": "https://example.org/unknown-context.jsonld", "@type": "Melding"},
        {"@context": "https://w3id.org/meldingen-hub/context/melding-v1.jsonld", "titel": "geen melding"},
        {"@context": "https://w3id.org/meldingen-hub/context/melding-v1.jsonld", "@type": "Melding", "indiener": "stad-kortrijk"},
    ],
    ids=["array", "no-context", "unknown-context", "no-melding", "relative-iri"],
)
def test_not_jsonld_is_refused_with_the_reference_reason(
    hub_validators: tuple[ShaclValidator, CompiledValidator], doc: object
) -> None:
    ref, compiled = hub_validators
    with pytest.raises(NotJsonLd) as expected:
        ref.validate(doc)  # type: ignore[arg-type]
    with pytest.raises(NotJsonLd) as got:
        compiled.validate(doc)  # type: ignore[arg-type]
    assert got.value.reason == expected.value.reason


def test_graph_input(hub_validators: tuple[ShaclValidator, CompiledValidator]) -> None:
    ref, compiled = hub_validators
    graph = to_graph(_example("invalid", "two-behandelaars"))
    assert normalized(compiled.validate(graph)) == normalized(ref.validate(graph))


def test_documents_outside_the_fast_subset_take_the_reference_parser(
    hub_validators: tuple[ShaclValidator, CompiledValidator],
) -> None:
    ref, compiled = hub_validators
    doc = _example("valid", "zwerfvuil-kortrijk")
    doc["dct:title"] = "compact IRI as a key"  # a second title, by compact IRI
    assert HubJsonLd().expand(doc) is None
    before = compiled.stats["parsed"]
    result = compiled.validate(doc)
    assert compiled.stats["parsed"] == before + 1
    assert normalized(result) == normalized(ref.validate(doc))
    assert "MaxCountConstraintComponent" in {v.component for v in result.violations}


def test_fast_expansion_equals_the_reference_graph() -> None:
    from rdflib import BNode, Literal, URIRef
    from rdflib.compare import isomorphic

    from hub.shacl_compiled._terms import Blank, Lit

    expander = HubJsonLd()
    for path in sorted((examples_dir() / "valid").glob("*.jsonld")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        data = expander.expand(doc)
        assert data is not None, path.name

        def term(t: object) -> object:
            if isinstance(t, Blank):
                return BNode(t.label)
            if isinstance(t, Lit):
                return Literal(t.lex, lang=t.lang, datatype=URIRef(t.dt) if t.dt else None)
            return URIRef(t)  # type: ignore[arg-type]

        fast = Graph()
        for s, p, o in data.triples():
            fast.add((term(s), URIRef(p), term(o)))
        assert isomorphic(fast, to_graph(doc)), path.name


# --- typed literals without rdflib's Literal (hub.shacl_compiled._terms.typed_lit) -----------------

_XSD = "http://www.w3.org/2001/XMLSchema#"
_DATETIMEISH = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, tz: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{tz}",
    st.sampled_from(["2026", "0001", "9999", "0000", "+2026", "26", "20265"]),
    st.sampled_from(["01", "02", "11", "12", "13", "00", "1"]),
    st.sampled_from(["01", "28", "29", "30", "31", "32", "1"]),
    st.sampled_from(["T", " ", "t", "", "TT"]),
    st.sampled_from(["00", "01", "23", "24", "1"]),
    st.sampled_from(["00", "15", "59", "60"]),
    st.sampled_from(["00", "59", "60", "5"]),
    st.sampled_from(["", ".5", ".123456", ".1234567", ".", ",5"]),
    st.sampled_from(["", "Z", "z", "+00:00", "-05:30", "+14:00", "+24:00", "+0100", "+01", "+01:00:30", " "]),
)


@given(lex=st.one_of(_DATETIMEISH, st.text(max_size=30)))
@settings(max_examples=1500, deadline=None)
def test_a_datetime_literal_is_what_rdflib_makes_of_it(lex: str) -> None:
    """The shortcut for xsd:dateTime gives rdflib's lexical form and well-typedness, valid or not."""
    from rdflib import Literal, URIRef

    from hub.shacl_compiled._terms import _DATETIME_AS_RDFLIB, lit_from_rdflib, typed_lit

    assert _DATETIME_AS_RDFLIB, "the shortcut is off for this rdflib: the test would compare rdflib with itself"
    dt = _XSD + "dateTime"
    assert typed_lit.__wrapped__(lex, dt) == lit_from_rdflib(Literal(lex, datatype=URIRef(dt)))


@given(lex=st.text(max_size=40), dt=st.sampled_from([
    "http://www.opengis.net/ont/geosparql#wktLiteral", "http://www.opengis.net/ont/geosparql#gmlLiteral",
    "https://example.org/ownType", _XSD + "normalizedString", _XSD + "token", _XSD + "integer", _XSD + "date",
]))  # fmt: skip
@settings(max_examples=700, deadline=None)
def test_a_literal_of_a_datatype_rdflib_does_not_know_is_kept_as_written(lex: str, dt: str) -> None:
    from rdflib import Literal, URIRef

    from hub.shacl_compiled._terms import lit_from_rdflib, typed_lit

    assert typed_lit.__wrapped__(lex, dt) == lit_from_rdflib(Literal(lex, datatype=URIRef(dt)))


def test_the_datetime_shortcut_follows_rdflib_settings_changed_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """rdflib's settings are process-wide (pyshacl turns normalisation off while it validates): with
    normalisation off rdflib keeps the lexical form as written, and so does the literal here."""
    import rdflib
    from rdflib import Literal, URIRef

    from hub.shacl_compiled._terms import lit_from_rdflib, typed_lit

    dt = _XSD + "dateTime"
    monkeypatch.setattr(rdflib, "NORMALIZE_LITERALS", False)
    for lex in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5+01:00"):
        expected = lit_from_rdflib(Literal(lex, datatype=URIRef(dt)))
        assert expected.lex == lex, "rdflib no longer normalises: the comparison below means something"
        assert typed_lit.__wrapped__(lex, dt) == expected
