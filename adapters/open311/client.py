"""A GeoReport v2 client (httpx): talk to any Open311 endpoint — the hub's own (smoke tests,
operators) or, later, an authority's Open311 back end.

Answers are read by :mod:`adapters.open311.translate` (lenient JSON, XML); HTTP failures become
the adapters' vendor error classes, and the spec's error bodies (``[{code, description}]``) are
kept in the error's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from adapters.base import VendorMalformed, VendorTimeout, VendorUnavailable, error_for_status
from adapters.open311.translate import ServiceRequest, loads_lenient, parse_service_requests


class Open311Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        fmt: str = "json",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.fmt = fmt
        self.api_key = api_key
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Open311Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise VendorTimeout(f"Open311 {method} {path}: timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise VendorUnavailable(f"Open311 {method} {path}: {type(e).__name__}") from e
        if response.status_code >= 400:
            raise error_for_status(
                response.status_code, f"Open311 {method} {path}", response.text, response.headers.get("retry-after")
            )
        return response

    def _parse(self, response: httpx.Response) -> Any:
        try:
            return loads_lenient(response.text)
        except ValueError as e:
            raise VendorMalformed(f"Open311 answer is not JSON: {e}") from e

    async def services(self) -> list[dict[str, Any]]:
        return self._parse(await self._call("GET", f"services.{self.fmt}"))

    async def service_definition(self, code: str) -> dict[str, Any]:
        return self._parse(await self._call("GET", f"services/{code}.{self.fmt}"))

    async def create(self, fields: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
        """POST requests; returns the first ``{service_request_id | token, service_notice, account_id}``."""
        data: dict[str, Any] = dict(fields)
        if self.api_key is not None:
            data.setdefault("api_key", self.api_key)
        answer = self._parse(await self._call("POST", f"requests.{self.fmt}", data=data))
        if not isinstance(answer, list) or not answer or not isinstance(answer[0], dict):
            raise VendorMalformed("POST requests: expected a list with one object")
        return answer[0]

    async def requests(self, **params: str) -> list[ServiceRequest]:
        response = await self._call("GET", f"requests.{self.fmt}", params=params)
        return self._requests(response)

    async def request(self, request_id: str) -> ServiceRequest | None:
        try:
            response = await self._call("GET", f"requests/{request_id}.{self.fmt}")
        except Exception as e:
            if getattr(e, "reason", "").find("HTTP 404") >= 0:
                return None
            raise
        found = self._requests(response)
        return found[0] if found else None

    async def token(self, token: str) -> dict[str, Any]:
        answer = self._parse(await self._call("GET", f"tokens/{token}.{self.fmt}"))
        return answer[0] if isinstance(answer, list) and answer else answer

    async def updates(self, **params: str) -> list[dict[str, Any]]:
        return self._parse(await self._call("GET", f"servicerequestupdates.{self.fmt}", params=params))

    def _requests(self, response: httpx.Response) -> list[ServiceRequest]:
        try:
            return parse_service_requests(response.text, self.fmt)
        except (ValueError, KeyError) as e:
            raise VendorMalformed(f"Open311 requests answer: {e}") from e
