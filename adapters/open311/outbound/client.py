"""GeoReport v2 client for an authority's Open311 server (httpx), JSON format.

Every failure becomes an adapter error class (:mod:`adapters.base`): timeouts and 5xx/429
transient, 401/403 auth, other 4xx rejected, an answer that is not JSON malformed. Error reasons
are scrubbed of e-mail addresses and phone numbers: a server may echo a submitted field in its
error body, and reasons end up in logs and dead-letter headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from adapters.base import VendorError, VendorMalformed, VendorRejected, call_vendor
from adapters.open311.translate import loads_lenient
from hub.deadletters import scrub_text


def w3c(when: datetime) -> str:
    """A W3C date-time in UTC, second precision (what every GeoReport server reads)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GeoReportClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        jurisdiction_id: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.jurisdiction_id = jurisdiction_id
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout, transport=transport,
                                      headers={"Accept": "application/json"})

    async def aclose(self) -> None:
        await self.http.aclose()

    def _params(self, **extra: str) -> dict[str, str]:
        params = {"api_key": self.api_key, **extra}
        if self.jurisdiction_id:
            params["jurisdiction_id"] = self.jurisdiction_id
        return params

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        what = f"Open311 {method} {path}"
        try:
            response = await call_vendor(self.http, what, method, path, **kwargs)
        except VendorError as error:
            error.reason = scrub_text(error.reason)
            raise
        try:
            return loads_lenient(response.text)
        except ValueError:
            raise VendorMalformed(f"{what}: the answer is not JSON (HTTP {response.status_code})") from None

    async def create(self, form: Mapping[str, str]) -> Any:
        """``POST requests.json`` with the form fields (url-encoded)."""
        return await self._json("POST", "requests.json", data=dict(form))

    async def requests_by_id(self, ids: Sequence[str]) -> Any:
        """``GET requests.json?service_request_id=a,b,c`` (the spec: overrides every other filter)."""
        return await self._json("GET", "requests.json", params=self._params(service_request_id=",".join(ids)))

    async def requests_between(self, service_code: str, start: datetime, end: datetime) -> Any:
        """``GET requests.json`` of one service_code requested between ``start`` and ``end``."""
        return await self._json("GET", "requests.json",
                                params=self._params(service_code=service_code, start_date=w3c(start), end_date=w3c(end)))

    async def token(self, token: str) -> Any | None:
        """``GET tokens/{token}.json``; None while the server does not know it (404)."""
        try:
            return await self._json("GET", f"tokens/{quote(token, safe='')}.json", params=self._params())
        except VendorRejected as error:
            if "HTTP 404" in error.reason:
                return None
            raise

    async def updates(self, start: datetime, end: datetime) -> Any:
        """FixMyStreet's ``GET servicerequestupdates.json`` between ``start`` and ``end``."""
        return await self._json("GET", "servicerequestupdates.json",
                                params=self._params(start_date=w3c(start), end_date=w3c(end)))
