"""Outgoing webhook delivery (httpx), failures as adapter error classes.

2xx = accepted; 409 = the receiver already has this ``Idempotency-Key`` (accepted before: treated
as delivered). 401/403 ``vendor-auth`` (wrong key), 408/425/429/5xx and connection errors
``vendor-unavailable`` and timeouts ``vendor-timeout`` (retried), any other answer (other 4xx, a
redirect) ``vendor-rejected``. Redirects are not followed: the signed body goes only to ``url``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from adapters.base import VendorTimeout, VendorUnavailable, error_for_status
from adapters.webhook.translate import outgoing_headers


class WebhookClient:
    def __init__(self, url: str, key: bytes, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.url = url
        self.key = key
        self.clock = clock
        self.http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def deliver(self, body: bytes, melding_id: str) -> int:
        """POST the melding; returns the HTTP status (2xx or 409) when the receiver has it."""
        what = "webhook POST"
        headers = outgoing_headers(self.key, body, melding_id, self.clock())
        try:
            response = await self.http.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as e:
            raise VendorTimeout(f"{what}: timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise VendorUnavailable(f"{what}: {type(e).__name__}") from e
        if 200 <= response.status_code < 300 or response.status_code == 409:
            return response.status_code
        raise error_for_status(response.status_code, what, response.text, response.headers.get("retry-after"))
