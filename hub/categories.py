"""The hub's category scheme (``schemas/codelists/categorieen.ttl``) as plain Python objects.

Why: adapters map vendor codes to a category slug and the router matches rules on categories;
neither should parse Turtle or know SKOS. The Turtle file stays the single source (the SHACL
``sh:in`` lists are generated from it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rdflib import Graph, URIRef
from rdflib.namespace import SKOS

from hub.paths import codelists_dir

SCHEME_IRI = "https://w3id.org/meldingen-hub/id/conceptscheme/categorie"
CONCEPT_NS = "https://w3id.org/meldingen-hub/id/concept/categorie/"
SIGNALEN_NS = "https://w3id.org/meldingen-hub/id/concept/signalen/"


@dataclass(frozen=True)
class Category:
    slug: str
    iri: str
    label: str
    definition: str
    exact_matches: tuple[str, ...] = ()
    close_matches: tuple[str, ...] = ()
    related_matches: tuple[str, ...] = ()

    def signalen_slugs(self) -> tuple[str, ...]:
        """Signalen ``hoofdcategorie/subcategorie`` slugs this category maps to (exact, then close)."""
        return tuple(
            m[len(SIGNALEN_NS):] for m in self.exact_matches + self.close_matches if m.startswith(SIGNALEN_NS)
        )


def load_categories(path: Path | None = None) -> list[Category]:
    """Every concept of the hub's scheme, sorted by slug (a fresh list; the parse is cached)."""
    return list(_load(path))


@lru_cache(maxsize=4)
def _load(path: Path | None) -> tuple[Category, ...]:
    g = Graph().parse(path or codelists_dir() / "categorieen.ttl", format="turtle")
    out = []
    for concept in g.subjects(SKOS.inScheme, URIRef(SCHEME_IRI)):

        def objects(p: URIRef) -> tuple[str, ...]:
            return tuple(sorted(str(o) for o in g.objects(concept, p)))

        out.append(
            Category(
                slug=str(g.value(concept, SKOS.notation)),
                iri=str(concept),
                label=str(g.value(concept, SKOS.prefLabel)),
                definition=str(g.value(concept, SKOS.definition)),
                exact_matches=objects(SKOS.exactMatch),
                close_matches=objects(SKOS.closeMatch),
                related_matches=objects(SKOS.relatedMatch),
            )
        )
    return tuple(sorted(out, key=lambda c: c.slug))


def categories() -> list[Category]:
    return load_categories()


def by_slug(slug: str) -> Category | None:
    return _by_slug().get(slug)


def by_iri(iri: str) -> Category | None:
    return _by_iri().get(iri)


def iri_for(slug: str) -> str:
    """The concept IRI of a known slug; KeyError for an unknown one (adapters map before they send)."""
    category = by_slug(slug)
    if category is None:
        raise KeyError(f"unknown category slug {slug!r}")
    return category.iri


@lru_cache(maxsize=1)
def _by_slug() -> dict[str, Category]:
    return {c.slug: c for c in _load(None)}


@lru_cache(maxsize=1)
def _by_iri() -> dict[str, Category]:
    return {c.iri: c for c in _load(None)}
