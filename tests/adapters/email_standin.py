"""A real SMTP server for the tests (aiosmtpd, in a thread on a free loopback port) that keeps every
accepted message and can refuse with injected SMTP codes, or require a login."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import warnings
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from hub.kafka_local import free_port

# the stand-in accepts AUTH without TLS on loopback on purpose (the adapter's login path is what is tested)
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


class SmtpStandIn:
    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        """(envelope sender, envelope recipients, parsed message) per accepted message."""
        self.faults: list[int] = []
        """Consumed one per DATA: the SMTP reply code to refuse that message with."""
        self.logins: list[str] = []
        self._lock = threading.Lock()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if login is not None:
            user, password = login

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
                with self._lock:
                    self.logins.append(data.login.decode() if isinstance(data, LoginPassword) else "?")
                return AuthResult(success=ok, handled=False)

            kwargs = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.faults:
                code = self.faults.pop(0)
                return f"{code} {'try again later' if code < 500 else 'message refused'} (injected)"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"

    def start(self) -> SmtpStandIn:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def for_melding(self, melding_id: str) -> list[EmailMessage]:
        with self._lock:
            return [m for _, _, m in self.messages if m["X-Meldingen-Melding-Id"] == melding_id]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def status_link(message: EmailMessage) -> str:
    match = re.search(r"https?://\S+/status/\S+", text_of(message))
    assert match, "no status link in the mail"
    return match.group(0)


class SilentServer:
    """Accepts TCP connections and never says a word (an SMTP server that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()
