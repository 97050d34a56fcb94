"""``meldhub validate`` as an operator runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.paths import examples_dir

VALID = sorted((examples_dir() / "valid").glob("*.jsonld"))
INVALID_DIR = examples_dir() / "invalid"


def meldhub(*args: str | Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("meldhub")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from hub.cli import main; main()"]
    return subprocess.run(
        [*command, "validate", *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_valid_files_exit_zero() -> None:
    run = meldhub(*VALID)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("OK") == len(VALID)
    assert f"{len(VALID)} of {len(VALID)} file(s) valid" in run.stdout


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing-titel", ["titel", "MinCount", "required"]),
        ("unknown-category", ["meldingstype", "type", "unknown-category"]),
        ("bad-status-value", ["statuswaarde", "MeldingStatuswaarde"]),
        ("geometry-without-wkt-or-gml", ["wkt|gml", "at least one"]),
        ("bad-statusdatum", ["statusdatum", "Datatype"]),
    ],
)
def test_invalid_file_exits_non_zero_and_names_the_field(name: str, words: list[str]) -> None:
    run = meldhub(INVALID_DIR / f"{name}.jsonld")
    assert run.returncode == 1
    assert "FAIL" in run.stdout
    for word in words:
        assert word in run.stdout, word
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("not-json", "not-json"),
        ("not-jsonld-no-context", "no @context"),
        ("not-jsonld-unknown-context", "unknown remote context"),
        ("not-jsonld-no-melding", "Melding"),
    ],
)
def test_not_json_or_not_jsonld_exits_non_zero_with_reason(name: str, reason: str) -> None:
    run = meldhub(INVALID_DIR / f"{name}.jsonld")
    assert run.returncode == 1
    assert reason in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_personal_data_not_printed() -> None:
    run = meldhub(INVALID_DIR / "bad-email.jsonld")
    assert run.returncode == 1
    assert "email" in run.stdout and "«redacted»" in run.stdout
    assert "an.vermeulen-at-example.org" not in run.stdout


def test_mixed_files_and_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "bestaat-niet.jsonld"
    run = meldhub(VALID[0], INVALID_DIR / "missing-titel.jsonld", missing)
    assert run.returncode == 1
    assert "OK" in run.stdout and "cannot read" in run.stdout
    assert "1 of 3 file(s) valid" in run.stdout


def test_no_arguments_is_a_usage_error() -> None:
    assert meldhub().returncode == 2
