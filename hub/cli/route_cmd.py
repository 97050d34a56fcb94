"""``meldhub route ...``: explain a routing decision, prove the region's coverage, write the consumers' contract.

- ``explain FILE`` — the decision path for a melding file: the municipality found, every rule
  tried and why it did or did not match (distance to the nearest road/waterway/asset for layer
  rules), the result. Exit 1 when the melding cannot be routed (it would be dead-lettered), 2 when
  the file is not a JSON-LD melding at all.
- ``check`` — samples every municipality of the region (a grid) and every layer (on, just inside
  and just outside each buffer) for every category: gaps (no owner) make it exit 1; overlaps (two
  rules claim the same place for different owners and only their order decides) and layer spill
  (a layer reaching outside the region) are reported; ``--strict`` fails on overlaps too.
- ``asyncapi`` — writes the AsyncAPI 3.0 document of the hub's topics (``docs/asyncapi.yaml``) and,
  with ``--examples``, one example record per topic (``docs/topics/``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from hub.routing import CoverageReport, Explanation, Router

app = typer.Typer(no_args_is_help=True)

RegistryOption = Annotated[
    Path | None, typer.Option("--registry", help="Authority registry YAML (default: env MELDHUB_REGISTRY, else the example region).")
]


def _console() -> Console:
    from rich.console import Console

    # Wide output when piped (CI logs, tests): rich would otherwise wrap at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _router(registry: Path | None) -> Router:
    from hub.geo import MunicipalityIndex
    from hub.registry import Registry, RegistryError
    from hub.routing import Router

    try:
        return Router(Registry.load(registry), MunicipalityIndex.load())
    except RegistryError as exc:
        typer.echo(f"registry error: {exc}", err=True)
        raise typer.Exit(code=2) from None


@app.command("explain")
def explain(
    file: Annotated[Path, typer.Argument(help="A melding (JSON-LD file), e.g. docs/topics/meldingen.inbound.jsonld.")],
    registry: RegistryOption = None,
    all_rules: Annotated[
        bool, typer.Option("--all", help="Also evaluate the rules after the deciding one (what the order hides).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
    validate: Annotated[
        bool, typer.Option(help="Validate against the hub's SHACL shapes first, as the hub does before routing.")
    ] = True,
    refused_by: Annotated[
        list[str] | None,
        typer.Option(
            "--refused-by",
            help="An authority id that refused the melding (repeatable): shows the next candidate, as the hub re-routes.",
        ),
    ] = None,
) -> None:
    """Print the decision path for a melding: municipality, rules tried and why, result."""
    from hub.errors import HubError
    from hub.jsonld import decode_json
    from hub.melding import Melding

    console = _console()
    try:
        doc = decode_json(file.read_bytes())
        melding = Melding.from_jsonld(doc)
    except OSError as exc:
        console.print(f"[red]cannot read[/red] {file}: {exc.strerror or exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    except HubError as exc:
        console.print(f"[red]not a melding[/red] {file}: {exc.error_class.value}: {exc.reason}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    shape_problem = _shape_problem(doc) if validate else None
    router = _router(registry)
    e = router.explain(
        melding.category_iris, melding.points(), all_rules=all_rules, exclude=frozenset(refused_by or ())
    )
    if as_json:
        typer.echo(json.dumps(_explanation_json(e, file) | {"shape_problem": shape_problem}, ensure_ascii=False, indent=2))
    else:
        if shape_problem:
            console.print(
                f"[red]INVALID[/red] the hub dead-letters this melding before routing: {shape_problem} "
                "(`meldhub validate` shows every violation); routing below is for information only",
                soft_wrap=True,
            )
        _print_explanation(console, e, file, router)
        if refused_by and e.decision is None and e.error_class == "no-owner":
            console.print(
                "after a refusal the hub sends it to the region's triage topic meldingen.triage", soft_wrap=True
            )
    if e.decision is None or shape_problem:
        raise typer.Exit(code=1)


def _shape_problem(doc: object) -> str | None:
    """None if the melding conforms to the hub's shapes, else 'error-class: summary'."""
    from hub.errors import HubError
    from hub.validation import ShaclValidator

    try:
        result = ShaclValidator().validate(doc)  # type: ignore[arg-type]
    except HubError as exc:
        return f"{exc.error_class.value}: {exc.reason}"
    if result.conforms:
        return None
    kind = "unknown-category" if result.is_unknown_category else "shape-violation"
    first = result.violations[0]
    more = f" (+{len(result.violations) - 1} more)" if len(result.violations) > 1 else ""
    return f"{kind}: {first.field or first.path or 'melding'}: {first.message}{more}"


def _explanation_json(e: Explanation, file: Path) -> dict[str, Any]:
    d = e.decision
    return {
        "file": str(file),
        "ruleset_version": e.ruleset_version,
        "category": e.category,
        "point": list(e.point) if e.point else None,
        "municipality": None if e.municipality is None else {"nis": e.municipality.nis, "name": e.municipality.name},
        "rules": [
            {
                "rule": t.rule_id,
                "matched": t.matched,
                "reached": t.reached,
                "reason": t.reason,
                "layer_feature": t.layer_feature,
                "distance_m": None if t.distance_m is None else round(t.distance_m, 1),
            }
            for t in e.rules
        ],
        "decision": None
        if d is None
        else {"authority": d.authority_id, "topic": d.topic, "rule": d.rule_id, "municipality_nis": d.municipality_nis},
        "error_class": e.error_class,
        "error_reason": e.error_reason,
        "notes": list(e.notes),
    }


def _print_explanation(console: Console, e: Explanation, file: Path, router: Router) -> None:
    from rich.table import Table

    console.print(f"[bold]{file}[/bold]  ruleset {e.ruleset_version} ({router.registry.region})", soft_wrap=True)
    console.print(f"  category:     {e.category or '—'}", soft_wrap=True)
    point = "—" if e.point is None else f"lon {e.point[0]}, lat {e.point[1]}"
    console.print(f"  point:        {point}", soft_wrap=True)
    if e.municipality is not None:
        served = e.municipality.nis in router.registry.region_municipalities
        tag = "" if served else " [yellow](not served by this registry)[/yellow]"
        console.print(f"  municipality: {e.municipality.name} ({e.municipality.nis}){tag}", soft_wrap=True)
    else:
        console.print("  municipality: —", soft_wrap=True)
    for note in e.notes:
        console.print(f"  note:         {note}", soft_wrap=True)
    if e.rules:
        table = Table(show_lines=False, expand=False)
        table.add_column("#", justify="right")
        table.add_column("rule", no_wrap=True)
        table.add_column("match", no_wrap=True)
        table.add_column("why", overflow="fold")
        for number, t in enumerate(e.rules, 1):
            mark = "[green]yes[/green]" if t.matched and t.reached else ("would" if t.matched else "[dim]no[/dim]")
            table.add_row(str(number), t.rule_id, mark, t.reason)
        console.print(table)
    d = e.decision
    if d is not None:
        console.print(
            f"[green]ROUTED[/green] → {d.authority_id} ({d.authority_name}), topic {d.topic}, "
            f"rule {d.rule_id}, ruleset {d.ruleset_version}",
            soft_wrap=True,
        )
    else:
        console.print(f"[red]UNROUTABLE[/red] {e.error_class}: {e.error_reason}", soft_wrap=True)


@app.command("check")
def check(
    registry: RegistryOption = None,
    spacing: Annotated[float, typer.Option(help="Grid spacing in metres inside each municipality.", min=20)] = 250.0,
    layer_step: Annotated[float, typer.Option(help="Sampling step in metres along layer features.", min=1)] = 25.0,
    strict: Annotated[bool, typer.Option(help="Also exit 1 on overlaps (not only on gaps).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Prove coverage: every category has exactly one owner at every sampled point of the region."""
    from dataclasses import asdict

    from hub.routing import check_coverage

    router = _router(registry)
    report = check_coverage(router, spacing_m=spacing, layer_step_m=layer_step)
    if as_json:
        typer.echo(json.dumps(asdict(report) | {"ok": report.ok}, ensure_ascii=False, indent=2))
    else:
        _print_report(_console(), report, router)
    if report.gaps or (strict and report.overlaps):
        raise typer.Exit(code=1)


def _print_report(console: Console, r: CoverageReport, router: Router) -> None:
    from rich.table import Table

    from hub.registry import CATEGORY_SLUGS

    console.print(
        f"[bold]Coverage of {r.region}[/bold], ruleset {r.ruleset_version}: {r.points:,} points sampled "
        f"({len(r.points_per_municipality)} municipalities, grid {r.spacing_m:g} m, plus points on and around "
        f"{sum(1 for s in router.registry.layers)} layers) × {len(CATEGORY_SLUGS)} categories",
        soft_wrap=True,
    )
    sample_layers = [s.id for s in router.registry.layers if s.sample]
    if sample_layers:
        console.print(f"[yellow]note[/yellow]: hand-made sample layers: {', '.join(sample_layers)}", soft_wrap=True)

    wins = Table(title="Decisions per rule (sampled point × category)", expand=False)
    wins.add_column("rule")
    wins.add_column("decides", justify="right")
    for rule in router.registry.rules:
        n = r.wins.get(rule.id, 0)
        wins.add_row(rule.id, f"{n:,}" if n else "[yellow]0 (never decides)[/yellow]")
    console.print(wins)

    if r.gaps:
        t = Table(title="[red]GAPS[/red]: no rule matches (meldingen would be dead-lettered as no-owner)", expand=False)
        for c in ("category", "municipality", "points", "example point (lon, lat)"):
            t.add_column(c)
        for g in r.gaps:
            t.add_row(g.category, f"{g.municipality_name} ({g.municipality_nis})", str(g.points), _pt(g.example))
        console.print(t)
    else:
        console.print("[green]no gaps[/green]: every category has an owner at every sampled point")

    if r.overlaps:
        t = Table(title="[yellow]OVERLAPS[/yellow]: a later layer rule also claims the place for another owner", expand=False)
        for c in ("category", "decides", "hidden claim", "points", "example point (lon, lat)"):
            t.add_column(c)
        for o in r.overlaps:
            t.add_row(
                o.category,
                f"{o.winner} → {o.winner_owner}",
                f"{o.hidden} → {o.hidden_owner}",
                str(o.points),
                f"{_pt(o.example)} in {o.example_municipality}",
            )
        console.print(t)
        console.print("  fix: reorder the rules, or list the hidden rule in the deciding rule's `overrides` if intended")
    else:
        console.print("[green]no overlaps[/green]: no layer rule is hidden by an earlier rule with another owner")

    if r.spills:
        t = Table(title="Layer spill: buffers reaching outside the region (those points are outside-region)", expand=False)
        for c in ("layer", "feature", "rule", "where", "points", "example point (lon, lat)"):
            t.add_column(c)
        for s in r.spills:
            t.add_row(s.layer_id, s.feature, s.rule_id, s.where, str(s.points), _pt(s.example))
        console.print(t)
    verdict = "[green]OK[/green]" if r.ok else f"[red]FAIL[/red]: {len(r.gaps)} gap(s)"
    console.print(f"{verdict}; {len(r.overlaps)} overlap(s), {len(r.spills)} layer spill(s)")


def _pt(point: tuple[float, float]) -> str:
    return f"({point[0]:.6f}, {point[1]:.6f})"


@app.command("asyncapi")
def asyncapi(
    output: Annotated[Path, typer.Option(help="Where to write the AsyncAPI document.")] = Path("docs/asyncapi.yaml"),
    examples: Annotated[
        Path | None, typer.Option(help="Also write one example record per topic into this folder (e.g. docs/topics).")
    ] = None,
    registry: RegistryOption = None,
    check_only: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the files on disk differ from what would be written.")
    ] = False,
) -> None:
    """Write the consumers' contract: AsyncAPI 3.0 for every topic (and example records)."""
    from hub.asyncapi import asyncapi_yaml, topic_examples
    from hub.registry import Registry

    reg = Registry.load(registry)
    wanted: dict[Path, str] = {output: asyncapi_yaml(reg)}
    if examples is not None:
        for name, text in topic_examples(reg).items():
            wanted[examples / name] = text
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if check_only:
        for p in stale:
            typer.echo(f"out of date: {p}")
        if stale:
            typer.echo("regenerate with: meldhub route asyncapi" + (f" --examples {examples}" if examples else ""))
            raise typer.Exit(code=1)
        typer.echo(f"up to date: {len(wanted)} file(s)")
        return
    for p, text in wanted.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {len(wanted)} file(s) ({len(stale)} changed): {output}" + (f", {examples}/" if examples else ""))
