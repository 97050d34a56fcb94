"""``meldhub validate FILE...``: check melding files against the hub's shapes before sending them.

Why a CLI: adapter developers and admins replaying dead letters need the same verdict the hub
would give, with the same reasons, without a Kafka broker. Exit code 0 only if every file
conforms; 1 if any file is unreadable, not JSON, not a JSON-LD melding or violates the shapes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the validator pulls in rdflib/pyshacl: import only when the command runs
    from rich.table import Table

    from hub.validation import ShaclValidator, ValidationResult


def validate(
    files: Annotated[list[Path], typer.Argument(help="Melding files (JSON-LD) to validate.", show_default=False)],
) -> None:
    from rich.console import Console

    from hub.validation import ShaclValidator, ValidationResult

    # Wide output when piped (CI logs, tests): rich would otherwise wrap at 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    validator = ShaclValidator()
    failed = 0
    for path in files:
        verdict = _check(validator, path)
        if isinstance(verdict, ValidationResult) and verdict.conforms:
            console.print(f"[green]OK[/green]   {path}")
            continue
        failed += 1
        if isinstance(verdict, ValidationResult):
            console.print(
                f"[red]FAIL[/red] {path}: {len(verdict.violations)} violation(s)" + _kind(verdict), soft_wrap=True
            )
            console.print(_table(verdict))
        else:
            console.print(f"[red]FAIL[/red] {path}: {verdict}", soft_wrap=True)
    if len(files) > 1:
        console.print(f"{len(files) - failed} of {len(files)} file(s) valid")
    if failed:
        raise typer.Exit(code=1)


def _check(validator: ShaclValidator, path: Path) -> ValidationResult | str:
    """The validation result, or a one-line reason why the file could not be validated."""
    from hub.errors import HubError
    from hub.jsonld import decode_json

    try:
        raw = path.read_bytes()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    try:
        return validator.validate(decode_json(raw))
    except HubError as e:
        return f"{e.error_class.value}: {e.reason}"


def _kind(result: ValidationResult) -> str:
    return " (unknown-category)" if result.is_unknown_category else " (shape-violation)"


def _table(result: ValidationResult) -> Table:
    from rich.table import Table

    table = Table(show_lines=True, expand=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("problem", ratio=3)
    table.add_column("value", overflow="fold", ratio=2)
    table.add_column("where", overflow="fold", ratio=2)
    for v in result.violations:
        table.add_row(
            v.field or v.path or "(node)",
            v.component.removesuffix("ConstraintComponent"),
            v.message,
            v.value or "",
            v.focus_node,
        )
    return table
