"""Signalen private API client (httpx): create a signal, find one by the melding id, read changes.

Auth: ``Authorization: Bearer <token>``. Every failure becomes an adapter error class
(:mod:`adapters.base`): timeouts and 5xx/429 are transient (retried by the caller, bounded),
401/403 auth, other 4xx rejected (Signalen answers DRF-style ``{"field": ["message"]}``), an answer
that is not the documented JSON malformed. Lists are HAL pages (``_links.next.href``, ``results``);
``next`` links are followed only on the configured host, so the token never goes elsewhere.

**Look-up by melding id.** Signalen's list filters have nothing on ``extra_properties`` or
``text_extra`` (``SignalFilterSet``), so :meth:`SignalenClient.find_by_reference` lists the signals
of the hub's ``source`` created since a given moment (``created_after``, newest first) and matches
the reference in each (:func:`adapters.signalen.translate.reference_of`). The moment is the first
create attempt (or the melding's submission) minus a clock-skew margin, so the scan is short. If
the scan reaches ``max_pages`` without a match the absence cannot be proven and the look-up fails
with ``VendorRejected`` (a person decides) rather than risking a second signal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.base import VendorMalformed, VendorRejected
from adapters.base import call_vendor, vendor_json

SIGNALS = "/signals/v1/private/signals/"


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SignalenClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = urlsplit(self.base_url)[:2]
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "Authorization": f"Bearer {token}"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await call_vendor(self.http, f"Signalen {method} {urlsplit(url).path or url}", method, url, **kwargs)

    _json = staticmethod(vendor_json)

    async def create_signal(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._call("POST", SIGNALS, json=body)
        signal = self._json(response, "Signalen POST signals")
        if not isinstance(signal, dict):
            raise VendorMalformed("Signalen POST signals: expected a JSON signal object")
        return signal

    async def get_signal(self, signal_id: int) -> dict[str, Any]:
        response = await self._call("GET", f"{SIGNALS}{signal_id}")
        signal = self._json(response, "Signalen GET signal")
        if not isinstance(signal, dict):
            raise VendorMalformed("Signalen GET signal: expected a JSON signal object")
        return signal

    async def _pages(self, params: dict[str, Any], max_pages: int,
                     stop: Callable[[list[dict[str, Any]]], bool] = lambda _: False) -> tuple[list[dict[str, Any]], bool]:
        """Results of a list query, page by page until ``stop`` says so or no ``next`` remains;
        (results, complete). ``complete`` is False when ``max_pages`` cut the list short."""
        out: list[dict[str, Any]] = []
        url: str | None = SIGNALS
        query: dict[str, Any] | None = params
        for _ in range(max_pages):
            assert url is not None
            response = await self._call("GET", url, params=query)
            page = self._json(response, "Signalen GET signals")
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise VendorMalformed("Signalen GET signals: expected a HAL page with a 'results' list")
            out += results
            if stop(results):
                return out, True
            url = _next_href(page)
            if url is None:
                return out, True
            if urlsplit(url)[:2] != self._origin:
                raise VendorMalformed(f"Signalen GET signals: next page on another host ({urlsplit(url).netloc})")
            query = None  # the next link carries the query
        return out, False

    async def find_by_reference(self, melding_id: str, created_after: datetime, source: str,
                                matches: Callable[[dict[str, Any]], bool], max_pages: int = 50) -> dict[str, Any] | None:
        """The signal of the hub's ``source`` created since ``created_after`` that ``matches`` (the
        oldest if several), or None. VendorRejected when ``max_pages`` did not cover the window."""
        params = {"source": source, "created_after": iso(created_after), "ordering": "-created_at"}
        results, complete = await self._pages(params, max_pages, stop=lambda page: any(matches(s) for s in page))
        found = [s for s in results if matches(s)]
        if found:
            return sorted(found, key=lambda s: (str(s.get("created_at") or ""), s.get("id") or 0))[0]
        if not complete:
            raise VendorRejected(
                f"Signalen look-up for melding {melding_id}: more than {max_pages} pages of signals since "
                f"{iso(created_after)}; cannot prove none exists, so none is created (check Signalen, then replay)"
            )
        return None

    async def updated_since(self, since: datetime, source: str, max_pages: int = 50) -> tuple[list[dict[str, Any]], bool]:
        """Signals of ``source`` updated at or after ``since``, oldest update first; (signals, complete)."""
        return await self._pages({"source": source, "updated_after": iso(since), "ordering": "updated_at"}, max_pages)


def _next_href(page: dict[str, Any]) -> str | None:
    links = page.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    return href if isinstance(href, str) and href else None
