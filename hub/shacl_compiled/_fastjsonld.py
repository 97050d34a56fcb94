"""JSON-LD → triples for meldingen in the hub's own context, without a JSON-LD processor.

Why: parsing is most of the cost of validating a melding once SHACL is compiled (pyoxigraph
processes the ~80-term context again for every message). Every melding the hub's adapters write
uses one fixed context and a handful of JSON shapes, and for those the JSON-LD → RDF mapping is a
table lookup per key.

Exactness: this expander handles a deliberately small subset of JSON-LD 1.1 and returns ``None``
for anything else (another context, a nested ``@context``, a key that is not a term of the hub
context, a compact IRI value, numbers, booleans, ``null``, ``@graph``/``@list``/``@reverse``, odd
language tags, IRIs pyoxigraph would reject, a reference :func:`hub.jsonld.to_graph` would refuse,
not exactly one Melding …). The caller then takes the reference path, :func:`hub.jsonld.to_graph`,
which also raises the reference's :class:`hub.errors.NotJsonLd` reasons. Within the subset the
triples equal ``to_graph``'s (up to blank-node labels): ``tests/test_shacl_differential.py``
checks that on thousands of generated and mutated meldingen.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pyoxigraph as ox

from hub import jsonld
from hub.shacl_compiled._terms import RDF_LANGSTRING, RDF_TYPE, XSD_STRING, Blank, DataGraph, Lit, typed_lit

MELDING = str(jsonld.MELDING_CLASS)

# Language tags that are surely well-formed BCP 47 (pyoxigraph lower-cases tags and drops
# values with ill-formed ones): a 2-3 letter language, optionally a 2-letter region.
_SIMPLE_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{2})?$")
_BLANK_LABEL = re.compile(r"^_:[A-Za-z0-9]+$")
_ABSOLUTE_IRI = jsonld._ABSOLUTE_IRI  # the reference's own test for "is a reference"
_RELATIVE_BASE = jsonld._RELATIVE_BASE
_MAX_DEPTH = 32

# kinds of term definitions
_REF, _PLAIN, _LANG, _TYPED = range(4)


class _Outside(Exception):
    """The document is outside the subset handled here: use the JSON-LD processor."""


@lru_cache(maxsize=8192)
def _valid_iri(value: str) -> bool:
    try:
        ox.NamedNode(value)
    except Exception:  # noqa: BLE001 - ValueError, or a surrogate the Rust side refuses
        return False
    return True


def _check_text(value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Outside from None


class HubJsonLd:
    """Expands compact JSON-LD meldingen written with :data:`hub.jsonld.HUB_CONTEXT_IRI`."""

    def __init__(self, context: Any | None = None) -> None:
        ctx = context if context is not None else jsonld.load_context(jsonld.HUB_CONTEXT_IRI)
        self.enabled = isinstance(ctx, dict) and not any(k.startswith("@") for k in ctx)
        self.terms: frozenset[str] = frozenset(ctx) if isinstance(ctx, dict) else frozenset()
        self.classes: dict[str, str] = {}
        self.props: dict[str, tuple[str, int, str | None]] = {}
        # categories, types and codes repeat in every melding: each reference is judged once
        self._reference_ok = lru_cache(maxsize=8192)(self._judge_reference)
        if not self.enabled:
            return
        prefixes = {k: v for k, v in ctx.items() if isinstance(v, str) and v.endswith(("#", "/"))}

        def expand(value: str) -> str | None:
            prefix, sep, rest = value.partition(":")
            if sep and prefix in prefixes and not rest.startswith("//"):
                return prefixes[prefix] + rest
            if sep and prefix not in ctx and _ABSOLUTE_IRI.match(value):
                return value
            return None

        for term, definition in ctx.items():
            if isinstance(definition, str):
                iri = expand(definition)
                if iri is not None:
                    self.classes[term] = iri
            elif isinstance(definition, dict):
                kind = self._kind(definition, expand)
                if kind is not None:
                    self.props[term] = kind
        self.prefixes = prefixes
        self._expand = expand

    @staticmethod
    def _kind(definition: dict[str, Any], expand: Any) -> tuple[str, int, str | None] | None:
        if set(definition) - {"@id", "@type", "@language", "@container"}:
            return None
        if definition.get("@container", "@set") != "@set":
            return None
        pid = definition.get("@id")
        pred = expand(pid) if isinstance(pid, str) else None
        if pred is None:
            return None
        if "@type" in definition and "@language" in definition:
            return None
        typ = definition.get("@type")
        if typ == "@id":
            return pred, _REF, None
        if typ is not None:
            dt = expand(typ) if isinstance(typ, str) and not typ.startswith("@") else None
            return (pred, _TYPED, dt) if dt is not None else None
        if "@language" in definition:
            lang = definition["@language"]
            if not isinstance(lang, str) or not _SIMPLE_LANG.match(lang):
                return None
            return pred, _LANG, lang.lower()
        return pred, _PLAIN, None

    # -- public ---------------------------------------------------------------------------
    def expand(self, doc: Any) -> DataGraph | None:
        """The data graph of a melding, or None when the document is outside the fast subset."""
        if not self.enabled or type(doc) is not dict or doc.get("@context") != jsonld.HUB_CONTEXT_IRI:
            return None
        state = _State()
        try:
            self._node(doc, state, 0)
        except (_Outside, RecursionError):
            return None
        if len(state.meldingen) != 1:
            return None  # to_graph raises NotJsonLd with its reason
        return state.graph

    # -- expansion --------------------------------------------------------------------------
    def _ref(self, value: Any, state: _State) -> Any:
        if type(value) is not str:
            raise _Outside
        if value.startswith("_:"):
            if not _BLANK_LABEL.match(value):
                raise _Outside
            node = state.labels.get(value)
            if node is None:
                node = state.labels[value] = Blank(f"b{len(state.labels)}l")
            return node
        return self._iri(value)

    def _iri(self, value: str) -> str:
        if not self._reference_ok(value):
            raise _Outside
        return value

    def _judge_reference(self, value: str) -> bool:
        """An absolute IRI this expander may pass through as it is (else the processor decides)."""
        return not (
            not _ABSOLUTE_IRI.match(value)
            or value.partition(":")[0] in self.terms  # a compact IRI: the processor expands it
            or "/." in value  # dot segments: leave resolution to the processor
            or value.startswith(_RELATIVE_BASE)
            or not _valid_iri(value)
        )

    def _type(self, value: Any) -> str:
        if type(value) is not str:
            raise _Outside
        iri = self.classes.get(value)
        return iri if iri is not None else self._iri(value)

    def _node(self, obj: dict[str, Any], state: _State, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise _Outside
        graph = state.graph
        subject = self._ref(obj["@id"], state) if "@id" in obj else state.blank()
        props = self.props
        for key, value in obj.items():
            if key == "@id":
                continue
            if key == "@context":
                if depth:
                    raise _Outside
                continue
            if key == "@type":
                for t in value if type(value) is list else (value,):
                    iri = self._type(t)
                    graph.add(subject, RDF_TYPE, iri)
                    if iri == MELDING:
                        state.meldingen.add(subject)
                continue
            definition = props.get(key)
            if definition is None:
                raise _Outside
            pred, kind, extra = definition
            for item in value if type(value) is list else (value,):
                t = type(item)
                if t is str:
                    if kind == _REF:
                        o = self._ref(item, state)
                    else:
                        _check_text(item)
                        if kind == _PLAIN:
                            o = Lit(item, None, None, True)
                        elif kind == _LANG:
                            o = Lit(item, extra, None, True)
                        else:
                            o = typed_lit(item, extra)  # type: ignore[arg-type]
                elif t is dict:
                    o = self._value(item) if "@value" in item else self._node(item, state, depth + 1)
                else:  # number, boolean, null, nested list: the processor's rules are subtler
                    raise _Outside
                graph.add(subject, pred, o)
        return subject

    def _value(self, obj: dict[str, Any]) -> Lit:
        value = obj["@value"]
        if type(value) is not str or len(obj) > 2:
            raise _Outside
        _check_text(value)
        if len(obj) == 1:
            return Lit(value, None, None, True)
        if "@language" in obj:
            lang = obj["@language"]
            if type(lang) is not str or not _SIMPLE_LANG.match(lang):
                raise _Outside
            return Lit(value, lang.lower(), None, True)
        if "@type" in obj:
            typ = obj["@type"]
            if type(typ) is not str or typ.startswith("@"):
                raise _Outside
            dt = self._expand(typ)
            if dt is None or dt == RDF_LANGSTRING or "/." in dt or not _valid_iri(dt):
                raise _Outside
            return Lit(value, None, None, True) if dt == XSD_STRING else typed_lit(value, dt)
        raise _Outside


class _State:
    __slots__ = ("graph", "labels", "meldingen", "n")

    def __init__(self) -> None:
        self.graph = DataGraph()
        self.labels: dict[str, Blank] = {}
        self.meldingen: set[Any] = set()
        self.n = 0

    def blank(self) -> Blank:
        self.n += 1
        return Blank(f"b{self.n}")
