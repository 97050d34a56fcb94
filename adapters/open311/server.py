"""The Open311 GeoReport v2 HTTP endpoint (Starlette), independent of Kafka.

Everything with side effects is injected — the store, the ``publish`` coroutine that puts a
melding on ``meldingen.inbound`` and waits for the broker's acknowledgement, the SHACL check
and the region check — so the HTTP behaviour is tested without a broker and
:mod:`adapters.open311.service` only wires the real ones in.

Resources (``{fmt}`` = ``json`` or ``xml``, under ``config.base_path``):

====================================  =====================================================
``GET  services.{fmt}``               the hub's categories as services
``GET  services/{code}.{fmt}``        service definition (attributes)
``POST requests.{fmt}``               submit (form-encoded, ``api_key`` required)
``GET  requests.{fmt}``               ``service_request_id``, ``service_code``, ``start_date``,
                                      ``end_date`` (≤ 90 days), ``status``
``GET  requests/{id}.{fmt}``          one request with its current status and ``status_notes``
``GET  tokens/{token}.{fmt}``         token → service_request_id
``GET  servicerequestupdates.{fmt}``  FixMyStreet: status changes in a time window
``POST servicerequestupdates.{fmt}``  FixMyStreet: a citizen's update (kept, acknowledged)
====================================  =====================================================
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.open311 import translate as t
from adapters.open311.config import EXTENDED_STATUSES, Config
from adapters.open311.store import Store
from hub import logs
from hub.jsonld import HUB_CONTEXT_IRI
from hub.ratelimit import RateLimiter
from hub.topics import JSONLD_CONTENT_TYPE, Header

log = logs.get_logger("adapters.open311")

Publish = Callable[[bytes, bytes, tuple[tuple[str, bytes], ...]], Awaitable[None]]
ShapeCheck = Callable[[dict[str, Any]], str | None]
"""Returns None when the melding conforms, else a one-line reason (no personal data)."""
RegionCheck = Callable[[float, float], str | None]
"""(lon, lat) → None when the point is served, else a reason."""


class PublishFailed(RuntimeError):
    pass


def _respond(kind: str, payload: Any, fmt: str, status_code: int = 200) -> Response:
    body, media = t.render(kind, payload, fmt if fmt in t.FORMATS else "json")
    return Response(body, status_code=status_code, media_type=media)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _fmt(request: Request) -> str:
    fmt = request.path_params.get("fmt", "json").lower()
    if fmt not in t.FORMATS:
        raise t.Open311Error(400, f"format {fmt!r} not supported; use .json or .xml")
    return fmt


class Open311App:
    def __init__(
        self,
        config: Config,
        store: Store,
        publish: Publish,
        api_keys: Mapping[str, str],
        shape_check: ShapeCheck | None = None,
        region_check: RegionCheck | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.publish = publish
        self._keys = dict(api_keys)  # api key → client name
        self.limiter = RateLimiter(
            {
                "submit": config.rate_limit_submit,
                "read": config.rate_limit_read,
                "auth-failure": config.rate_limit_auth_failures,
            }
        )
        self.shape_check = shape_check
        self.region_check = region_check
        self.clock = clock

    # -- plumbing ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        p = self.config.base_path
        g = self._read_limited
        routes = [
            Route(p + "/services.{fmt}", g(self.get_services), methods=["GET"]),
            Route(p + "/services/{code}.{fmt}", g(self.get_service_definition), methods=["GET"]),
            Route(p + "/requests.{fmt}", g(self.requests), methods=["GET", "POST"]),
            Route(p + "/requests/{id}.{fmt}", g(self.get_request), methods=["GET"]),
            Route(p + "/tokens/{token}.{fmt}", g(self.get_token), methods=["GET"]),
            Route(p + "/servicerequestupdates.{fmt}", g(self.updates), methods=["GET", "POST"]),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={t.Open311Error: self._open311_error, HTTPException: self._http_error},
        )

    async def _open311_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, t.Open311Error)
        fmt = request.path_params.get("fmt", "json")
        response = _respond("errors", exc.body(), fmt, exc.http_status)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    def _read_limited(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Every GET counts against the peer address's read limit (anonymous reads are allowed)."""

        async def guarded(request: Request) -> Response:
            if request.method == "GET":
                self._limit("read", _peer(request), "requests from this address")
            return await handler(request)

        return guarded

    def _limit(self, name: str, key: str, what: str) -> None:
        verdict = self.limiter.hit(name, key)
        if not verdict.allowed:
            log.warning("open311.rate_limited", limit=name, retry_after_s=verdict.retry_after_s)
            raise t.Open311Error(
                429, f"too many {what}; retry after {verdict.retry_after_s} s", retry_after=verdict.retry_after_s
            )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        fmt = "xml" if request.url.path.endswith(".xml") else "json"
        description = {404: "no such resource", 405: "method not allowed"}.get(exc.status_code, exc.detail)
        return _respond("errors", [{"code": exc.status_code, "description": description}], fmt, exc.status_code)

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise t.Open311Error(413, f"request body over {limit} bytes; send media as a link (media_url)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise t.Open311Error(413, f"request body over {limit} bytes; send media as a link (media_url)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _form(self, request: Request) -> dict[str, list[str]]:
        """Query parameters and form fields (the form wins); only url-encoded forms are accepted."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await self._body(request)
        if body and content_type not in ("", "application/x-www-form-urlencoded"):
            raise t.Open311Error(
                415, "send application/x-www-form-urlencoded fields (uploads are not accepted: media_url is a link)"
            )
        form: dict[str, list[str]] = {k: request.query_params.getlist(k) for k in request.query_params}
        form.update(t.parse_form(body))
        return form

    def _client(self, form: Mapping[str, list[str]], peer: str, required: bool = True) -> str | None:
        """The client an ``api_key`` belongs to. Invalid keys count per peer address: after
        ``rate_limit_auth_failures`` the address gets 429 before any key is even compared."""
        given = (form.get("api_key") or [""])[0]
        if not given:
            if required:
                raise t.Open311Error(403, "api_key is required")
            return None
        if not self.limiter.test("auth-failure", peer):
            retry = self.limiter.retry_after("auth-failure", peer)
            raise t.Open311Error(429, f"too many invalid api_keys from this address; retry after {retry} s", retry_after=retry)
        for key, client in self._keys.items():
            if hmac.compare_digest(key.encode(), given.encode()):
                return client
        self.limiter.hit("auth-failure", peer)
        log.warning("open311.invalid_api_key")
        raise t.Open311Error(403, "invalid api_key")

    def _jurisdiction(self, params: Mapping[str, Any]) -> None:
        value = params.get("jurisdiction_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if value and self.config.jurisdiction_id and value != self.config.jurisdiction_id:
            raise t.Open311Error(404, f"jurisdiction_id {value!r} not found")

    # -- services -------------------------------------------------------------------------------
    async def get_services(self, request: Request) -> Response:
        fmt = _fmt(request)
        self._jurisdiction(request.query_params)
        return _respond("services", t.services(self.config), fmt)

    async def get_service_definition(self, request: Request) -> Response:
        fmt = _fmt(request)
        self._jurisdiction(request.query_params)
        return _respond("service_definition", t.service_definition(request.path_params["code"]), fmt)

    # -- requests -------------------------------------------------------------------------------
    async def requests(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.post_request(request)
        return await self.list_requests(request)

    async def post_request(self, request: Request) -> Response:
        fmt = _fmt(request)
        form = await self._form(request)
        client = self._client(form, _peer(request))
        assert client is not None
        self._limit("submit", client, "submissions for this api_key")
        req = t.parse_new_request(form, self.config)
        if self.region_check is not None:
            problem = self.region_check(req.long, req.lat)
            if problem:
                raise t.Open311Error(400, problem)
        reference = req.reference(self.config)
        if reference is not None:
            existing = self.store.find_by_reference(client, reference)
            if existing is not None:
                log.info("open311.repeated_request", correlation_id=existing["id"], client=client)
                return _respond("requests", [self._created(existing)], fmt)
        melding_id = str(uuid.uuid4())
        now = self.clock()
        doc = t.to_melding(req, self.config, melding_id, now, client)
        if self.shape_check is not None:
            problem = self.shape_check(doc)
            if problem:
                raise t.Open311Error(400, f"the report cannot be accepted: {problem}")
        self.store.add_pending(
            melding_id=melding_id,
            client=client,
            client_ref=reference,
            now=now,
            service_code=req.service_code,
            description=req.description,
            lat=req.lat,
            long=req.long,
            address=req.address_string,
            address_id=req.address_id,
            zipcode=req.zipcode,
            media_url=req.media_urls[0] if req.media_urls else None,
        )
        headers = (
            (Header.MELDING_ID, melding_id.encode()),
            (Header.SOURCE, self.config.id.encode()),
            (Header.CONTENT_TYPE, JSONLD_CONTENT_TYPE.encode()),
            (Header.SCHEMA, HUB_CONTEXT_IRI.encode()),
        )
        value = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            await self.publish(melding_id.encode(), value, headers)
        except Exception as exc:  # noqa: BLE001 - any broker failure: the client retries later
            self.store.drop_pending(melding_id)
            log.warning("open311.publish_failed", correlation_id=melding_id, error=type(exc).__name__)
            raise t.Open311Error(503, "the hub cannot take meldingen right now; try again later") from None
        self.store.mark_sent(melding_id)
        log.info("open311.request_created", correlation_id=melding_id, client=client, service_code=req.service_code)
        row = self.store.get(melding_id)
        assert row is not None
        return _respond("requests", [self._created(row)], fmt)

    def _created(self, row: Mapping[str, Any]) -> dict[str, Any]:
        if self.config.service_type == "batch":
            return {"token": row["token"], "service_notice": self.config.service_notice, "account_id": None}
        return {"service_request_id": row["id"], "service_notice": self.config.service_notice, "account_id": None}

    def _window(self, params: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
        start_text, end_text = params.get("start_date"), params.get("end_date")
        start = t.parse_datetime(start_text, "start_date") if start_text else None
        end = t.parse_datetime(end_text, "end_date") if end_text else None
        span = timedelta(days=self.config.max_span_days)
        if start and end:
            if end < start:
                raise t.Open311Error(400, "end_date is before start_date")
            if end - start > span:
                raise t.Open311Error(400, f"start_date to end_date spans more than {self.config.max_span_days} days")
        return start, end

    async def list_requests(self, request: Request) -> Response:
        fmt = _fmt(request)
        q = request.query_params
        self._jurisdiction(q)
        if q.get("api_key"):
            self._client({"api_key": [q["api_key"]]}, _peer(request))
        ids = q.get("service_request_id")
        if ids:
            id_list = [i.strip() for i in ids.split(",") if i.strip()][: self.config.max_results]
            rows = self.store.query(ids=id_list)
        else:
            start, end = self._window(q)
            span = timedelta(days=self.config.max_span_days)
            if start is None and end is None:
                end = self.clock()
            if start is None:
                start = end - span  # type: ignore[operator]
            if end is None:
                end = start + span
            codes = [c.strip() for c in (q.get("service_code") or "").split(",") if c.strip()] or None
            wanted = {s.strip().lower() for s in (q.get("status") or "").split(",") if s.strip()}
            if wanted - {"open", "closed"}:
                raise t.Open311Error(400, "status is open, closed or both (comma-separated)")
            notations = None
            if wanted:
                notations = [n for n, shown in self.config.status_map.items() if shown.status in wanted]
            rows = self.store.query(
                service_codes=codes, start=start, end=end, statuses=notations, limit=self.config.max_results
            )
        return _respond("requests", [t.request_view(r, self.config) for r in rows], fmt)

    async def get_request(self, request: Request) -> Response:
        fmt = _fmt(request)
        self._jurisdiction(request.query_params)
        row = self.store.get(request.path_params["id"])
        if row is None:
            raise t.Open311Error(404, "service_request_id not found")
        return _respond("requests", [t.request_view(row, self.config)], fmt)

    async def get_token(self, request: Request) -> Response:
        fmt = _fmt(request)
        self._jurisdiction(request.query_params)
        token = request.path_params["token"]
        row = self.store.by_token(token)
        if row is None:
            raise t.Open311Error(404, "token not found")
        return _respond("tokens", [{"service_request_id": row["id"], "token": token}], fmt)

    # -- FixMyStreet extension ------------------------------------------------------------------
    async def updates(self, request: Request) -> Response:
        fmt = _fmt(request)
        if request.method == "POST":
            return await self.post_update(request, fmt)
        q = request.query_params
        self._jurisdiction(q)
        if q.get("api_key"):
            self._client({"api_key": [q["api_key"]]}, _peer(request))
        start, end = self._window(q)
        rows = self.store.updates(start, end, self.config.max_results)
        return _respond("updates", [t.update_view(r, self.config) for r in rows], fmt)

    async def post_update(self, request: Request, fmt: str) -> Response:
        form = await self._form(request)
        client = self._client(form, _peer(request))
        assert client is not None
        self._limit("submit", client, "submissions for this api_key")
        self._jurisdiction(form)
        fields = {}
        for name in ("service_request_id", "update_id", "status", "updated_datetime", "description"):
            value = (form.get(name) or [""])[0].strip()
            if not value and name != "description":
                raise t.Open311Error(400, f"{name} is required")
            fields[name] = value
        if self.store.get(fields["service_request_id"]) is None:
            raise t.Open311Error(404, "service_request_id not found")
        status_ = fields["status"].lower()
        if status_ not in EXTENDED_STATUSES:
            raise t.Open311Error(400, f"status {fields['status']!r} is not a known status")
        if len(fields["description"]) > self.config.max_description_chars:
            raise t.Open311Error(400, f"description is longer than {self.config.max_description_chars} characters")
        when = t.parse_datetime(fields["updated_datetime"], "updated_datetime")
        self.store.add_client_update(
            update_id=fields["update_id"][:100],
            request_id=fields["service_request_id"],
            client=client,
            status=status_,
            when=when,
            description=fields["description"],
        )
        log.info("open311.client_update", correlation_id=fields["service_request_id"], client=client, status=status_)
        return _respond("updates", [{"update_id": f"{client}:{fields['update_id'][:100]}"}], fmt)
