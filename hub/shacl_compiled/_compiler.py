"""SHACL shapes graph → Python closures over a :class:`DataGraph`, with pyshacl's semantics.

Each constraint component below mirrors pyshacl 0.40's implementation (value nodes, which
results it reports, with which value, focus node and result path), not just the SHACL spec:
the reference *is* pyshacl, and the differential test compares the two on generated data.

Whatever the compiler cannot reproduce exactly makes its shape *unsupported*: a parameter it
does not implement (sh:sparql, sh:qualifiedValueShape, value ranges, sh:lessThan, custom
constraint components, SPARQL targets, …), a malformed parameter pyshacl would refuse, a
reference cycle between shapes. A shape that references an unsupported shape is unsupported too.
The validator sends any data an unsupported shape applies to through pyshacl.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import RDF, RDFS

from hub.shacl_compiled._codegen import Inline, generate
from hub.shacl_compiled._terms import (
    RDF_LANGSTRING,
    RDF_TYPE,
    RDFS_DATATYPE,
    RDFS_LITERAL,
    RDFS_RESOURCE,
    XSD_STRING,
    DataGraph,
    Lit,
    term_from_shapes,
)

SH = "http://www.w3.org/ns/shacl#"
XSD = "http://www.w3.org/2001/XMLSchema#"
_SH = lambda name: URIRef(SH + name)  # noqa: E731

_WHOLE_INTEGERS = {
    URIRef(XSD + n)
    for n in (
        "integer", "nonNegativeInteger", "positiveInteger", "negativeInteger", "nonPositiveInteger",
        "long", "int", "short", "byte", "unsignedLong", "unsignedInt", "unsignedShort", "unsignedByte",
    )
}

# Shape-level predicates that do not validate anything by themselves.
_NON_VALIDATING = {
    _SH(n)
    for n in (
        "name", "description", "message", "severity", "deactivated", "order", "group", "defaultValue",
        "targetClass", "targetNode", "targetSubjectsOf", "targetObjectsOf", "path", "flags",
        "ignoredProperties",
    )
}
_TARGETS = ("targetClass", "targetNode", "targetSubjectsOf", "targetObjectsOf")
_SHAPE_REFS = ("node", "property", "not", "qualifiedValueShape")
_SHAPE_LISTS = ("and", "or", "xone")
_NODE_KINDS = {
    SH + "IRI": (False, True, False),  # (blank node, IRI, literal) accepted
    SH + "BlankNode": (True, False, False),
    SH + "Literal": (False, False, True),
    SH + "BlankNodeOrIRI": (True, True, False),
    SH + "BlankNodeOrLiteral": (True, False, True),
    SH + "IRIOrLiteral": (False, True, True),
}

Focus = Any
ValueNodes = list[tuple[Focus, Any]]  # (focus node, its value nodes)
Check = Callable[[DataGraph, ValueNodes, list["Res"]], None] | Inline
"""A constraint: written out inline by :mod:`hub.shacl_compiled._codegen`, or a closure it calls."""


class Unsupported(Exception):
    """This shape cannot be compiled faithfully; pyshacl validates what it applies to."""


class Res:
    """One validation result (pyshacl's sh:ValidationResult, before it becomes a Violation)."""

    __slots__ = ("shape", "component", "focus", "value", "path", "details")

    def __init__(
        self, shape: CShape, component: str, focus: Any, value: Any = None, path: str | None = None,
        details: list[Res] | None = None,
    ) -> None:
        self.shape = shape
        self.component = component
        self.focus = focus
        self.value = value
        self.path = path  # sh:resultPath set by the component itself (ClosedConstraintComponent)
        self.details = details

    def flatten(self) -> list[Res]:
        """This result and its sh:detail results (pyshacl puts both in the report)."""
        out = [self]
        for d in self.details or ():
            out.extend(d.flatten())
        return out


@dataclass(eq=False)
class CShape:
    node: Any
    is_property: bool
    severity: str = "Violation"
    message: str | None = None
    deactivated: bool = False
    predicate: str | None = None  # a property shape whose path is one IRI
    path_fn: Callable[[DataGraph, Any], list[Any]] | None = None
    checks: list[Check] = field(default_factory=list)
    targets: Callable[[DataGraph], list[Any]] | None = None
    label: str = ""
    evaluate: Callable[[DataGraph, list[Any], list[Res]], None] = field(default=lambda *_: None, repr=False)
    """Adds the results of the shape on ``focus_nodes`` to ``out``; generated once the shape's
    checks are known (:func:`hub.shacl_compiled._codegen.generate`)."""

    def conforms(self, data: DataGraph, node: Any) -> bool:
        out: list[Res] = []
        self.evaluate(data, [node], out)
        return not out


# ---------------------------------------------------------------------------------------------
# the shapes graph
# ---------------------------------------------------------------------------------------------
def shape_nodes(g: Graph) -> dict[Any, Any]:
    """pyshacl's set of shapes (``ShapesGraph._build_node_shape_cache``): node → its sh:path or None."""
    sh = _SH
    defined_node = set(g.subjects(RDF.type, sh("NodeShape")))
    defined_prop = set(g.subjects(RDF.type, sh("PropertyShape")))
    candidates: set[Any] = set()
    for t in _TARGETS:
        candidates.update(s for s, _ in g.subject_objects(sh(t)))
    candidates.update(s for s, _ in g.subject_objects(sh("property")))
    candidates.update(s for s, _ in g.subject_objects(sh("node")))
    for p in _SHAPE_REFS:
        candidates.update(o for _, o in g.subject_objects(sh(p)))
    for p in _SHAPE_LISTS:
        for _, lst in g.subject_objects(sh(p)):
            candidates.update(g.items(lst))
    shapes: dict[Any, Any] = {}
    for s in defined_node | defined_prop | candidates:
        paths = list(g.objects(s, sh("path")))
        if len(paths) > 1:
            raise Unsupported(f"shape {s} has {len(paths)} sh:path values")
        shapes[s] = paths[0] if paths else None
    return shapes


def has_targets(g: Graph, node: Any) -> bool:
    if any(g.value(node, _SH(t)) is not None for t in _TARGETS):
        return True
    return has_sparql_target(g, node) or _implicit_class(g, node)


def has_sparql_target(g: Graph, node: Any) -> bool:
    return g.value(node, _SH("target")) is not None


def _implicit_class(g: Graph, node: Any) -> bool:
    types = set(g.objects(node, RDF.type))
    classes = set(g.subjects(RDFS.subClassOf, RDFS.Class)) | {RDFS.Class}
    return bool(types & classes) and isinstance(node, URIRef)


def custom_parameters(g: Graph) -> set[Any]:
    """Parameter predicates of constraint components declared in the shapes graph."""
    params = set()
    for cc in g.subjects(RDF.type, _SH("ConstraintComponent")):
        for prm in g.objects(cc, _SH("parameter")):
            for p in g.objects(prm, _SH("path")):
                params.add(p)
    return params


class Compiler:
    def __init__(self, g: Graph) -> None:
        self.g = g
        self.shapes = shape_nodes(g)
        self.custom = custom_parameters(g)
        self.compiled: dict[Any, CShape] = {}
        self.failed: dict[Any, str] = {}
        self._busy: set[Any] = set()

    def shape(self, node: Any) -> CShape:
        if node in self.failed:
            raise Unsupported(self.failed[node])
        done = self.compiled.get(node)
        if done is not None:
            return done
        if node in self._busy:
            raise Unsupported(f"recursive shape reference through {node}")
        if node not in self.shapes:
            raise Unsupported(f"{node} is not a shape")
        self._busy.add(node)
        try:
            cs = self._compile(node)
        except Unsupported as e:
            self.failed[node] = str(e)
            raise
        finally:
            self._busy.discard(node)
        self.compiled[node] = cs
        return cs

    # -- one shape -------------------------------------------------------------------------
    def _compile(self, node: Any) -> CShape:
        g = self.g
        path = self.shapes[node]
        cs = CShape(node=node, is_property=path is not None, label=str(node))
        if has_sparql_target(g, node):
            raise Unsupported("sh:target (SPARQL-based target)")
        deact = list(g.objects(node, _SH("deactivated")))
        if len(deact) > 1 or (deact and not isinstance(deact[0], Literal)):
            raise Unsupported("malformed sh:deactivated")
        cs.deactivated = bool(deact[0].value) if deact else False
        severity = g.value(node, _SH("severity"))
        cs.severity = re.split(r"[#/]", str(severity))[-1] if severity is not None else "Violation"
        message = g.value(node, _SH("message"))
        cs.message = str(message) if message is not None else None
        if path is not None:
            if isinstance(path, URIRef):
                cs.predicate = str(path)
            else:
                cs.path_fn = _compile_path(g, path)
        predicates = set(g.predicates(node, None))
        for p in predicates:
            if p in self.custom:
                raise Unsupported(f"custom constraint component parameter {p}")
            if not str(p).startswith(SH) or p in _NON_VALIDATING:
                continue
            name = str(p)[len(SH):]
            if name == "ignoredProperties":
                continue
            builder = getattr(self, f"_c_{name}", None)
            if builder is None:
                raise Unsupported(f"sh:{name}")
            check = builder(cs, node)
            if isinstance(check, list):
                cs.checks.extend(check)
            elif check is not None:
                cs.checks.append(check)
        if (_SH("ignoredProperties") in predicates) and (_SH("closed") not in predicates):
            raise Unsupported("sh:ignoredProperties without sh:closed")
        if has_targets(g, node):
            cs.targets = compile_targets(g, node)
        cs.evaluate = generate(cs)
        return cs

    def _objects(self, node: Any, name: str) -> list[Any]:
        return list(self.g.objects(node, _SH(name)))

    def _one(self, node: Any, name: str) -> Any:
        values = self._objects(node, name)
        if len(values) != 1:
            raise Unsupported(f"sh:{name} needs exactly one value, has {len(values)}")
        return values[0]

    def _list(self, lst: Any) -> list[Any]:
        if lst == RDF.nil:
            return []
        if not isinstance(lst, BNode) or self.g.value(lst, RDF.first) is None:
            raise Unsupported("not a well-formed RDF list")
        return list(Collection(self.g, lst))

    # -- value type -----------------------------------------------------------------------------
    def _c_class(self, cs: CShape, node: Any) -> list[Check]:
        classes = self._objects(node, "class")
        if not all(isinstance(c, URIRef) for c in classes):
            raise Unsupported("sh:class with a non-IRI value")
        # one check per class, in order; the rdf:type lookup first, the subclass walk if needed
        return [
            Inline(
                "value",
                "ClassConstraintComponent",
                "isinstance(v, Lit) or ({C} not in (get(v) or ED).get(RDF_TYPE, E) and not data.is_instance(v, {C}))",
                {"C": str(c)},
            )
            for c in classes
        ]

    def _c_datatype(self, cs: CShape, node: Any) -> Check:
        rule_term = self._one(node, "datatype")
        if not isinstance(rule_term, URIRef):
            raise Unsupported("sh:datatype with a non-IRI value")
        rule = str(rule_term)
        # A literal of the rule's own datatype matches when well-typed; otherwise it matches only
        # through the rule's special cases (pyshacl's rdfs:Literal, rdfs:Datatype, plain literal
        # as xsd:string, language-tagged as rdf:langString). No special case: never.
        otherwise = {
            RDFS_LITERAL: "True",
            RDFS_DATATYPE: "v.dt is not None",
            XSD_STRING: "(v.dt is None and v.lang is None)",
            RDF_LANGSTRING: "v.lang is not None",
        }.get(rule, "False")
        return Inline(
            "value",
            "DatatypeConstraintComponent",
            f"not (isinstance(v, Lit) and (v.ok if v.dt == {{R}} else {otherwise}))",
            {"R": rule},
        )

    def _c_nodeKind(self, cs: CShape, node: Any) -> Check:
        kind = self._one(node, "nodeKind")
        accepted = _NODE_KINDS.get(str(kind)) if isinstance(kind, URIRef) else None
        if accepted is None:
            raise Unsupported(f"sh:nodeKind {kind}")
        blank_ok, iri_ok, lit_ok = accepted
        return Inline(
            "value",
            "NodeKindConstraintComponent",
            "not ({B} if isinstance(v, Blank) else {L} if isinstance(v, Lit) else {I})",
            {"B": blank_ok, "L": lit_ok, "I": iri_ok},
        )

    # -- cardinality ----------------------------------------------------------------------------
    def _count(self, cs: CShape, node: Any, name: str) -> int:
        if not cs.is_property:
            raise Unsupported(f"sh:{name} on a node shape")
        value = self._one(node, name)
        if not (isinstance(value, Literal) and value.datatype == URIRef(XSD + "integer")):
            raise Unsupported(f"sh:{name} is not an xsd:integer literal")
        n = int(value.value)
        if n < 0:
            raise Unsupported(f"negative sh:{name}")
        return n

    def _c_minCount(self, cs: CShape, node: Any) -> Check | None:
        n = self._count(cs, node, "minCount")
        if n == 0:
            return None
        return Inline("focus", "MinCountConstraintComponent", "len(vs) < {N}", {"N": n})

    def _c_maxCount(self, cs: CShape, node: Any) -> Check:
        n = self._count(cs, node, "maxCount")
        return Inline("focus", "MaxCountConstraintComponent", "len(vs) > {N}", {"N": n})

    # -- strings --------------------------------------------------------------------------------
    def _length(self, node: Any, name: str) -> int:
        value = self._one(node, name)
        if (
            not isinstance(value, Literal)
            or getattr(value, "ill_typed", False)
            or value.datatype not in _WHOLE_INTEGERS
            or not isinstance(value.value, int)
            or value.value < 0
        ):
            raise Unsupported(f"sh:{name} is not a non-negative integer literal")
        return int(value.value)

    def _c_minLength(self, cs: CShape, node: Any) -> Check | None:
        n = self._length(node, "minLength")
        if n == 0:
            return None
        return Inline(
            "value",
            "MinLengthConstraintComponent",
            "isinstance(v, Blank) or len(v.lex if isinstance(v, Lit) else v) < {N}",
            {"N": n},
        )

    def _c_maxLength(self, cs: CShape, node: Any) -> Check:
        n = self._length(node, "maxLength")
        return Inline(
            "value",
            "MaxLengthConstraintComponent",
            "isinstance(v, Blank) or len(v.lex if isinstance(v, Lit) else v) > {N}",
            {"N": n},
        )

    def _c_pattern(self, cs: CShape, node: Any) -> list[Check]:
        patterns = self._objects(node, "pattern")
        if not all(isinstance(p, Literal) for p in patterns):
            raise Unsupported("sh:pattern with a non-literal value")
        flags_found = self._objects(node, "flags")
        if len(flags_found) > 1:
            raise Unsupported("more than one sh:flags")
        re_flags = 0
        if flags_found:
            text = str(flags_found[0].value if isinstance(flags_found[0], Literal) else flags_found[0]).lower()
            re_flags |= re.I if "i" in text else 0
            re_flags |= re.M if "m" in text else 0
        try:
            matchers = [
                re.compile(str(p.value) if p.value is not None and len(p.value) > 1 else str(p), re_flags)
                for p in patterns
            ]
        except re.error as e:
            raise Unsupported(f"sh:pattern does not compile: {e}") from None
        return [
            Inline(
                "value",
                "PatternConstraintComponent",
                "isinstance(v, Blank) or not {S}(v.lex if isinstance(v, Lit) else v)",
                {"S": m.search},
            )
            for m in matchers
        ]

    def _c_languageIn(self, cs: CShape, node: Any) -> Check:
        items = self._list(self._one(node, "languageIn"))
        if not all(isinstance(i, Literal) and isinstance(i.value, str) for i in items):
            raise Unsupported("sh:languageIn members must be strings")
        wanted = {str(i.value).lower() for i in items}
        wildcard = "*" in wanted
        comp = "LanguageInConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for f, values in fvn:
                for v in values:
                    lang = v.lang if isinstance(v, Lit) else None
                    if not lang or not (wildcard or lang in wanted or lang.split("-")[0] in wanted):
                        out.append(Res(cs, comp, f, v))

        return check

    def _c_uniqueLang(self, cs: CShape, node: Any) -> Check | None:
        if not cs.is_property:
            raise Unsupported("sh:uniqueLang on a node shape")
        value = self._one(node, "uniqueLang")
        if not isinstance(value, Literal) or not isinstance(value.value, bool):
            raise Unsupported("sh:uniqueLang is not a boolean")
        if not value.value:
            return None
        comp = "UniqueLangConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for f, values in fvn:
                seen: set[str] = set()
                dup: dict[str, None] = {}
                for v in values:
                    if isinstance(v, Lit) and v.lang:
                        if v.lang in seen:
                            dup[v.lang] = None
                        seen.add(v.lang)
                for _ in dup:
                    out.append(Res(cs, comp, f))

        return check

    # -- values -----------------------------------------------------------------------------------
    def _c_in(self, cs: CShape, node: Any) -> Check:
        allowed = frozenset(term_from_shapes(t) for t in self._list(self._one(node, "in")))
        return Inline("value", "InConstraintComponent", "v not in {A}", {"A": allowed})

    def _c_hasValue(self, cs: CShape, node: Any) -> list[Check]:
        wanted = [term_from_shapes(t) for t in self._objects(node, "hasValue")]
        return [Inline("focus", "HasValueConstraintComponent", "{H} not in vs", {"H": hv}) for hv in wanted]

    def _pair(self, node: Any, name: str) -> list[str]:
        preds = self._objects(node, name)
        if not all(isinstance(p, URIRef) for p in preds):
            raise Unsupported(f"sh:{name} with a non-IRI value")
        return list(dict.fromkeys(str(p) for p in preds))

    def _c_equals(self, cs: CShape, node: Any) -> Check:
        preds = self._pair(node, "equals")
        comp = "EqualsConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for p in preds:
                for f, values in fvn:
                    others = data.objects(f, p)
                    for v in values:
                        if v not in others:
                            out.append(Res(cs, comp, f, v))
                    for o in others:
                        if o not in values:
                            out.append(Res(cs, comp, f, o))

        return check

    def _c_disjoint(self, cs: CShape, node: Any) -> Check:
        preds = self._pair(node, "disjoint")
        comp = "DisjointConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for p in preds:
                for f, values in fvn:
                    others = data.objects(f, p)
                    for v in values:
                        if v in others:
                            out.append(Res(cs, comp, f, v))

        return check

    def _c_closed(self, cs: CShape, node: Any) -> Check | None:
        value = self._one(node, "closed")
        if not isinstance(value, Literal):
            raise Unsupported("sh:closed is not a literal")
        ignored: set[str] = set()
        for lst in self._objects(node, "ignoredProperties"):
            ignored.update(str(i) for i in self._list(lst))
        allowed: set[str] = set()
        for ps in self._objects(node, "property"):
            path = self.shapes.get(ps)
            if path is None:
                raise Unsupported("sh:property value is not a property shape")
            if isinstance(path, URIRef):
                allowed.add(str(path))
        if not bool(value.value):
            return None
        allowed |= ignored
        comp = "ClosedConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for f, values in fvn:
                for v in values:
                    for p, objs in (data.out.get(v) or {}).items():
                        if p in allowed:
                            continue
                        for o in objs:
                            if p == RDF_TYPE and o == RDFS_RESOURCE:
                                continue
                            out.append(Res(cs, comp, f, o, path=p))

        return check

    # -- shapes in shapes ---------------------------------------------------------------------------
    def _c_property(self, cs: CShape, node: Any) -> Check:
        subs = []
        for ps in self._objects(node, "property"):
            sub = self.shape(ps)
            if not sub.is_property:
                raise Unsupported("sh:property value is not a property shape")
            subs.append(sub)
        # pyshacl validates one value node at a time: the same results as all at once
        return Inline("property", "PropertyConstraintComponent", shapes=tuple(subs))

    def _c_node(self, cs: CShape, node: Any) -> list[Check]:
        subs = []
        for ns in self._objects(node, "node"):
            sub = self.shape(ns)
            if sub.is_property:
                raise Unsupported("sh:node value is a property shape")
            subs.append(sub)
        block = (
            "for f, vs in fvn:\n"
            "    for v in vs:\n"
            "        nested = []\n"
            "        {S}(data, [v], nested)\n"
            "        if nested:\n"
            "            out.append(Res({ME}, {COMP}, f, v, details=nested))\n"
        )
        return [Inline("code", "NodeConstraintComponent", block, {"S": sub.evaluate}) for sub in subs]

    def _c_not(self, cs: CShape, node: Any) -> Check:
        subs = [self.shape(s) for s in self._objects(node, "not")]
        comp = "NotConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for sub in subs:
                for f, values in fvn:
                    for v in values:
                        if sub.conforms(data, v):
                            out.append(Res(cs, comp, f, v))

        return check

    def _shape_lists(self, node: Any, name: str) -> list[list[CShape]]:
        lists = []
        for lst in self._objects(node, name):
            members = self._list(lst)
            if not members:
                raise Unsupported(f"empty sh:{name} list")
            lists.append([self.shape(m) for m in members])
        return lists

    def _c_and(self, cs: CShape, node: Any) -> Check:
        lists = [list(dict.fromkeys(members)) for members in self._shape_lists(node, "and")]
        comp = "AndConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for members in lists:
                for f, values in fvn:
                    for v in values:
                        if not all([m.conforms(data, v) for m in members]):
                            out.append(Res(cs, comp, f, v))

        return check

    def _c_or(self, cs: CShape, node: Any) -> Check:
        lists = [list(dict.fromkeys(members)) for members in self._shape_lists(node, "or")]
        comp = "OrConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for members in lists:
                for f, values in fvn:
                    for v in values:
                        if not any([m.conforms(data, v) for m in members]):
                            out.append(Res(cs, comp, f, v))

        return check

    def _c_xone(self, cs: CShape, node: Any) -> Check:
        lists = self._shape_lists(node, "xone")  # pyshacl keeps duplicates in an sh:xone list
        comp = "XoneConstraintComponent"

        def check(data: DataGraph, fvn: ValueNodes, out: list[Res]) -> None:
            for members in lists:
                for f, values in fvn:
                    for v in values:
                        if sum(1 for m in members if m.conforms(data, v)) != 1:
                            out.append(Res(cs, comp, f, v))

        return check


# ---------------------------------------------------------------------------------------------
# targets and paths
# ---------------------------------------------------------------------------------------------
def compile_targets(g: Graph, node: Any) -> Callable[[DataGraph], list[Any]]:
    classes = [str(c) for c in g.objects(node, _SH("targetClass"))]
    if _implicit_class(g, node):
        classes.append(str(node))
    fixed = [term_from_shapes(t) for t in g.objects(node, _SH("targetNode"))]
    subjects_of = [str(p) for p in g.objects(node, _SH("targetSubjectsOf"))]
    objects_of = [str(p) for p in g.objects(node, _SH("targetObjectsOf"))]
    if len(classes) == 1 and not (fixed or subjects_of or objects_of):
        cls = classes[0]

        def one_class(data: DataGraph) -> list[Any]:
            if data.has_subclass_of:
                return data.instances_of(cls)
            return data.typed.get(cls) or []

        return one_class

    def targets(data: DataGraph) -> list[Any]:
        found: dict[Any, None] = dict.fromkeys(fixed)
        for cls in classes:
            found.update(dict.fromkeys(data.instances_of(cls)))
        for p in subjects_of:
            found.update(dict.fromkeys(data.subjects_with(p)))
        for p in objects_of:
            found.update(dict.fromkeys(data.objects_of(p)))
        return list(found)

    return targets


def _compile_path(g: Graph, path: Any) -> Callable[[DataGraph, Any], list[Any]]:
    """pyshacl's ``value_nodes_from_path``, including its handling of inverse sequences."""

    def build(p: Any, inverse: bool, depth: int) -> Callable[[DataGraph, Any], set[Any]]:
        if isinstance(p, URIRef):
            pred = str(p)
            if inverse:
                return lambda data, f: set(data.subjects(pred, f))
            return lambda data, f: set(data.objects(f, pred))
        if isinstance(p, Literal):
            raise Unsupported("a literal in a property path")
        if depth >= 10:
            raise Unsupported("property path too deep")
        first = g.value(p, RDF.first)
        if first is not None:
            rest = g.value(p, RDF.rest)
            head = build(first, inverse, depth + 1)
            if rest is None or rest == RDF.nil:
                if depth == 0:
                    raise Unsupported("a sequence path needs two or more steps")
                return head
            tail = build(rest, inverse, depth + 1)

            def seq(data: DataGraph, f: Any) -> set[Any]:
                found: set[Any] = set()
                for n in head(data, f):
                    found |= tail(data, n)
                return found

            return seq
        inv = g.value(p, _SH("inversePath"))
        if inv is not None:
            return build(inv, not inverse, depth + 1)
        alt = g.value(p, _SH("alternativePath"))
        if alt is not None:
            members = list(Collection(g, alt))
            if len(members) < 2:
                raise Unsupported("sh:alternativePath needs two or more paths")
            fns = [build(m, inverse, depth + 1) for m in members]

            def alternative(data: DataGraph, f: Any) -> set[Any]:
                found: set[Any] = set()
                for fn in fns:
                    found |= fn(data, f)
                return found

            return alternative
        for name, include_focus, once in (
            ("zeroOrMorePath", True, False),
            ("oneOrMorePath", False, False),
            ("zeroOrOnePath", True, True),
        ):
            inner_p = g.value(p, _SH(name))
            if inner_p is None:
                continue
            inner = build(inner_p, inverse, depth + 1)

            def closure(data: DataGraph, f: Any, inner=inner, include_focus=include_focus, once=once) -> set[Any]:
                found: set[Any] = {f} if include_focus else set()
                if once:
                    return found | inner(data, f)
                todo = list(inner(data, f))
                while todo:
                    n = todo.pop()
                    if n in found:
                        continue
                    found.add(n)
                    todo.extend(inner(data, n))
                return found

            return closure
        raise Unsupported("unknown kind of property path")

    fn = build(path, False, 0)
    return lambda data, f: list(fn(data, f))
