"""pyshacl's default result messages, for the components the hub's own explanations skip.

The reference report uses ``hub.validation._explain`` (or the shape's sh:message) wherever it
can, and pyshacl's generic message only for the rest (sh:maxLength, sh:uniqueLang, sh:hasValue,
sh:equals/sh:disjoint without sh:message, sh:closed, sh:node, sh:not/and/or/xone). Those texts
are rebuilt here with pyshacl's own ``stringify_node`` over an rdflib copy of the data made only
when such a message is needed — the hub's shapes never need one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyshacl.rdfutil import stringify_node
from rdflib import BNode, Graph, Literal, URIRef

from hub.shacl_compiled._compiler import SH, Res
from hub.shacl_compiled._terms import Blank, DataGraph, Lit

_sh = lambda name: URIRef(SH + name)  # noqa: E731


class RdfView:
    """An rdflib graph of a :class:`DataGraph` (or the graph it came from) and the term mapping."""

    def __init__(self, data: DataGraph, source: Graph | None) -> None:
        self._blanks: dict[Blank, BNode] = {}
        if source is not None and data.origin is not None:
            self.graph = source
            self._blanks = {b: n for b, n in data.origin.items()}
        else:
            self.graph = Graph()
            for s, p, o in data.triples():
                self.graph.add((self.term(s), URIRef(p), self.term(o)))

    def term(self, t: Any) -> Any:
        if isinstance(t, Blank):
            node = self._blanks.get(t)
            if node is None:
                node = self._blanks[t] = BNode()  # fresh ids: pyshacl caches blank-node strings by id
            return node
        if isinstance(t, Lit):
            return Literal(t.lex, lang=t.lang, datatype=URIRef(t.dt) if t.dt else None)
        return URIRef(t)


def generic_message(res: Res, sg: Graph, view: Callable[[], RdfView]) -> str | None:
    """pyshacl's generic message for ``res`` (None for components explained elsewhere)."""
    c = res.component[: -len("ConstraintComponent")]
    shape = res.shape.node

    def data_str(t: Any) -> str:
        v = view()
        node = v.term(t)
        try:
            return stringify_node(v.graph, node)
        except (LookupError, ValueError):
            return str(node)

    def shapes_str(n: Any) -> str:
        return stringify_node(sg, n)

    def list_str(lists: list[Any]) -> str:
        if len(lists) < 2:
            return " , ".join(shapes_str(x) for x in sg.items(lists[0]))
        return " and ".join("({})".format(" , ".join(shapes_str(x) for x in sg.items(lst))) for lst in lists)

    if c == "MaxLength":
        rule = next(iter(sg.objects(shape, _sh("maxLength"))))
        return "String length not <= {}".format(stringify_node(view().graph, rule))
    if c == "UniqueLang":
        return "More than one String shares the same Language"
    if c == "HasValue":
        the_set = [shapes_str(s) for s in set(sg.objects(shape, _sh("hasValue")))]
        path = sg.value(shape, _sh("path"))
        if path is not None:
            return f"Node {data_str(res.focus)}->{shapes_str(path)} does not contain a value in the set: {the_set}"
        return f"Node {data_str(res.focus)} value is not a in the set of values: {the_set}"
    if c in ("Equals", "Disjoint"):
        op = "!=" if c == "Equals" else "=="
        compare = set(sg.objects(shape, _sh(c.lower())))
        rules = (
            shapes_str(next(iter(compare))) if len(compare) < 2 else ", ".join(shapes_str(p) for p in compare)
        )
        return f"Value of {data_str(res.focus)}->{rules} {op} {data_str(res.value)}"
    if c == "Closed":
        return f"Node {data_str(res.focus)} is closed. It cannot have value: {data_str(res.value)}"
    if c == "Node":
        shapes = list(sg.objects(shape, _sh("node")))
        if len(shapes) < 2:
            m = f"Value does not conform to Shape {shapes_str(shapes[0])}."
        else:
            m = "Value must conform to every Shape in ('{}').".format("', '".join(shapes_str(s) for s in shapes))
        return m + " See details for more information."
    if c == "Not":
        nots = list(sg.objects(shape, _sh("not")))
        if len(nots) == 1:
            return f"Node {data_str(res.value)} must not conform to shape {shapes_str(nots[0])}"
        return f"Node {data_str(res.value)} must not conform to any shapes in " + " , ".join(
            shapes_str(n) for n in nots
        )
    if c in ("And", "Or", "Xone"):
        lists = list(sg.objects(shape, _sh(c.lower())))
        wording = {"And": "all shapes", "Or": "one or more shapes", "Xone": "exactly one shape"}[c]
        return f"Node {data_str(res.value)} must conform to {wording} in {list_str(lists)}"
    return None
