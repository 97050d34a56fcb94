"""Write the sh:in lists of melding-shapes.ttl from the SKOS codelists, or check they agree.

Why: SHACL can only enforce a codelist through an explicit sh:in list (defect 5 of the OSLO
profiles is that they never do). Copying the concepts by hand would drift from the codelist,
so the lists between ``# BEGIN GENERATED sh:in <name>`` and ``# END GENERATED`` are generated.

    python schemas/tools/sync_codelists.py          # rewrite the lists in place
    python schemas/tools/sync_codelists.py --check  # exit 1 if a list differs from its codelist

Only rdflib is needed; the script does not import the hub.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rdflib import Graph, URIRef
from rdflib.namespace import SKOS

SCHEMAS = Path(__file__).resolve().parents[1]
SHAPES = SCHEMAS / "shapes" / "melding-shapes.ttl"

# list name in the shapes file -> (codelist file, concept scheme IRI)
CODELISTS: dict[str, tuple[Path, str]] = {
    "categorie": (
        SCHEMAS / "codelists" / "categorieen.ttl",
        "https://w3id.org/meldingen-hub/id/conceptscheme/categorie",
    ),
    "MeldingStatuswaarde": (
        SCHEMAS / "codelists" / "MeldingStatuswaarde.ttl",
        "https://data.vlaanderen.be/id/conceptscheme/MeldingStatuswaarde",
    ),
}

_BLOCK = re.compile(
    r"(?P<indent>[ \t]*)# BEGIN GENERATED sh:in (?P<name>\S+)\n(?P<body>.*?)(?P=indent)# END GENERATED",
    re.DOTALL,
)


def concepts(name: str) -> list[str]:
    """The concept IRIs of a codelist's scheme (skos:inScheme or skos:topConceptOf), sorted."""
    path, scheme = CODELISTS[name]
    g = Graph().parse(path)
    found = set(g.subjects(SKOS.inScheme, URIRef(scheme))) | set(g.subjects(SKOS.topConceptOf, URIRef(scheme)))
    return sorted(str(c) for c in found)


def render(name: str, indent: str) -> str:
    lines = [f"{indent}# BEGIN GENERATED sh:in {name}", f"{indent}sh:in ("]
    lines += [f"{indent}    <{iri}>" for iri in concepts(name)]
    lines += [f"{indent}) ;", f"{indent}# END GENERATED"]
    return "\n".join(lines)


def synced(text: str) -> str:
    """The shapes text with every generated block re-rendered from its codelist."""

    def _sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in CODELISTS:
            raise SystemExit(f"unknown generated list {name!r} in {SHAPES}")
        return render(name, m.group("indent"))

    return _BLOCK.sub(_sub, text)


def main(argv: list[str]) -> int:
    text = SHAPES.read_text(encoding="utf-8")
    new = synced(text)
    if "--check" in argv:
        if new != text:
            print(f"{SHAPES}: sh:in lists differ from the codelists; run {Path(__file__).name}", file=sys.stderr)
            return 1
        print("sh:in lists agree with the codelists")
        return 0
    if new != text:
        SHAPES.write_text(new, encoding="utf-8")
        print(f"rewrote sh:in lists in {SHAPES}")
    else:
        print("sh:in lists already agree with the codelists")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
