"""How the hub, its adapters and its CLI authenticate to Kafka: settings from the environment.

One place turns ``MELDHUB_KAFKA_*`` variables into keyword arguments for every Kafka client the
project builds, so that switching a deployment from the PLAINTEXT development broker to a
SASL/SCRAM (and optionally TLS) cluster is configuration only:

=====================================  =========================================================
``MELDHUB_KAFKA_SECURITY_PROTOCOL``    ``PLAINTEXT`` (default), ``SASL_PLAINTEXT``, ``SASL_SSL``
                                       or ``SSL``
``MELDHUB_KAFKA_SASL_MECHANISM``       ``SCRAM-SHA-256`` (default), ``SCRAM-SHA-512``, ``PLAIN``
``MELDHUB_KAFKA_SASL_USERNAME``        the principal's name (``User:<name>`` in ACLs)
``MELDHUB_KAFKA_SASL_PASSWORD``        its password, or
``MELDHUB_KAFKA_SASL_PASSWORD_FILE``   a file holding it (first line; preferred: not in ``ps e``)
``MELDHUB_KAFKA_SSL_CAFILE``           PEM file of the CA(s) to trust (``*_SSL``; default: system)
``MELDHUB_KAFKA_SSL_CERTFILE`` /       a client certificate and key (PEM), when the cluster asks
``MELDHUB_KAFKA_SSL_KEYFILE``          for one
=====================================  =========================================================

:func:`client_kwargs` gives aiokafka's arguments (``AIOKafkaProducer(**client_kwargs(), …)``, the
same for consumers and ``AIOKafkaAdminClient``); :func:`confluent_config` gives confluent-kafka's
(``meldhub acl``, ``meldhub gdpr``). With nothing set both return the PLAINTEXT defaults, so
existing deployments and the test broker are unchanged. The password is never part of a
``repr``, a log line or an error message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
ENV_PREFIX = "MELDHUB_KAFKA_"


class KafkaAuthError(ValueError):
    """The Kafka security settings are incomplete or contradictory (the message says which)."""


@dataclass(frozen=True)
class KafkaAuth:
    """Resolved client security settings. ``password`` is excluded from ``repr``."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-256"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise KafkaAuthError(
                f"{ENV_PREFIX}SECURITY_PROTOCOL={self.security_protocol!r}: use one of {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaAuthError(
                    f"{ENV_PREFIX}SASL_MECHANISM={self.sasl_mechanism!r}: use one of {', '.join(MECHANISMS)}"
                )
            if not self.username:
                raise KafkaAuthError(f"{self.security_protocol} needs {ENV_PREFIX}SASL_USERNAME")
            if not self.password:
                raise KafkaAuthError(
                    f"{self.security_protocol} needs {ENV_PREFIX}SASL_PASSWORD or {ENV_PREFIX}SASL_PASSWORD_FILE "
                    f"(user {self.username!r})"
                )

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaAuth:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value.strip() if value and value.strip() else None

        password = get("SASL_PASSWORD")
        password_file = get("SASL_PASSWORD_FILE")
        if password is None and password_file is not None:
            try:
                password = Path(password_file).read_text(encoding="utf-8").splitlines()[0].strip() or None
            except (OSError, IndexError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "empty file"
                raise KafkaAuthError(f"{ENV_PREFIX}SASL_PASSWORD_FILE={password_file}: cannot read it ({reason})") from None
        return cls(
            security_protocol=(get("SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(get("SASL_MECHANISM") or "SCRAM-SHA-256").upper(),
            username=get("SASL_USERNAME"),
            password=password,
            ssl_cafile=get("SSL_CAFILE"),
            ssl_certfile=get("SSL_CERTFILE"),
            ssl_keyfile=get("SSL_KEYFILE"),
        )

    def with_user(self, username: str, password: str) -> KafkaAuth:
        """The same connection settings for another principal (tests, ``acl`` checks)."""
        protocol = self.security_protocol if self.sasl else "SASL_PLAINTEXT"
        return KafkaAuth(
            protocol, self.sasl_mechanism, username, password, self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/``AIOKafkaAdminClient``.

        Empty for PLAINTEXT, so adding ``**client_kwargs()`` to a client changes nothing there.
        """
        if self.security_protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def confluent_config(self) -> dict[str, str]:
        """librdkafka properties (``confluent_kafka.admin.AdminClient({**…, "bootstrap.servers": …})``)."""
        config = {"security.protocol": self.security_protocol.lower()}
        if self.sasl:
            config.update(
                {"sasl.mechanisms": self.sasl_mechanism, "sasl.username": self.username or "", "sasl.password": self.password or ""}
            )
        if self.tls:
            if self.ssl_cafile:
                config["ssl.ca.location"] = self.ssl_cafile
            if self.ssl_certfile:
                config["ssl.certificate.location"] = self.ssl_certfile
            if self.ssl_keyfile:
                config["ssl.key.location"] = self.ssl_keyfile
        return config


def client_kwargs(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments from ``MELDHUB_KAFKA_*`` (empty for the PLAINTEXT default)."""
    return KafkaAuth.from_env(env).aiokafka_kwargs()


def confluent_config(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """confluent-kafka (librdkafka) properties from ``MELDHUB_KAFKA_*``."""
    return KafkaAuth.from_env(env).confluent_config()


def principal_name(env: Mapping[str, str] | None = None) -> str | None:
    """The SASL user this process connects as (None for PLAINTEXT): who did it, for audit records."""
    auth = KafkaAuth.from_env(env)
    return auth.username if auth.sasl else None
