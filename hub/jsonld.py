"""JSON-LD → RDF for meldingen, with the contexts served from local files only.

Why a custom loader: a message names its context by IRI (the hub's
``https://w3id.org/meldingen-hub/context/melding-v1.jsonld``, or an upstream OSLO context).
Fetching it at run time would make validation depend on the network and let a producer make
the hub fetch arbitrary URLs. So the hub knows a fixed set of context IRIs, serves them from
``schemas/context/``, and refuses every other remote context.

Neither parser takes a document loader hook (rdflib 7 fetches remote contexts itself;
pyoxigraph refuses them), so the contexts are *inlined* before parsing: every string
``@context`` (and ``@import``) is replaced by the local document's ``@context`` value. After
inlining no IRI is left for a parser to fetch.

The parser is pyoxigraph (JSON-LD 1.1; about twice as fast as rdflib's on a melding, see
schemas/README.md); its triples are copied into an rdflib Graph because pyshacl validates rdflib
graphs. rdflib's parser stays available for comparison (``parser="rdflib"``). Named graphs, if a
producer sends any, are merged into the one graph: a message carries one melding.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import warnings
from functools import lru_cache
from typing import Any, Literal as TLiteral

import pyoxigraph as ox
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import RDF, XSD

from hub.errors import NotJson, NotJsonLd, NotUtf8
from hub.paths import context_dir

HUB_CONTEXT_IRI = "https://w3id.org/meldingen-hub/context/melding-v1.jsonld"
"""The hub's context: the value of every melding's ``@context`` and of the ``schema`` header."""

AP_CONTEXT_IRI = "https://data.vlaanderen.be/context/issue-tracking-voor-burgers-en-organisaties.jsonld"
VM_CONTEXT_IRI = (
    "https://data.vlaanderen.be/doc/implementatiemodel/verkeersmeldingen/erkendestandaard/"
    "2026-02-24/context/verkeersmeldingen_nl.jsonld"
)

KNOWN_CONTEXTS: dict[str, str] = {
    HUB_CONTEXT_IRI: "melding-v1.jsonld",
    AP_CONTEXT_IRI: "upstream/issue-tracking-voor-burgers-en-organisaties.jsonld",
    VM_CONTEXT_IRI: "upstream/verkeersmeldingen_nl.jsonld",
}
"""Context IRI → file under ``schemas/context/``. Nothing else is ever resolved."""

MELDING_CLASS = URIRef("https://data.vlaanderen.be/ns/melding#Melding")

# Relative IRIs are resolved against this base so that they become visible (and are then
# refused) instead of being silently dropped (pyoxigraph) or resolved against the working
# directory (rdflib).
_RELATIVE_BASE = "https://relative-iri.invalid/"

Parser = TLiteral["oxigraph", "rdflib"]


class _DropIllTypedLiteralWarnings(logging.Filter):
    """rdflib logs a traceback for every ill-typed literal (e.g. a bad xsd:dateTime).

    The SHACL datatype check reports those properly, so the traceback is noise in the CLI and logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to convert Literal lexical form")


logging.getLogger("rdflib.term").addFilter(_DropIllTypedLiteralWarnings())


# --------------------------------------------------------------------------------------------
# document loader
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _context_text(iri: str) -> str:
    name = KNOWN_CONTEXTS.get(iri)
    if name is None:
        raise NotJsonLd(
            f"unknown remote context {iri!r}: the hub resolves only its own context "
            f"{HUB_CONTEXT_IRI!r} (and the OSLO issue-tracking/verkeersmeldingen contexts) and never fetches"
        )
    return (context_dir() / name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _context_value(iri: str) -> Any:
    document = json.loads(_context_text(iri))
    if not isinstance(document, dict) or "@context" not in document:
        raise NotJsonLd(f"context document for {iri!r} has no @context")
    return _inline_context(document["@context"])


def load_context(iri: str) -> Any:
    """The ``@context`` value of a known context document (a fresh copy); NotJsonLd otherwise."""
    return copy.deepcopy(_context_value(iri))


def _inline_context(value: Any) -> Any:
    """A context value with every remote reference (string, ``@import``) replaced by its content."""
    if isinstance(value, str):
        return _context_value(value)
    if isinstance(value, list):
        return [_inline_context(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        imported = value.get("@import")
        if imported is not None:
            if not isinstance(imported, str):
                raise NotJsonLd("@import must be an IRI")
            base = _context_value(imported)
            if not isinstance(base, dict):
                raise NotJsonLd(f"@import of {imported!r}: not a single context object")
            out.update(base)
        for key, term in value.items():
            if key == "@import":
                continue
            if isinstance(term, dict) and "@context" in term:  # scoped context in a term definition
                term = {**term, "@context": _inline_context(term["@context"])}
            out[key] = term
        return out
    return value  # None (reset) or invalid: left for the parser to judge


def inline_contexts(node: Any) -> Any:
    """A copy of a JSON-LD document in which every ``@context`` is self-contained (no IRIs to fetch)."""
    if isinstance(node, dict):
        return {
            key: _inline_context(value) if key == "@context" else inline_contexts(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [inline_contexts(v) for v in node]
    return node


# --------------------------------------------------------------------------------------------
# decoding and parsing
# --------------------------------------------------------------------------------------------
def decode_json(raw: bytes) -> Any:
    """Kafka value bytes → JSON, with the hub's error classes for the two ways this fails."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotUtf8(f"the message is not UTF-8 (byte {e.start})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise NotJson(f"the message is not JSON: {e.msg} (line {e.lineno}, column {e.colno})") from e


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=8192)
def _uri(value: str) -> URIRef:
    """Predicates, classes and codelist IRIs repeat in every message: build each URIRef once."""
    return URIRef(value)


def _ox_term(term: Any) -> Any:
    if isinstance(term, ox.NamedNode):
        return _uri(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if term.language:
        return Literal(term.value, lang=term.language)
    datatype = term.datatype.value
    if datatype == str(XSD.string):  # rdflib's plain literal; keeps graphs comparable
        return Literal(term.value)
    return Literal(term.value, datatype=_uri(datatype))


def _parse_oxigraph(text: str) -> Graph:
    graph = Graph()
    for quad in ox.parse(text, format=ox.RdfFormat.JSON_LD, base_iri=_RELATIVE_BASE):
        graph.add((_ox_term(quad.subject), _ox_term(quad.predicate), _ox_term(quad.object)))
    return graph


def _parse_rdflib(text: str) -> Graph:
    with warnings.catch_warnings():  # rdflib 7.6's own parser uses its deprecated ConjunctiveGraph
        warnings.simplefilter("ignore", DeprecationWarning)
        return Graph().parse(data=text, format="json-ld", base=_RELATIVE_BASE)


def to_graph(doc: Any, *, parser: Parser = "oxigraph") -> Graph:
    """The RDF graph of one JSON-LD melding.

    Raises NotJsonLd with a one-line reason when ``doc`` is not an object, has no ``@context``,
    names a context the hub does not know, does not parse, uses relative IRIs, or does not
    contain exactly one node typed Melding.
    """
    if not isinstance(doc, dict):
        raise NotJsonLd(f"the message is a JSON {type(doc).__name__}, not a JSON-LD object")
    if "@context" not in doc:
        raise NotJsonLd(f"no @context: plain JSON, not JSON-LD (expected \"@context\": {HUB_CONTEXT_IRI!r})")
    try:
        if doc["@context"] == HUB_CONTEXT_IRI:
            _check_references(doc)
        text = json.dumps(inline_contexts(doc), ensure_ascii=False)
    except RecursionError:
        raise NotJsonLd("the document is nested too deeply") from None
    try:
        graph = _parse_oxigraph(text) if parser == "oxigraph" else _parse_rdflib(text)
    except Exception as e:  # both parsers raise assorted exception types on bad JSON-LD
        raise NotJsonLd(f"JSON-LD parse error: {_one_line(e)}") from e
    _refuse_relative_iris(graph)
    meldingen = set(graph.subjects(RDF.type, MELDING_CLASS))
    if not meldingen:
        raise NotJsonLd(f"no node with \"@type\": \"Melding\" ({MELDING_CLASS}) in the document")
    if len(meldingen) > 1:
        raise NotJsonLd(f"{len(meldingen)} nodes typed Melding: one message carries exactly one melding")
    return graph


def _refuse_relative_iris(graph: Graph) -> None:
    """Relative IRIs (resolved against the sentinel base) are refused, naming the property, not the value."""
    for s, p, o in graph:
        if isinstance(s, URIRef) and s.startswith(_RELATIVE_BASE):
            raise NotJsonLd("relative IRI as @id: use absolute IRIs")
        if isinstance(o, URIRef) and o.startswith(_RELATIVE_BASE):
            raise NotJsonLd(f"relative IRI as value of <{p}>: use absolute IRIs")


# A value the parsers accept as an IRI: a scheme, then no spaces or characters IRIs exclude.
_ABSOLUTE_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*$")


def _is_reference(value: str) -> bool:
    return value.startswith("_:") or bool(_ABSOLUTE_IRI.match(value))


@lru_cache(maxsize=1)
def _reference_terms() -> frozenset[str]:
    """Terms of the hub context whose values are IRIs (``"@type": "@id"``)."""
    ctx = _context_value(HUB_CONTEXT_IRI)
    return frozenset(t for t, d in ctx.items() if isinstance(d, dict) and d.get("@type") == "@id")


def _check_references(node: Any) -> None:
    """Refuse references that are not absolute IRIs before parsing.

    Why: JSON-LD drops an ill-formed IRI (``"melder": "An Vermeulen"``) without an error, so the
    triple would be missing from the graph SHACL validates while the JSON the hub forwards still
    carries it. The reason names the field only; the value may be personal data.
    """
    if isinstance(node, list):
        for item in node:
            _check_references(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "@context":
            continue
        if key == "@id" and isinstance(value, str) and not _is_reference(value):
            raise NotJsonLd("an @id is not an absolute IRI (use https://…, urn:uuid:… or similar)")
        if key in _reference_terms():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and not _is_reference(item):
                    raise NotJsonLd(f"{key}: not an absolute IRI (a reference looks like https://… or urn:…)")
        if isinstance(value, (dict, list)):
            _check_references(value)


def melding_node(graph: Graph) -> URIRef | BNode:
    """The one Melding node of a graph made by :func:`to_graph`."""
    node = next(graph.subjects(RDF.type, MELDING_CLASS))
    assert isinstance(node, (URIRef, BNode))
    return node
