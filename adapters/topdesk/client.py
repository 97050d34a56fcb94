"""TOPdesk REST API client (httpx): incidents by externalNumber, create, changes since a date.

Auth is HTTP Basic with the operator's login name and an *application password*. Every
failure is turned into an adapter error class (:mod:`adapters.base`): timeouts and
5xx/429 are transient (retried by the caller, bounded), 401/403 auth, other 4xx rejected,
an answer that is not the documented JSON malformed. List answers follow TOPdesk: 200 all
results, 206 partial (more pages), 204 no results.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from adapters.base import VendorMalformed
from adapters.topdesk.translate import fiql_datetime
from adapters.base import call_vendor, vendor_json

INCIDENTS = "/tas/api/incidents"


class TopdeskClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(username, password),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await call_vendor(self.http, f"TOPdesk {method} {url}", method, url, **kwargs)

    _json = staticmethod(vendor_json)

    async def _list(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        response = await self._call("GET", INCIDENTS, params=params)
        if response.status_code == 204 or not response.content.strip():
            return [], False
        items = self._json(response, "TOPdesk GET incidents")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise VendorMalformed("TOPdesk GET incidents: expected a JSON list of incidents")
        return items, response.status_code == 206

    async def find_by_external_number(self, external_number: str) -> dict[str, Any] | None:
        """The incident whose externalNumber is ``external_number`` (the oldest if several), or None."""
        items, _ = await self._list({"query": f"externalNumber=={external_number}", "pageSize": 10})
        matching = [i for i in items if i.get("externalNumber") == external_number]
        if not matching:
            return None
        return sorted(matching, key=lambda i: str(i.get("creationDate") or ""))[0]

    async def create_incident(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._call("POST", INCIDENTS, json=body)
        incident = self._json(response, "TOPdesk POST incidents")
        if not isinstance(incident, dict):
            raise VendorMalformed("TOPdesk POST incidents: expected a JSON incident object")
        return incident

    async def modified_since(self, since: datetime, page_start: int = 0, page_size: int = 100) -> tuple[list[dict[str, Any]], bool]:
        """Incidents changed after ``since``, oldest change first; (page, more pages follow)."""
        return await self._list(
            {
                "query": f"modificationDate=gt={fiql_datetime(since)}",
                "sort": "modificationDate:asc",
                "pageStart": page_start,
                "pageSize": page_size,
            }
        )
