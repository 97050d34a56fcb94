"""SMTP delivery (stdlib ``smtplib`` in a worker thread), failures as adapter error classes.

| SMTP outcome | class |
|---|---|
| connection refused/reset, 4xx, server disconnected | ``vendor-unavailable`` (retried) |
| no answer within ``timeout_s`` | ``vendor-timeout`` (retried) |
| 530/534/535 authentication | ``vendor-auth`` |
| other 5xx (sender or every recipient refused, message refused) | ``vendor-rejected`` |
| some recipients refused, others accepted | delivered (the refused ones are logged by count) |
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from email.message import EmailMessage

from adapters.base import VendorAuthFailed, VendorError, VendorRejected, VendorTimeout, VendorUnavailable


class SmtpClient:
    def __init__(self, host: str, port: int, security: str = "starttls", login: tuple[str, str] | None = None,
                 timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.security, self.login, self.timeout = host, port, security, login, timeout
        self.ssl_context = ssl_context or ssl.create_default_context()

    async def send(self, message: EmailMessage, envelope_from: str, to: list[str]) -> int:
        """Deliver to the SMTP server; returns how many recipients it refused (0 normally)."""
        return await asyncio.to_thread(self._send, message, envelope_from, to)

    def _send(self, message: EmailMessage, envelope_from: str, to: list[str]) -> int:
        what = f"SMTP {self.host}:{self.port}"
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.ssl_context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self.ssl_context)
                if self.login is not None:
                    _login(smtp, *self.login)
                refused = smtp.send_message(message, from_addr=envelope_from, to_addrs=to)
            return len(refused)
        except (TimeoutError, socket.timeout) as e:
            raise VendorTimeout(f"{what}: no answer within {self.timeout:g}s") from e
        except smtplib.SMTPAuthenticationError as e:
            raise VendorAuthFailed(f"{what}: authentication failed ({e.smtp_code})") from e
        except smtplib.SMTPRecipientsRefused as e:
            codes = sorted({code for code, _ in e.recipients.values()})
            raise _by_code(codes[0] if codes else 550, f"{what}: every recipient refused (codes {codes})") from e
        except smtplib.SMTPResponseException as e:  # sender refused, data refused, 4xx/5xx replies
            raise _by_code(e.smtp_code, f"{what}: {e.smtp_code} {_text(e.smtp_error)}") from e
        except smtplib.SMTPServerDisconnected as e:
            if isinstance(e.__context__, TimeoutError):  # smtplib reports a read timeout as a disconnect
                raise VendorTimeout(f"{what}: no answer within {self.timeout:g}s") from e
            raise VendorUnavailable(f"{what}: the server closed the connection") from e
        except smtplib.SMTPNotSupportedError as e:
            raise VendorRejected(f"{what}: {e}") from e
        except (ssl.SSLError, smtplib.SMTPException, OSError) as e:
            raise VendorUnavailable(f"{what}: {type(e).__name__}") from e


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """One mechanism (PLAIN, else LOGIN, else CRAM-MD5): refused credentials are refused, whichever is tried
    (``smtplib.login`` would try the next one, and some servers hang up on a second failed attempt)."""
    smtp.ehlo_or_helo_if_needed()
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN", "CRAM-MD5") if m in offered), None)
    if mechanism is None:
        raise VendorRejected(f"SMTP {smtp._host}: the server offers no AUTH mechanism the adapter knows ({offered})")
    smtp.user, smtp.password = user, password
    smtp.auth(mechanism, getattr(smtp, "auth_" + mechanism.lower().replace("-", "_")))


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]


def _by_code(code: int, reason: str) -> VendorError:
    if code in (530, 534, 535):
        return VendorAuthFailed(reason)
    if 400 <= code < 500 or code < 400:
        return VendorUnavailable(reason)
    return VendorRejected(reason)
