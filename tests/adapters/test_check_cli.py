"""``meldhub adapters check`` reports each authority adapter's way of saying "not ours", and fails on
a refusal mapping that cannot work."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from adapters.registry import DEFAULT_CONFIG
from hub.cli.adapters_cmd import app


def test_check_lists_refusal_mappings_of_the_shipped_region() -> None:
    result = CliRunner().invoke(app, ["check", "-v"])
    assert result.exit_code == 0, result.output
    assert "refusal: TOPdesk status 'Niet bevoegd'" in result.output
    assert "Stad Kortrijk is niet bevoegd" in result.output  # the reason, in the -v table
    assert "refusal: none configured" in result.output  # Signalen has no 'not ours' state by default
    assert "refusal: status form option 'Niet onze bevoegdheid'" in result.output
    assert 'refusal: inbound {"actie": "weigeren"' in result.output


def test_check_fails_on_a_refusal_status_mapped_to_a_status(tmp_path: Path) -> None:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    topdesk = next(a for a in doc["adapters"] if a["vendor"] == "topdesk")
    topdesk["processing_statuses"]["Niet bevoegd"] = "751"
    path = tmp_path / "adapters.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 1
    assert "refusal status 'Niet bevoegd' maps to 751" in " ".join(result.output.split())
