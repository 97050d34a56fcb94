"""The compiled validator's view of a data graph: plain Python terms in dicts.

Terms: an IRI is a ``str``; a blank node is a :class:`Blank`; a literal is a :class:`Lit`.
Literals carry what pyshacl derives from rdflib's ``Literal`` (the lexical form *after* rdflib's
normalisation, whether it is ill-typed): typed literals are built through rdflib itself
(:func:`typed_lit`), so a datatype check here agrees with the reference by construction.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple, Union

import rdflib
import rdflib.term as _rdflib_term
from rdflib import BNode, Graph, Literal, URIRef

RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
RDF_LANGSTRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
RDFS_SUBCLASSOF = "http://www.w3.org/2000/01/rdf-schema#subClassOf"
RDFS_LITERAL = "http://www.w3.org/2000/01/rdf-schema#Literal"
RDFS_DATATYPE = "http://www.w3.org/2000/01/rdf-schema#Datatype"
RDFS_RESOURCE = "http://www.w3.org/2000/01/rdf-schema#Resource"
XSD = "http://www.w3.org/2001/XMLSchema#"
XSD_STRING = XSD + "string"


class Blank:
    """A blank node of one data graph (identity is the node; the label is for reports only)."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"_:{self.label}"


class Lit(NamedTuple):
    """A literal. ``lang`` is lower-cased (rdflib compares tags case-insensitively, pyshacl
    lower-cases them); ``dt`` is None for plain and language-tagged literals (as in rdflib);
    ``ok`` is pyshacl's verdict "well-typed for its own datatype" (always True when ``dt`` is None)."""

    lex: str
    lang: str | None
    dt: str | None
    ok: bool


Term = Union[str, Blank, Lit]


def _actual_datatype_ok(value: Any, datatype: str) -> bool:
    """pyshacl's ``DatatypeConstraintComponent._assert_actual_datatype`` (0.40), for a literal's own datatype."""
    if datatype in (XSD_STRING, RDF_LANGSTRING):
        return isinstance(value, (str, bytes))
    if datatype == XSD + "integer":
        return isinstance(value, int)
    if datatype == XSD + "float":
        return isinstance(value, float)
    if datatype == XSD + "decimal":
        return isinstance(value, Decimal)
    if datatype == XSD + "boolean":
        return isinstance(value, bool)
    if datatype == XSD + "date":
        return isinstance(value, date)
    if datatype == XSD + "time":
        return isinstance(value, time)
    if datatype == XSD + "dateTime":
        return isinstance(value, datetime)
    return True


def lit_from_rdflib(lit: Literal) -> Lit:
    lang = lit.language
    if lang:
        return Lit(str(lit), lang.lower(), None, True)
    datatype = lit.datatype
    if datatype is None:
        return Lit(str(lit), None, None, True)
    dt = str(datatype)
    ok = lit.ill_typed is not True and _actual_datatype_ok(lit.value, dt)
    return Lit(str(lit), None, dt, ok)


@lru_cache(maxsize=16384)
def typed_lit(lex: str, datatype: str) -> Lit:
    """A typed literal exactly as :func:`hub.jsonld.to_graph` makes it (rdflib normalises the
    lexical form of known datatypes and flags ill-typed ones)."""
    if datatype == XSD_STRING:  # to_graph turns xsd:string into rdflib's plain literal
        return Lit(lex, None, None, True)
    if datatype == XSD_DATETIME and _DATETIME_AS_RDFLIB and _rdflib_still_reads_datetime_so():
        try:
            value = datetime.fromisoformat(lex)
        except Exception:  # noqa: BLE001 - as rdflib's own conversion catches
            pass  # ill-typed: rdflib's verdict (and its warning), below
        else:
            return Lit(value.isoformat(), None, datatype, True)
    elif URIRef(datatype) not in _rdflib_term._toPythonMapping and datatype not in _RDFLIB_REWRITTEN:
        # a datatype rdflib does not know (geo:wktLiteral): no value, no normalisation, not ill-typed
        return Lit(lex, None, datatype, _actual_datatype_ok(None, datatype))
    return lit_from_rdflib(Literal(lex, datatype=URIRef(datatype)))


XSD_DATETIME = XSD + "dateTime"
_RDFLIB_REWRITTEN = frozenset({XSD + "normalizedString", XSD + "token"})
"""Datatypes whose lexical form rdflib rewrites whether or not it maps them to a value."""
_DATETIME_REF = URIRef(XSD_DATETIME)


def _rdflib_still_reads_datetime_so() -> bool:
    """The rdflib settings the shortcut relies on, as they are now (at import and at each use): they
    are process-wide and can change later (pyshacl turns normalisation off while it validates; ``rdflib.term.bind`` can
    replace the converter)."""
    return (
        rdflib.NORMALIZE_LITERALS is True
        and _rdflib_term._toPythonMapping.get(_DATETIME_REF) == datetime.fromisoformat
        and _DATETIME_REF not in _rdflib_term._check_well_formed_types
    )


def _rdflib_reads_datetime_as_fromisoformat() -> bool:
    """Whether this rdflib turns an xsd:dateTime into ``datetime.fromisoformat(lex)`` and writes it
    back as ``value.isoformat()`` with no well-formedness check of its own (rdflib 7 on Python
    3.11+). Only then may :func:`typed_lit` skip constructing rdflib's ``Literal`` (~10 µs, a third
    of expanding a melding): dates are the one typed value that differs in every melding."""
    if not hasattr(_rdflib_term, "_check_well_formed_types") or not isinstance(
        getattr(_rdflib_term, "_toPythonMapping", None), dict
    ):
        return False
    if not _rdflib_still_reads_datetime_so():
        return False
    samples = ("2026-11-23T01:15:00+00:00", "2026-11-23T01:15:00.5Z", "2026-11-23 01:15:00", "0001-01-01T00:00:00")
    for lex in samples:
        lit = Literal(lex, datatype=_DATETIME_REF)
        if str(lit) != datetime.fromisoformat(lex).isoformat() or lit.ill_typed:
            return False
    return True


_DATETIME_AS_RDFLIB = _rdflib_reads_datetime_as_fromisoformat()


def term_text(term: Term) -> str:
    """What the reference report shows for a term (``hub.validation._term_text``)."""
    if isinstance(term, Lit):
        return term.lex
    if isinstance(term, Blank):
        return f"_:{term.label}"
    return term


class DataGraph:
    """Triples indexed by subject then predicate; objects kept in insertion order, no duplicates."""

    __slots__ = ("out", "_inc", "has_subclass_of", "origin", "typed")

    def __init__(self) -> None:
        self.out: dict[Any, dict[str, list[Any]]] = {}
        self.typed: dict[Any, list[Any]] = {}
        """rdf:type object → its subjects: a shape's class target without a scan of every node."""
        self._inc: dict[Any, list[tuple[Any, str]]] | None = None
        self.has_subclass_of = False
        self.origin: dict[Blank, BNode] | None = None  # blank nodes of the rdflib graph it came from

    def add(self, s: Any, p: str, o: Any) -> None:
        props = self.out.get(s)
        if props is None:
            self.out[s] = {p: [o]}
        else:
            objs = props.get(p)
            if objs is None:
                props[p] = [o]
            elif o not in objs:
                objs.append(o)
            else:
                return
        if p == RDF_TYPE:
            self.typed.setdefault(o, []).append(s)
        elif p == RDFS_SUBCLASSOF:
            self.has_subclass_of = True
        self._inc = None

    def objects(self, s: Any, p: str) -> list[Any]:
        props = self.out.get(s)
        if props is None:
            return []
        return props.get(p) or []

    def incoming(self, o: Any) -> list[tuple[Any, str]]:
        """(subject, predicate) pairs pointing at ``o``."""
        if self._inc is None:
            inc: dict[Any, list[tuple[Any, str]]] = {}
            for s, props in self.out.items():
                for p, objs in props.items():
                    for x in objs:
                        inc.setdefault(x, []).append((s, p))
            self._inc = inc
        return self._inc.get(o) or []

    def subjects(self, p: str, o: Any) -> list[Any]:
        return [s for s, q in self.incoming(o) if q == p]

    def subjects_with(self, p: str) -> list[Any]:
        return [s for s, props in self.out.items() if p in props]

    def objects_of(self, p: str) -> list[Any]:
        out: dict[Any, None] = {}
        for props in self.out.values():
            for o in props.get(p) or ():
                out[o] = None
        return list(out)

    def instances_of(self, cls: str) -> list[Any]:
        """SHACL instances: rdf:type ``cls`` or a subclass of it (rdfs:subClassOf* in the data)."""
        classes = self.subclasses(cls)
        return [s for s, props in self.out.items() if any(t in classes for t in props.get(RDF_TYPE) or ())]

    def subclasses(self, cls: str) -> set[Any]:
        found = {cls}
        if not self.has_subclass_of:
            return found
        todo = [cls]
        while todo:
            c = todo.pop()
            for s in self.subjects(RDFS_SUBCLASSOF, c):
                if s not in found:
                    found.add(s)
                    todo.append(s)
        return found

    def is_instance(self, node: Any, cls: str) -> bool:
        """pyshacl's class check: some rdf:type of ``node`` is ``cls`` or has it among its superclasses."""
        types = self.objects(node, RDF_TYPE)
        if cls in types:
            return True
        if not self.has_subclass_of:
            return False
        for t in types:
            seen = {t}
            todo = [t]
            while todo:
                c = todo.pop()
                for sup in self.objects(c, RDFS_SUBCLASSOF):
                    if sup == cls:
                        return True
                    if sup not in seen:
                        seen.add(sup)
                        todo.append(sup)
        return False

    def __len__(self) -> int:
        return sum(len(objs) for props in self.out.values() for objs in props.values())

    def triples(self) -> list[tuple[Any, str, Any]]:
        return [(s, p, o) for s, props in self.out.items() for p, objs in props.items() for o in objs]

    @classmethod
    def from_rdflib(cls, graph: Graph) -> DataGraph:
        data = cls()
        blanks: dict[BNode, Blank] = {}

        def conv(t: Any) -> Any:
            if isinstance(t, URIRef):
                return str(t)
            if isinstance(t, Literal):
                return lit_from_rdflib(t)
            if isinstance(t, BNode):
                b = blanks.get(t)
                if b is None:
                    b = blanks[t] = Blank(str(t))
                return b
            return str(t)

        for s, p, o in graph:
            data.add(conv(s), str(p), conv(o))
        data.origin = {b: n for n, b in blanks.items()}
        return data


def term_from_shapes(t: Any) -> Any:
    """A shapes-graph term (sh:in member, sh:hasValue, sh:targetNode) in the data graph's terms.
    A blank node of the shapes graph matches nothing in the data (a fresh Blank)."""
    if isinstance(t, URIRef):
        return str(t)
    if isinstance(t, Literal):
        return lit_from_rdflib(t)
    return Blank(str(t))
