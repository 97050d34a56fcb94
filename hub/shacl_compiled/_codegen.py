"""One compiled shape → one generated Python function, its checks written out inline.

Why: evaluating a shape as a list of closures costs a Python call per constraint and per nested
property shape, and builds the value-node lists again each time; a melding touches ~60 property
shapes, so that overhead was most of the validation time. Here each shape becomes one function
whose body holds its simple constraints as plain ``if`` statements over the value nodes (the same
conditions the closures in :mod:`hub.shacl_compiled._compiler` evaluated). A node shape's property
shapes with a one-predicate path are written into its own body, per focus node; other nested
shapes are called.

Safety: the generated source holds only fixed templates and generated names. Every value taken
from the shapes graph (IRIs, numbers, regular expressions, allowed sets) enters the function as a
namespace constant, never as text, so a shapes file cannot inject code.

Order: results may come out in another order than pyshacl's (per focus node, then per
constraint); the validator sorts them before they become a report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.shacl_compiled._terms import RDF_TYPE, Blank, Lit


@dataclass(frozen=True)
class Inline:
    """A constraint the generator writes out.

    ``per``: ``"focus"`` — ``test`` is true when a focus node ``f`` with value nodes ``vs``
    violates it; ``"value"`` — true when value node ``v`` of ``f`` violates it; ``"code"`` — a
    block over ``fvn`` (focus node, value nodes) pairs; ``"property"`` — the property shapes in
    ``shapes``, evaluated on every value node. ``test`` is a :meth:`str.format` template:
    ``{NAME}`` for each name in ``consts``, ``{COMP}`` for the component and ``{ME}`` for the
    shape, each replaced by a name unique in the generated function."""

    per: str
    component: str
    test: str = ""
    consts: dict[str, Any] = field(default_factory=dict)
    shapes: tuple[Any, ...] = ()


Evaluate = Callable[[Any, list[Any], list[Any]], None]


def generate(shape: Any) -> Evaluate:
    """The evaluate function of ``shape`` (a :class:`hub.shacl_compiled._compiler.CShape`):
    ``evaluate(data, focus_nodes, out)`` appends the shape's results on ``focus_nodes`` to ``out``."""
    src = _Source()
    me = src.const(shape, "CS")
    if shape.deactivated:
        src.add(1, "return")
    elif not shape.is_property:
        # A node shape's value node is its focus node: one pass per focus node, its
        # one-predicate property shapes read from the same property table.
        src.add(1, "for f in focus_nodes:")
        src.add(2, "props = get(f) or ED")
        src.add(2, "vs = (f,)")
        src.add(2, "fvn = ((f, vs),)")
        src.checks(me, shape.checks, 2, inline_properties=True)
        src.add(2, "pass")  # a shape without constraints
    else:
        if shape.predicate is not None:
            p = src.const(shape.predicate, "P")
            src.add(1, f"fvn = [(f, (get(f) or ED).get({p}) or E) for f in focus_nodes]")
        else:
            path = src.const(shape.path_fn, "PATH")
            src.add(1, f"fvn = [(f, {path}(data, f)) for f in focus_nodes]")
        src.add(1, "for f, vs in fvn:")
        if _needs_fvn(shape.checks):  # blocks written for fvn then see this focus node only (the
            # loop goes on over the list it started with)
            src.add(2, "fvn = ((f, vs),)")
        src.checks(me, shape.checks, 2, inline_properties=False)
        src.add(2, "pass")
    return src.function(shape.label)


def _needs_fvn(checks: list[Any]) -> bool:
    return any(not isinstance(c, Inline) or c.per == "code" for c in checks)


def _simple_property(shape: Any) -> bool:
    """Written into the node shape's body: a one-predicate path, active."""
    return shape.is_property and shape.predicate is not None and not shape.deactivated


class _Source:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"Res": _res_class(), "Lit": Lit, "Blank": Blank, "E": (), "ED": {}, "RDF_TYPE": RDF_TYPE}
        self.lines = ["def evaluate(data, focus_nodes, out):", "    if not focus_nodes:", "        return", "    get = data.out.get"]
        self.n = 0

    def const(self, value: Any, hint: str) -> str:
        self.n += 1
        name = f"{hint}_{self.n}"
        self.ns[name] = value
        return name

    def add(self, indent: int, text: str) -> None:
        self.lines.extend("    " * indent + line for line in text.splitlines())

    def checks(self, me: str, checks: list[Any], indent: int, inline_properties: bool) -> None:
        """The checks of one shape on focus node ``f`` with value nodes ``vs`` (and ``fvn``)."""
        values: list[tuple[str, str]] = []  # value tests, written together in one loop over vs

        def flush() -> None:
            if values:
                self.add(indent, "for v in vs:")
                for test, comp in values:
                    self.add(indent + 1, f"if {test}:")
                    self.add(indent + 2, f"out.append(Res({me}, {comp}, f, v))")
                values.clear()

        for check in checks:
            if not isinstance(check, Inline):
                flush()
                self.add(indent, f"{self.const(check, 'k')}(data, fvn, out)")
                continue
            comp = self.const(check.component, "C")
            names = {name: self.const(value, name) for name, value in check.consts.items()}
            test = check.test.format(COMP=comp, ME=me, **names)
            if check.per == "value":
                values.append((test, comp))
                continue
            flush()
            if check.per == "focus":
                self.add(indent, f"if {test}:")
                self.add(indent + 1, f"out.append(Res({me}, {comp}, f))")
            elif check.per == "code":
                self.add(indent, test)
            else:
                self.properties(check.shapes, indent, inline_properties)
        flush()

    def properties(self, shapes: tuple[Any, ...], indent: int, inline: bool) -> None:
        if not inline:  # every value node of every focus node is a focus node of each shape
            self.add(indent, "nodes = list(vs)")
            for sub in shapes:
                self.add(indent, f"{self.const(sub.evaluate, 'S')}(data, nodes, out)")
            return
        for sub in shapes:
            if not _simple_property(sub):
                self.add(indent, f"{self.const(sub.evaluate, 'S')}(data, [f], out)")
                continue
            # the sub-shape's focus node is f; its value nodes replace vs (and fvn) from here on
            self.add(indent, f"vs = props.get({self.const(sub.predicate, 'P')}) or E")
            if _needs_fvn(sub.checks):
                self.add(indent, "fvn = ((f, vs),)")
            self.checks(self.const(sub, "CS"), sub.checks, indent, inline_properties=False)
        # back to the node shape's own value node for the checks after these
        self.add(indent, "vs = (f,)")
        self.add(indent, "fvn = ((f, vs),)")

    def function(self, label: str) -> Evaluate:
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, f"<shape {label}>", "exec"), self.ns)  # noqa: S102 - templates only (module docstring)
        fn = self.ns["evaluate"]
        fn.__doc__ = f"Generated evaluation of {label}."
        fn.source = source  # type: ignore[attr-defined] - for tests and for reading what was generated
        return fn  # type: ignore[no-any-return]


def _res_class() -> Any:
    from hub.shacl_compiled._compiler import Res  # the compiler imports this module

    return Res
