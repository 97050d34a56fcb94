"""SHACL validation of a melding against the hub's shapes, with reports an admin can read.

Why a wrapper around pyshacl: the shapes and codelists are parsed and the shapes harvested
once per process (not once per message), and the raw SHACL report is turned into
:class:`Violation` records that name the Dutch JSON field (``titel``), the rule and the problem
in plain English — and never carry personal data (values about the melder are redacted).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path
from typing import Any

import pyshacl
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import RDF, SKOS, Namespace

from hub import jsonld
from hub.errors import ShapeViolation, UnknownCategory
from hub.paths import codelists_dir, shapes_file

SH = Namespace("http://www.w3.org/ns/shacl#")
XSD_NS = "http://www.w3.org/2001/XMLSchema#"
REDACTED = "«redacted»"

CATEGORY_FIELDS = frozenset({"meldingstype", "type"})
CATEGORY_SCHEME = "https://w3id.org/meldingen-hub/id/conceptscheme/categorie"
STATUS_SCHEME = "https://data.vlaanderen.be/id/conceptscheme/MeldingStatuswaarde"

# Personal data (GDPR): values on these properties, or on nodes of these classes, never appear
# in a report — reports end up in dead-letter headers, logs and admin screens.
_PERSONAL_PATHS = frozenset(
    {
        "https://data.vlaanderen.be/ns/melding#melder",
        "http://schema.org/contactPoint",
        "http://schema.org/email",
        "http://schema.org/telephone",
        "http://xmlns.com/foaf/0.1/name",
    }
)
_PERSONAL_CLASSES = frozenset(
    {
        URIRef("http://www.w3.org/ns/person#Person"),
        URIRef("http://xmlns.com/foaf/0.1/Person"),
        URIRef("http://schema.org/ContactPoint"),
    }
)
_PERSONAL_IRI = re.compile(r"\b(mailto|tel):[^\s›]+", re.IGNORECASE)


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``field`` is the compact JSON-LD term (Dutch), e.g. ``titel``."""

    focus_node: str
    path: str | None
    field: str | None
    component: str
    message: str
    value: str | None
    severity: str

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class ValidationResult:
    conforms: bool
    violations: list[Violation] = dc_field(default_factory=list)

    @property
    def is_unknown_category(self) -> bool:
        """True when the only problem is a category outside the hub's scheme (its own dead-letter class)."""
        return bool(self.violations) and all(
            v.field in CATEGORY_FIELDS and v.component == "InConstraintComponent" for v in self.violations
        )

    def as_json(self) -> list[dict[str, str | None]]:
        return [v.as_dict() for v in self.violations]

    def as_text(self) -> str:
        if self.conforms:
            return "conforms to the hub's shapes"
        lines = [f"{len(self.violations)} violation(s) of the hub's shapes:"]
        for v in self.violations:
            where = v.field or (f"<{v.path}>" if v.path else "(node)")
            line = f"- {where}: {v.message} [{v.component}]"
            if v.value is not None:
                line += f"; value: {v.value}"
            lines.append(line + f"; at: {v.focus_node}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for a dead letter's ``error-reason`` header."""
        if self.conforms:
            return "conforms"
        first = self.violations[0]
        more = f" (+{len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        return f"{first.field or first.path or 'node'}: {first.message}{more}"

    def raise_if_invalid(self) -> None:
        """Raise UnknownCategory or ShapeViolation (details: :meth:`as_json`) unless the melding conforms."""
        if self.conforms:
            return
        error = UnknownCategory if self.is_unknown_category else ShapeViolation
        raise error(self.summary(), details=self.as_json())


@dataclass(frozen=True)
class _ShapeInfo:
    name: str | None
    message: str | None
    path: str | None
    params: dict[str, Any]


class ShaclValidator:
    """Validates meldingen against ``schemas/shapes/melding-shapes.ttl``.

    Construct once per process: parsing the shapes and codelists and harvesting the shapes is
    the expensive part; :meth:`validate` then costs a few milliseconds per melding. One instance
    per thread: pyshacl's shape objects are shared between calls and not made for concurrency.
    """

    def __init__(self, shapes: Path | None = None, codelists: Path | None = None) -> None:
        self._shapes_graph = Graph().parse(shapes or shapes_file(), format="turtle")
        self._codelists = Graph()
        for path in sorted((codelists or codelists_dir()).glob("*.ttl")):
            self._codelists.parse(path, format="turtle")
        self._terms, self._classes = _context_terms()
        self._shapes = self._index_shapes()
        self._allowed = {
            CATEGORY_SCHEME: self._notations(CATEGORY_SCHEME),
            STATUS_SCHEME: self._notations(STATUS_SCHEME),
        }
        self._harvested = _harvest(self._shapes_graph)

    # -- public -------------------------------------------------------------------------------
    def validate(self, doc: dict[str, Any] | Graph) -> ValidationResult:
        """Validate a compact JSON-LD melding (dict) or its RDF graph.

        A dict that is not a JSON-LD melding raises :class:`hub.errors.NotJsonLd` (from
        :func:`hub.jsonld.to_graph`) — that is a different dead-letter class than a violation.
        """
        graph = doc if isinstance(doc, Graph) else jsonld.to_graph(doc)
        conforms, report = self._run(graph)
        if conforms:
            return ValidationResult(True, [])
        violations = [self._violation(report, r, graph) for r in report.subjects(RDF.type, SH.ValidationResult)]
        violations.sort(key=lambda v: (v.field or "", v.component, v.focus_node, v.value or ""))
        return ValidationResult(False, violations)

    @property
    def shapes_graph(self) -> Graph:
        return self._shapes_graph

    @property
    def codelists_graph(self) -> Graph:
        return self._codelists

    # -- pyshacl --------------------------------------------------------------------------------
    def _run(self, graph: Graph) -> tuple[bool, Graph]:
        if self._harvested is not None:
            try:
                return _run_with_cached_shapes(graph, self._shapes_graph, self._harvested)
            except (AttributeError, TypeError, ImportError):  # pyshacl internals changed: slow path
                self._harvested = None
        conforms, report, _ = pyshacl.validate(
            graph, shacl_graph=self._shapes_graph, inference="none", inplace=True, advanced=False
        )
        return bool(conforms), report

    # -- reports --------------------------------------------------------------------------------
    def _violation(self, report: Graph, result: Any, data: Graph) -> Violation:
        focus = report.value(result, SH.focusNode)
        shape = report.value(result, SH.sourceShape)
        component = _local(report.value(result, SH.sourceConstraintComponent))
        value = report.value(result, SH.value)
        severity = _local(report.value(result, SH.resultSeverity)) or "Violation"
        info = self._shapes.get(shape) if shape is not None else None
        path = info.path if info else _path_str(report, report.value(result, SH.resultPath))
        fld = info.name if info and info.name else (self._terms.get(path) if path else None)
        personal = (path in _PERSONAL_PATHS) or self._is_personal_node(data, focus)
        message = self._message(component, info, fld, report.value(result, SH.resultMessage), value, personal)
        value_text = None if value is None else (REDACTED if personal else _scrub(_term_text(value)))
        return Violation(
            focus_node=_scrub(self._locate(data, focus)),
            path=path,
            field=fld,
            component=component,
            message=message,
            value=value_text,
            severity=severity,
        )

    def _message(
        self, component: str, info: _ShapeInfo | None, fld: str | None, raw: Any, value: Any, personal: bool
    ) -> str:
        if info and info.message:
            return info.message
        params = info.params if info else {}
        text = _explain(component, params, fld, self._allowed, self._classes)
        if text:
            return text
        fallback = str(raw) if raw is not None else component
        if personal and value is not None:
            fallback = fallback.replace(str(value), REDACTED)
        return _scrub(fallback)

    def _is_personal_node(self, data: Graph, node: Any) -> bool:
        if node is None:
            return False
        seen: set[Any] = set()
        while node is not None and node not in seen:
            seen.add(node)
            if any(t in _PERSONAL_CLASSES for t in data.objects(node, RDF.type)):
                return True
            parents = list(data.subject_predicates(node))
            if any(str(p) in _PERSONAL_PATHS for _, p in parents):
                return True
            node = parents[0][0] if parents and isinstance(node, BNode) else None
        return False

    def _locate(self, data: Graph, node: Any, depth: int = 0) -> str:
        """A focus node an admin can find: an IRI, or for a blank node the way to it (``<iri> › heeftStatus``)."""
        if node is None:
            return "(unknown)"
        if not isinstance(node, BNode):
            return _term_text(node)
        parent = next(iter(data.subject_predicates(node)), None)
        if parent is None or depth > 8:
            return f"_:{node}"
        subject, predicate = parent
        return f"{self._locate(data, subject, depth + 1)} › {self._terms.get(str(predicate), str(predicate))}"

    # -- loading --------------------------------------------------------------------------------
    def _index_shapes(self) -> dict[Any, _ShapeInfo]:
        g = self._shapes_graph
        index: dict[Any, _ShapeInfo] = {}
        for shape in set(g.subjects(SH.path, None)):
            params: dict[str, Any] = {}
            for key in ("minCount", "maxCount", "minLength", "datatype", "nodeKind", "class"):
                v = g.value(shape, SH[key])
                if v is not None:
                    params[key] = v.toPython() if isinstance(v, Literal) else str(v)
            name = g.value(shape, SH.name)
            message = g.value(shape, SH.message)
            index[shape] = _ShapeInfo(
                name=str(name) if name is not None else None,
                message=str(message) if message is not None else None,
                path=_path_str(g, g.value(shape, SH.path)),
                params=params,
            )
        return index

    def _notations(self, scheme: str) -> list[str]:
        g = self._codelists
        out = []
        for concept in sorted(g.subjects(SKOS.inScheme, URIRef(scheme)), key=str):
            notation = g.value(concept, SKOS.notation)
            label = g.value(concept, SKOS.prefLabel)
            text = str(notation) if notation is not None else str(concept).rsplit("/", 1)[-1]
            out.append(f"{text} {label}" if scheme == STATUS_SCHEME and label is not None else text)
        return out


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _context_terms() -> tuple[dict[str, str], dict[str, str]]:
    """Reverse maps of the hub context: property IRI → term, class IRI → term."""
    ctx = jsonld.load_context(jsonld.HUB_CONTEXT_IRI)
    prefixes = {k: v for k, v in ctx.items() if isinstance(v, str) and v.endswith(("#", "/"))}

    def expand(curie: str) -> str:
        prefix, _, rest = curie.partition(":")
        return prefixes[prefix] + rest if prefix in prefixes and not rest.startswith("//") else curie

    properties: dict[str, str] = {}
    classes: dict[str, str] = {}
    for term, definition in ctx.items():
        if isinstance(definition, dict):
            properties.setdefault(expand(definition["@id"]), term)
        elif isinstance(definition, str) and term[:1].isupper():
            classes.setdefault(expand(definition), term)
    properties[str(RDF.type)] = "@type"
    return properties, classes


def _harvest(shapes: Graph) -> Any:
    """pyshacl's ShapesGraph with its shapes harvested once; None if this pyshacl cannot do that."""
    try:
        from pyshacl.shapes_graph import ShapesGraph

        sg = ShapesGraph(shapes)
        _ = sg.shapes
        return sg
    except Exception:  # pragma: no cover - depends on pyshacl internals
        return None


def _run_with_cached_shapes(graph: Graph, shapes: Graph, harvested: Any) -> tuple[bool, Graph]:
    """pyshacl's Validator, but with the pre-harvested ShapesGraph (saves ~25 % per melding)."""
    from pyshacl import Validator
    from pyshacl.graph_abstraction import DataGraph

    validator = Validator(
        DataGraph.from_rdflib(graph),
        shacl_graph=shapes,
        options={"inference": "none", "inplace": True, "advanced": False},
    )
    validator.shacl_graph = harvested
    conforms, report, _ = validator.run()
    return bool(conforms), report


def _explain(
    component: str,
    params: dict[str, Any],
    fld: str | None,
    allowed: dict[str, list[str]],
    classes: dict[str, str],
) -> str | None:
    """The English explanation of a broken rule, without the offending value."""
    if component == "MinCountConstraintComponent":
        n = params.get("minCount", 1)
        return "is required but missing" if n == 1 else f"needs at least {n} values"
    if component == "MaxCountConstraintComponent":
        n = params.get("maxCount", 1)
        return "may occur only once" if n == 1 else f"may occur at most {n} times"
    if component == "DatatypeConstraintComponent":
        dt = str(params.get("datatype", ""))
        if dt == XSD_NS + "dateTime":
            return "must be a valid date-time (xsd:dateTime) with time zone, e.g. 2026-11-20T08:15:00+01:00"
        if dt.endswith("#langString"):
            return "must be a text with a language tag (plain strings get \"nl\" from the hub context)"
        return f"must be a literal of type {_short(dt)}"
    if component == "InConstraintComponent":
        if fld in CATEGORY_FIELDS:
            return "is not a category of the hub's scheme; allowed: " + ", ".join(allowed[CATEGORY_SCHEME])
        if fld == "statuswaarde":
            return "is not a MeldingStatuswaarde concept; allowed: " + ", ".join(allowed[STATUS_SCHEME])
        return "is not one of the allowed values"
    if component == "LanguageInConstraintComponent":
        return "must be in Dutch (language tag \"nl\")"
    if component == "MinLengthConstraintComponent":
        return "must not be empty"
    if component == "NodeKindConstraintComponent":
        kind = str(params.get("nodeKind", ""))
        if kind.endswith("#IRI"):
            return "must be an IRI (e.g. https://…), not a text"
        return "must be a reference (an IRI) or an object, not a text"
    if component == "ClassConstraintComponent":
        cls = str(params.get("class", ""))
        return f"must be an object with \"@type\": \"{classes.get(cls, cls)}\""
    if component == "PatternConstraintComponent":
        return "does not have the expected format"
    return None


def _path_str(g: Graph, path: Any) -> str | None:
    if path is None:
        return None
    if isinstance(path, URIRef):
        return str(path)
    alternatives = g.value(path, SH.alternativePath)
    if alternatives is not None:
        return "|".join(str(p) for p in Collection(g, alternatives))
    return None


def _local(term: Any) -> str:
    if term is None:
        return ""
    text = str(term)
    return re.split(r"[#/]", text)[-1]


def _short(iri: str) -> str:
    for prefix, ns in (("xsd:", XSD_NS), ("geo:", "http://www.opengis.net/ont/geosparql#")):
        if iri.startswith(ns):
            return prefix + iri[len(ns):]
    return iri


def _term_text(term: Any) -> str:
    if isinstance(term, Literal):
        return str(term)
    if isinstance(term, BNode):
        return f"_:{term}"
    return str(term)


def _scrub(text: str) -> str:
    """Remove mailto:/tel: IRIs, which are personal data wherever they appear."""
    return _PERSONAL_IRI.sub(REDACTED, text)


def make_validator(kind: str = "pyshacl") -> ShaclValidator:
    """The validator the hub runs with: ``pyshacl`` (the reference) or ``compiled``."""
    if kind == "pyshacl":
        return ShaclValidator()
    if kind == "compiled":
        from hub.shacl_compiled import CompiledValidator

        return CompiledValidator()
    raise ValueError(f"unknown validator {kind!r}: use 'pyshacl' or 'compiled'")
