"""Compiled SHACL: the hub's shapes as Python checks, with pyshacl's verdicts and reports.

:class:`CompiledValidator` is a drop-in for :class:`hub.validation.ShaclValidator` (same
``validate(doc | graph) -> ValidationResult``, same :class:`~hub.validation.Violation` fields,
messages and redaction) that is 20-100× faster per melding:

* **parse** — a melding in the hub context is turned into triples by a table-driven expander
  (:mod:`._fastjsonld`) instead of a JSON-LD processor; anything outside its subset goes through
  the reference :func:`hub.jsonld.to_graph` (same triples, same ``NotJsonLd`` reasons);
* **validate** — every shape is compiled once, at construction, into closures that mirror
  pyshacl's constraint components (:mod:`._compiler`), run over dicts.

Never silently less strict: a shape the compiler cannot reproduce exactly (an unsupported
component such as sh:sparql or sh:qualifiedValueShape, a malformed parameter, recursion) is
*not* compiled; whenever such a shape has a focus node in a melding, that melding is validated by
pyshacl (the reference path, whole report) instead. :attr:`CompiledValidator.unsupported` lists
those shapes and why; :attr:`CompiledValidator.stats` counts which path each melding took.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from rdflib import Graph

from hub import jsonld
from hub.shacl_compiled._compiler import (
    Compiler,
    CShape,
    Res,
    Unsupported,
    compile_targets,
    has_sparql_target,
    has_targets,
)
from hub.shacl_compiled._fastjsonld import HubJsonLd
from hub.shacl_compiled._messages import RdfView, generic_message
from hub.shacl_compiled._terms import RDF_TYPE, Blank, DataGraph, term_text
from hub.validation import (
    _PERSONAL_CLASSES,
    _PERSONAL_PATHS,
    REDACTED,
    ShaclValidator,
    ValidationResult,
    Violation,
    _explain,
    _scrub,
)

__all__ = ["CompiledValidator"]

log = logging.getLogger(__name__)

_PERSONAL_CLASS_IRIS = frozenset(str(c) for c in _PERSONAL_CLASSES)


class CompiledValidator(ShaclValidator):
    """Validates meldingen against the hub's shapes with compiled checks (pyshacl where needed).

    Construct once per process (it parses the shapes and codelists, compiles the shapes and keeps
    pyshacl ready for the fallback). :meth:`validate` does not mutate shared state except the
    :attr:`stats` counter, so one instance may serve the hub's worker thread.
    """

    def __init__(self, shapes: Path | None = None, codelists: Path | None = None) -> None:
        super().__init__(shapes, codelists)
        self.stats: Counter[str] = Counter()
        self._expander = HubJsonLd()
        self._top: list[CShape] = []
        self._fallback: list[tuple[Any, Any]] = []  # (shape node, its target function or None)
        self.unsupported: dict[str, str] = {}
        self._compile()

    # -- construction -------------------------------------------------------------------------
    def _compile(self) -> None:
        g = self.shapes_graph
        try:
            compiler = Compiler(g)
        except Unsupported as e:  # the shapes graph itself is beyond the compiler: all pyshacl
            self.unsupported["(shapes graph)"] = str(e)
            self._fallback.append((None, None))
            return
        for node in sorted(compiler.shapes, key=str):
            if not has_targets(g, node):
                continue
            try:
                shape = compiler.shape(node)
            except Unsupported as e:
                self.unsupported[str(node)] = str(e)
                # Which meldings does it apply to? Unknown for SPARQL targets: then to all.
                targets = None if has_sparql_target(g, node) else compile_targets(g, node)
                self._fallback.append((node, targets))
                continue
            self._top.append(shape)
        for node, reason in compiler.failed.items():
            self.unsupported.setdefault(str(node), reason)
        if self.unsupported:
            log.info("shacl_compiled.fallback shapes=%d", len(self._fallback))

    @property
    def supported(self) -> bool:
        """True when every shape with a target is compiled (pyshacl never runs)."""
        return not self._fallback

    # -- public -------------------------------------------------------------------------------
    def validate(self, doc: dict[str, Any] | Graph) -> ValidationResult:
        """Validate a compact JSON-LD melding (dict) or its RDF graph; same result as the reference.

        A dict that is not a JSON-LD melding raises :class:`hub.errors.NotJsonLd` with the
        reference's reason.
        """
        graph: Graph | None = None
        if isinstance(doc, Graph):
            graph = doc
            data = DataGraph.from_rdflib(doc)
            self.stats["graph"] += 1
        else:
            data = self._expander.expand(doc)
            if data is None:
                graph = jsonld.to_graph(doc)  # NotJsonLd, exactly as the reference raises it
                data = DataGraph.from_rdflib(graph)
                self.stats["parsed"] += 1
            else:
                self.stats["fast"] += 1
        if self._needs_pyshacl(data):
            self.stats["pyshacl"] += 1
            return super().validate(graph if graph is not None else jsonld.to_graph(doc))  # type: ignore[arg-type]
        results: list[Res] = []
        for shape in self._top:
            assert shape.targets is not None
            focus = shape.targets(data)
            if focus:
                shape.evaluate(data, focus, results)
        if not results:
            return ValidationResult(True, [])
        view = _Lazy(lambda: RdfView(data, graph))
        violations = [self._violation_of(r, data, view) for res in results for r in res.flatten()]
        violations.sort(key=lambda v: (v.field or "", v.component, v.focus_node, v.value or ""))
        return ValidationResult(False, violations)

    def _needs_pyshacl(self, data: DataGraph) -> bool:
        for _node, targets in self._fallback:
            if targets is None or targets(data):
                return True
        return False

    # -- reports (hub.validation.ShaclValidator._violation, over the compiled data) ------------
    def _violation_of(self, res: Res, data: DataGraph, view: _Lazy) -> Violation:
        shape = res.shape
        info = self._shapes.get(shape.node)
        path = info.path if info else res.path
        fld = info.name if info and info.name else (self._terms.get(path) if path else None)
        personal = (path in _PERSONAL_PATHS) or self._personal(data, res.focus)
        value = res.value
        message = info.message if info and info.message else None
        if message is None:
            message = _explain(res.component, info.params if info else {}, fld, self._allowed, self._classes)
        if message is None:  # pyshacl's own message: the shape's sh:message, else its generic text
            raw = shape.message
            if raw is None:
                raw = generic_message(res, self.shapes_graph, view)
            message = raw if raw is not None else res.component
            if personal and value is not None:
                message = message.replace(value.label if isinstance(value, Blank) else term_text(value), REDACTED)
            message = _scrub(message)
        value_text = None if value is None else (REDACTED if personal else _scrub(term_text(value)))
        return Violation(
            focus_node=_scrub(self._where(data, res.focus)),
            path=path,
            field=fld,
            component=res.component,
            message=message,
            value=value_text,
            severity=shape.severity,
        )

    @staticmethod
    def _personal(data: DataGraph, node: Any) -> bool:
        seen: set[int] = set()
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            if any(t in _PERSONAL_CLASS_IRIS for t in data.objects(node, RDF_TYPE)):
                return True
            parents = data.incoming(node)
            if any(p in _PERSONAL_PATHS for _, p in parents):
                return True
            node = parents[0][0] if parents and isinstance(node, Blank) else None
        return False

    def _where(self, data: DataGraph, node: Any, depth: int = 0) -> str:
        if node is None:
            return "(unknown)"
        if not isinstance(node, Blank):
            return term_text(node)
        parents = data.incoming(node)
        if not parents or depth > 8:
            return f"_:{node.label}"
        subject, predicate = parents[0]
        return f"{self._where(data, subject, depth + 1)} › {self._terms.get(predicate, predicate)}"


class _Lazy:
    """Builds the rdflib view of the data once, the first time a message needs it."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._value: RdfView | None = None

    def __call__(self) -> RdfView:
        if self._value is None:
            self._value = self._make()
        return self._value
