"""hub.kafka_auth: MELDHUB_KAFKA_* → client arguments; the password never shows."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from hub.kafka_auth import KafkaAuth, KafkaAuthError, client_kwargs, confluent_config, principal_name


def test_default_is_plaintext_and_changes_nothing() -> None:
    assert client_kwargs({}) == {}
    assert confluent_config({}) == {"security.protocol": "plaintext"}
    assert principal_name({}) is None


def test_sasl_scram_from_env_and_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n", encoding="utf-8")
    env = {
        "MELDHUB_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "MELDHUB_KAFKA_SASL_USERNAME": "meldhub-hub",
        "MELDHUB_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    assert client_kwargs(env) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "meldhub-hub",
        "sasl_plain_password": "s3cret-from-file",
    }
    assert confluent_config(env) == {
        "security.protocol": "sasl_plaintext",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "meldhub-hub",
        "sasl.password": "s3cret-from-file",
    }
    assert principal_name(env) == "meldhub-hub"
    env["MELDHUB_KAFKA_SASL_PASSWORD"] = "direct"  # the variable wins over the file
    assert client_kwargs(env)["sasl_plain_password"] == "direct"
    assert "direct" not in repr(KafkaAuth.from_env(env))


def test_sasl_ssl_builds_an_ssl_context(tmp_path: Path) -> None:
    from hub.kafka_local import _write_self_signed_tls

    _write_self_signed_tls(tmp_path)
    env = {
        "MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MELDHUB_KAFKA_SASL_USERNAME": "u",
        "MELDHUB_KAFKA_SASL_PASSWORD": "p",
        "MELDHUB_KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
    }
    kwargs = client_kwargs(env)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert confluent_config(env)["ssl.ca.location"] == str(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MELDHUB_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, "SECURITY_PROTOCOL"),
        ({"MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "SASL_USERNAME"),
        ({"MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MELDHUB_KAFKA_SASL_USERNAME": "u"}, "SASL_PASSWORD"),
        (
            {"MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MELDHUB_KAFKA_SASL_USERNAME": "u",
             "MELDHUB_KAFKA_SASL_PASSWORD": "p", "MELDHUB_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "SASL_MECHANISM",
        ),
        (
            {"MELDHUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MELDHUB_KAFKA_SASL_USERNAME": "u",
             "MELDHUB_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
            "cannot read",
        ),
    ],
)  # fmt: skip
def test_incomplete_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaAuthError, match=message):
        client_kwargs(env)
