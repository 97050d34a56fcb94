"""The CLI entry points of issue 7 without a broker: options reach the code, secrets never print."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.cli import kafka_cmd
from hub.cli.acl_cmd import app as acl_app
from hub.cli.gdpr_cmd import app as gdpr_app
from hub.kafka_local import LocalKafka
from hub.privacy import public_key_of
from tests.security.conftest import REGISTRY


class _FakeKafka(LocalKafka):
    """LocalKafka whose broker start is replaced: records what ``up`` was asked for."""

    created: list[_FakeKafka] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _FakeKafka.created.append(self)

    def up(self, timeout: float = 90.0) -> str:
        self.admin_password()  # what a real start does first: generate the password file
        return self.bootstrap_servers

    def status(self) -> dict[str, Any]:
        return {"running": False, "pid": 1, "version": "x",
                "bootstrap": self.bootstrap_servers, "workdir": str(self.workdir), "log": "",
                "security_protocol": self.security_protocol}  # fmt: skip


def test_kafka_up_secure_generates_a_private_admin_password_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MELDHUB_KAFKA_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MELDHUB_KAFKA_ADMIN_PASSWORD_FILE", raising=False)
    monkeypatch.setattr(kafka_cmd, "LocalKafka", _FakeKafka)
    result = CliRunner().invoke(kafka_cmd.app, ["up", "--secure", "--workdir", str(tmp_path), "--port", "19092"])
    assert result.exit_code == 0, result.output
    kafka = _FakeKafka.created[-1]
    assert kafka.secure and not kafka.tls
    password_file = tmp_path / "admin.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert f"MELDHUB_KAFKA_SASL_PASSWORD_FILE={password_file}" in result.output
    assert "MELDHUB_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in result.output
    assert password_file.read_text().strip() not in result.output


def test_kafka_up_secure_takes_the_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELDHUB_KAFKA_ADMIN_PASSWORD", "a-long-admin-password-from-env")
    monkeypatch.setattr(kafka_cmd, "LocalKafka", _FakeKafka)
    result = CliRunner().invoke(kafka_cmd.app, ["up", "--secure", "--tls", "--workdir", str(tmp_path), "--port", "19093"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "admin.password").exists()
    assert "a-long-admin-password-from-env" not in result.output
    assert "MELDHUB_KAFKA_SSL_CAFILE=" in result.output
    assert _FakeKafka.created[-1].tls


def test_kafka_tls_needs_secure_and_weak_admin_passwords_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(kafka_cmd.app, ["up", "--tls", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "--tls needs --secure" in result.output
    from hub.kafka_local import LocalKafkaError

    for weak in ("short", 'has"quote-and-is-long', "has space and is long"):
        with pytest.raises(LocalKafkaError):
            LocalKafka(tmp_path, secure=True, admin_password=weak).admin_password()


def test_a_plaintext_work_dir_cannot_be_started_secure(tmp_path: Path) -> None:
    """A work dir is formatted once: without the admin user a secure start would lock everyone out."""
    from hub.kafka_local import LocalKafkaError

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("cluster.id=x\n")
    with pytest.raises(LocalKafkaError, match="formatted without --secure"):
        LocalKafka(tmp_path, secure=True)._check_secure_mode()


def test_acl_plan_needs_no_cluster(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters.yaml"
    adapters.write_text("adapters:\n  - {id: open311-zwvl, vendor: open311}\n", encoding="utf-8")
    result = CliRunner().invoke(acl_app, ["plan", "--registry", str(REGISTRY), "--adapters", str(adapters),
                                          "--retention", "kortrijk=90"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "User:authority-kortrijk  (authority: kortrijk)" in result.output
    assert "READ             topic:meldingen.authority.kortrijk" in result.output
    assert f"meldingen.authority.kortrijk: cleanup.policy=delete, retention.ms={90 * 86400000}" in result.output
    bad = CliRunner().invoke(acl_app, ["plan", "--registry", str(REGISTRY), "--retention", "nowhere=3"])
    assert bad.exit_code == 1 and "unknown authorities" in bad.output


def test_gdpr_keygen_writes_a_private_key_file_and_prints_the_public_key(tmp_path: Path) -> None:
    key_file = tmp_path / "kortrijk.key"
    result = CliRunner().invoke(gdpr_app, ["keygen", "kortrijk", "--private-key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = base64.b64decode(key_file.read_text().strip())
    assert base64.b64encode(public_key_of(private)).decode() in result.output
    assert key_file.read_text().strip() not in result.output
    again = CliRunner().invoke(gdpr_app, ["keygen", "kortrijk", "--private-key-file", str(key_file)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
