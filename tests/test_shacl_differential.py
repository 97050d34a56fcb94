"""Differential test: the compiled validator against pyshacl on generated meldingen.

5,000 meldingen (``EXAMPLES``): DemoFeed output, valid and deliberately broken, mutated by
hypothesis — fields dropped, values replaced by wrong datatypes, unknown categories, bad WKT,
bad statuses and dates, extra values, explicit ``@value``/``@language``/``@id`` forms, compact
IRIs, unknown keys, nested nodes, changed ``@type``s … For each, the compiled validator and the
reference (:class:`hub.validation.ShaclValidator`, i.e. pyshacl) must agree on:

* the verdict, or the same error (class and reason) when the document is not a JSON-LD melding;
* the violations: the same SET of (focus node, path, component) — and in fact the same multiset of
  complete :class:`~hub.validation.Violation` records (field, message, value, severity too);
* when the compiled validator's own JSON-LD expander accepts the document, the same triples as
  :func:`hub.jsonld.to_graph` (up to blank-node labels).

Runtime: pyshacl is the slow side (~7-10 ms a melding here), about a minute for the whole file.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.demo import DemoFeed
from hub.errors import HubError, NotJson
from hub.geo import MunicipalityIndex
from hub.jsonld import AP_CONTEXT_IRI, HUB_CONTEXT_IRI, decode_json, load_context, to_graph
from hub.paths import examples_dir
from hub.registry import Registry
from hub.shacl_compiled import CompiledValidator
from hub.shacl_compiled._fastjsonld import HubJsonLd
from hub.shacl_compiled._terms import Blank, DataGraph, Lit
from hub.validation import ShaclValidator, ValidationResult

EXAMPLES = 5_000
"""Generated meldingen compared (hypothesis ``max_examples``); asserted below."""

_BLANK = re.compile(r"_:[A-Za-z0-9]+")
# hub.jsonld.to_graph names the first relative IRI it meets, and with several of them which one
# comes first varies between two parses of the same document (rdflib's store order).
_WHICH_RELATIVE = re.compile(r"relative IRI as (@id|value of <[^>]*>)")

CATEGORY = "https://w3id.org/meldingen-hub/id/concept/categorie/"
STATUS = "https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/"


# -- the two validators and what they say ---------------------------------------------------------
@cache
def validators() -> tuple[ShaclValidator, CompiledValidator]:
    return ShaclValidator(), CompiledValidator()


@cache
def expander() -> HubJsonLd:
    return HubJsonLd()


def normalized(result: ValidationResult) -> tuple[bool, list[tuple[str | None, ...]]]:
    rows = [
        tuple(None if x is None else _BLANK.sub("_:b", x) for x in (
            v.focus_node, v.path, v.field, v.component, v.message, v.value, v.severity
        ))
        for v in result.violations
    ]  # fmt: skip
    return result.conforms, sorted(rows, key=lambda r: tuple(x or "" for x in r))


def _reason(e: HubError) -> str:
    return _WHICH_RELATIVE.sub("relative IRI as …", e.reason)


def reference_outcome(doc: Any) -> tuple[Any, ...]:
    ref, _ = validators()
    try:
        return ("result", normalized(ref.validate(doc)))
    except HubError as e:
        return ("error", type(e).__name__, _reason(e))
    except Exception as e:  # noqa: BLE001 - whatever the reference raises, the compiled one must too
        return ("exception", type(e).__name__)


def compiled_outcome(doc: Any) -> tuple[Any, ...]:
    _, compiled = validators()
    try:
        return ("result", normalized(compiled.validate(doc)))
    except HubError as e:
        return ("error", type(e).__name__, _reason(e))
    except Exception as e:  # noqa: BLE001
        return ("exception", type(e).__name__)


def canonical(data: DataGraph) -> Counter[tuple[str, str, str]]:
    """Triples with each blank node replaced by a description of what hangs below it."""
    memo: dict[Blank, str] = {}

    def sig(t: Any, depth: int = 0) -> str:
        if isinstance(t, Blank):
            if t in memo:
                return memo[t]
            if depth > 12:
                return "[…]"
            memo[t] = "[cycle]"
            inner = sorted(f"{p} {sig(o, depth + 1)}" for p, objs in (data.out.get(t) or {}).items() for o in objs)
            memo[t] = "[" + " ; ".join(inner) + "]"
            return memo[t]
        if isinstance(t, Lit):
            return repr(tuple(t))
        return f"<{t}>"

    return Counter((sig(s), p, sig(o)) for s, p, o in data.triples())


def assert_agree(doc: Any) -> tuple[Any, ...]:
    expected = reference_outcome(doc)
    got = compiled_outcome(doc)
    assert got == expected, json.dumps(doc, ensure_ascii=False, indent=1)[:3000]
    fast = expander().expand(doc)
    if fast is not None:
        assert expected[0] == "result", "the fast expander accepted a document the reference refuses"
        assert canonical(fast) == canonical(DataGraph.from_rdflib(to_graph(doc)))
    return expected


# -- every example file ----------------------------------------------------------------------------
EXAMPLE_FILES = sorted((examples_dir() / "valid").glob("*.jsonld")) + sorted(
    (examples_dir() / "invalid").glob("*.jsonld")
)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_files_agree(path: Any) -> None:
    try:
        doc = decode_json(path.read_bytes())
    except NotJson:
        assert path.stem == "not-json"  # fails before any validator sees it
        return
    outcome = assert_agree(doc)
    if path.parent.name == "valid":
        assert outcome == ("result", (True, []))
    else:
        assert outcome[0] == "error" or outcome[1][0] is False


# -- generated meldingen -------------------------------------------------------------------------------
@cache
def pool() -> list[dict[str, Any]]:
    """DemoFeed meldingen: valid ones over every category/municipality, and its broken JSON ones."""
    feed = DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=8)
    docs = [json.loads(feed.valid().value) for _ in range(150)]
    docs += [json.loads(feed.valid(anonymous=False).value) for _ in range(30)]
    for kind in ("shape-violation", "unknown-category", "missing-location", "outside-region"):
        docs += [json.loads(feed.broken(kind).value) for _ in range(4)]
    docs.append(json.loads(feed.broken("not-jsonld").value))
    return docs


CLASS_TERMS = [
    "Melding", "MeldingBody", "Meldingstatus", "Identificator", "Geometrie", "Adresvoorstelling", "Persoon",
    "Contactpunt", "Organisatie", "Agent", "Concept", "Onbekend", "https://example.org/Klasse", "melding:Melding",
]  # fmt: skip

KEYS = [
    "titel", "samenvatting", "meldingstype", "type", "heeftBody", "heeftTarget", "heeftStatus", "indiener",
    "behandelaar", "betrokkene", "melder", "meldingsapplicatie", "meldingsorganisatie", "webpagina",
    "identificator", "notatie", "toegekendDoor", "toegekendDoorString", "toegekendOp", "beschrijving", "bijlage",
    "geometrie", "wkt", "gml", "statuswaarde", "statusdatum", "statuswijzigingDoor", "straatnaam", "huisnummer",
    "busnummer", "postcode", "gemeentenaam", "volledigAdres", "land", "verwijstNaar", "naam", "contactpunt",
    "email", "telefoon", "dct:title", "http://purl.org/dc/terms/title", "onbekendVeld",
    "@index", "@reverse",
]  # fmt: skip

VALUES: list[Any] = [
    # text
    "", "x", "Zwerfvuil aan de Leie", "  ", "café ∑ ☃",
    # references
    "https://example.org/x", "urn:uuid:3f6c2a1e-8d4b-4c7a-9e21-5b0d7f6a1c42", "mailto:an@example.org",
    "tel:+32470123456", "HTTPS://X/y", "https://w3id.org/meldingen-hub/id/organisatie/nis-34022", "_:b1", "_:b2",
    # categories and statuses
    CATEGORY + "zwerfvuil", CATEGORY + "sluikstort", CATEGORY + "ufo-waarneming", STATUS + "511", STATUS + "138",
    STATUS + "999",
    # dates
    "2026-11-20T08:15:00+01:00", "2026-11-20T08:15:00Z", "2026-11-20T08:15:00", "2026-11-31T08:00:00+01:00",
    "gisteren", "2026-11-20 08:15:00+01:00", "2026-11-20T08:15:00.5+01:00", "2026-11-20T08:15:00+0100",
    # geometry
    "POINT (3.2649 50.8303)", "POINT (3.2649, 50.8303)", "point(3.2 50.8)",
    "<http://www.opengis.net/def/crs/EPSG/0/4326> POINT (50.83 3.26)", "POLYGON ((3 50, 3.1 50, 3.1 50.1, 3 50))",
    "POINT EMPTY", "LINESTRING 3 50", '<gml:Point srsName="x"><gml:pos>50.8 3.2</gml:pos></gml:Point>', "<Point/>",
    # contact, address
    "an@example.org", "an-at-example", "+32 470 12 34 56", "bel me", "8500", "B-8500", "08500",
    # several values
    [], ["x", "y"], [CATEGORY + "wegdefect", CATEGORY + "zwerfvuil"],
    # explicit JSON-LD forms and nested nodes
    {}, {"@value": "x", "@language": "fr"}, {"@value": "x", "@language": "NL"}, {"@value": "x", "@language": "nl-BE"},
    {"@value": "2026-11-20T08:15:00+01:00", "@type": "xsd:dateTime"}, {"@value": "x", "@type": "xsd:string"},
    {"@value": "x", "@type": "https://example.org/dt"}, {"@value": "POINT (3 50)", "@type": "geo:wktLiteral"},
    {"@id": "https://example.org/y"}, {"@id": "_:b1"},
    {"@type": "MeldingBody"}, {"@type": "MeldingBody", "bijlage": "foto.jpg"},
    {"@type": "Geometrie", "wkt": "POINT (3.2 50.8)"}, {"@type": "Geometrie"},
    {"@type": "Geometrie", "gml": "<gml:Point><gml:pos>50.8 3.2</gml:pos></gml:Point>", "wkt": "POINT (1 2)"},
    {"@type": "Meldingstatus", "statuswaarde": STATUS + "511"},
    {"@type": "Meldingstatus", "statuswaarde": STATUS + "138", "statusdatum": "2026-11-20T08:15:00+01:00",
     "statuswijzigingDoor": "https://example.org/org", "beschrijving": "In behandeling."},
    {"@type": "Persoon", "naam": "An", "contactpunt": {"@type": "Contactpunt", "email": "bad", "telefoon": "?"}},
    {"@type": "Adresvoorstelling", "postcode": "B-8500", "straatnaam": "Kerkstraat"},
    {"@type": "Identificator", "notatie": "not-a-uuid"}, {"@id": "https://example.org/n", "@type": "Melding"},
]  # fmt: skip

REF_VALUES: list[Any] = [v for v in VALUES if isinstance(v, dict) or (isinstance(v, str) and ":" in v and " " not in v)]
"""Values for terms that take references (``"@type": "@id"``): adapters get these wrong less crudely."""

EXOTIC: list[Any] = [
    # what the fast expander leaves to the JSON-LD processor, or what to_graph refuses
    "\ud800", "https://exa mple.org", "stad-kortrijk", "dct:foo", "schema:Thing", "https://example.org/a/../b",
    "https://relative-iri.invalid/x", "https://x/%zz", "http://a:b:c/", 5, 1.5, 0, True, False, None,
    {"@value": "x", "@language": "nl_BE"}, {"@value": 5}, {"@id": "stad-kortrijk"}, {"@list": ["x"]}, {"@set": ["x"]},
    {"@context": {"titel": "http://purl.org/dc/terms/title"}, "titel": "x"},
    {"@type": "Adresvoorstelling", "postcode": 8500, "straatnaam": 5},
]  # fmt: skip

OPS = ("drop", "set", "set", "add", "extra", "retype", "context")
REFERENCE_TERMS = {t for t, d in load_context(HUB_CONTEXT_IRI).items() if isinstance(d, dict) and d.get("@type") == "@id"}


def positions(node: Any, out: list[tuple[Any, Any]] | None = None) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in the document, depth first."""
    out = [] if out is None else out
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "@context":
                out.append((node, key))
                positions(value, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((node, i))
            positions(value, out)
    return out


def objects(node: Any, out: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    out = [] if out is None else out
    if isinstance(node, dict):
        out.append(node)
        for key, value in node.items():
            if key != "@context":
                objects(value, out)
    elif isinstance(node, list):
        for value in node:
            objects(value, out)
    return out


def mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    for _ in range(data.draw(st.integers(0, 4), label="mutations")):
        op = data.draw(st.sampled_from(OPS), label="op")
        pick = data.draw(st.integers(0, 10_000), label="where")
        exotic = data.draw(st.integers(0, 9), label="exotic?") == 9
        value = copy.deepcopy(data.draw(st.sampled_from(EXOTIC if exotic else VALUES), label="value"))
        if op in ("drop", "set", "extra"):
            keywords_too = data.draw(st.integers(0, 4), label="@id/@type too?") == 4
            spots = [(c, k) for c, k in positions(doc) if keywords_too or not str(k).startswith("@")]
            if not spots:
                continue
            container, key = spots[pick % len(spots)]
            if key in REFERENCE_TERMS and not exotic and data.draw(st.integers(0, 4), label="plain text?") != 4:
                value = copy.deepcopy(data.draw(st.sampled_from(REF_VALUES), label="reference"))
            if op == "drop":
                del container[key]
            elif op == "set":
                container[key] = value
            else:  # an extra value next to the existing one(s)
                old = container[key]
                container[key] = (old if isinstance(old, list) else [old]) + [value]
        elif op in ("add", "retype"):
            nodes = [o for o in objects(doc) if "@value" not in o]
            node = nodes[pick % len(nodes)]
            if op == "add":
                node[data.draw(st.sampled_from(KEYS), label="key")] = value
            else:
                node["@type"] = data.draw(st.sampled_from(CLASS_TERMS), label="class")
        elif data.draw(st.integers(0, 9), label="context?") == 9:  # rarely: another, none, inline, unknown
            doc["@context"] = [AP_CONTEXT_IRI, None, {"x": "https://example.org/"}, "https://example.org/c"][(pick // 4) % 4]
    return doc


TALLY: Counter[str] = Counter()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def _compare_one(data: st.DataObject) -> None:
    base = pool()[data.draw(st.integers(0, len(pool()) - 1), label="base")]
    doc = mutate(copy.deepcopy(base), data)
    outcome = assert_agree(doc)
    TALLY["examples"] += 1
    if outcome[0] == "result":
        TALLY["conforms" if outcome[1][0] else "violates"] += 1
        TALLY.update(f"component:{row[3]}" for row in outcome[1][1])
    else:
        TALLY["refused"] += 1
    TALLY["fast path" if expander().expand(doc) is not None else "reference parser"] += 1


def test_generated_meldingen_agree() -> None:
    TALLY.clear()
    _compare_one()
    # the run compared what it says it compared, and the mix is meaningful
    assert TALLY["examples"] >= EXAMPLES, TALLY
    n = TALLY["examples"]
    assert TALLY["conforms"] >= 0.05 * n, TALLY
    assert TALLY["violates"] >= 0.25 * n, TALLY
    assert TALLY["refused"] >= 0.01 * n, TALLY
    assert TALLY["fast path"] >= 0.25 * n and TALLY["reference parser"] >= 0.05 * n, TALLY
    for component in ("MinCount", "MaxCount", "Datatype", "Pattern", "In", "Class", "NodeKind", "Equals",
                      "LanguageIn", "MinLength"):  # fmt: skip
        assert TALLY[f"component:{component}ConstraintComponent"] > 0, (component, TALLY)
    _, compiled = validators()
    assert compiled.stats["pyshacl"] == 0  # the hub's shapes never need the fallback
    print(f"\ncompared {n} generated meldingen:", dict(sorted(TALLY.items())))
