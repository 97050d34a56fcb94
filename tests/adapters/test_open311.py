"""Open311 GeoReport v2 channel: translation, the HTTP endpoint (no broker) and the contract.

Contract: responses validate against the definitions of the published Swagger file
(``/shared/vendor-specs/open311/georeport_v2-1.swagger.yaml``) and the spec's own example
answers parse into the right OSLO values. Swagger 2.0 has no ``null``; the spec's examples write
absent values as ``null``, so nulls are dropped before validating.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from adapters.base import Runtime
from adapters.open311 import translate as t
from adapters.open311.client import Open311Client
from adapters.open311.config import Config, Open311Status
from adapters.open311.server import Open311App
from adapters.open311.service import _region_check, _shape_check
from adapters.open311.store import Store
from hub.categories import categories
from hub.geo import MunicipalityIndex
from hub.melding import Melding
from hub.registry import Registry
from hub.routing import Router
from hub.status import StatusChange
from hub.topics import Header

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "vendor-specs" / "open311"
KEY = "secret-key-fms"
KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"


# -- contract helpers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def swagger() -> dict[str, Any]:
    return yaml.safe_load((SPECS / "georeport_v2-1.swagger.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    return yaml.safe_load((SPECS / "georeport_v2-spec-examples.yaml").read_text(encoding="utf-8"))["examples"]


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def conforms(swagger: dict[str, Any], definition: str, instance: Any, many: bool = False) -> None:
    schema: dict[str, Any] = {"definitions": swagger["definitions"]}
    ref = {"$ref": f"#/definitions/{definition}"}
    schema.update({"type": "array", "items": ref} if many else ref)
    jsonschema.Draft4Validator(schema).validate(_drop_nulls(instance))


def post_parameters_conform(swagger: dict[str, Any], form: dict[str, Any]) -> None:
    """A POST requests form against the Swagger's declared parameters: required ones present
    (jurisdiction_id excepted: optional per the spec text, see SOURCES.md), numbers numeric,
    api_key (securityDefinitions) present."""
    operation = swagger["paths"]["/requests.{response_format}"]["post"]
    params = [swagger["parameters"][p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p for p in operation["parameters"]]
    for p in params:
        if p["in"] != "query":
            continue
        present = p["name"] in form or any(k.startswith(p["name"] + "[") for k in form)
        if p.get("required") and p["name"] != "jurisdiction_id":
            assert present, f"{p['name']} is required by the Swagger"
        if present and p.get("type") == "number":
            float(form[p["name"]])
    assert swagger["securityDefinitions"]["api_key"]["name"] in form


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def config() -> Config:
    return Config(
        id="open311-test",
        indiener="https://w3id.org/meldingen-hub/id/organisatie/meldingen-hub-zwvl",
        jurisdiction_id="zuid-west-vlaanderen",
        clients=[{"name": "fixmystreet", "api_key_env": "UNUSED_IN_UNIT_TESTS"}],
        public_url="https://meldingen.example.be/open311",
        max_request_bytes=8192,
    )


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    runtime = Runtime(bootstrap_servers="unused", state_dir=tmp_path_factory.mktemp("state"))
    return _shape_check(), _region_check(runtime)


@pytest.fixture(scope="module")
def kortrijk_point() -> tuple[float, float]:
    lon, lat = MunicipalityIndex.load().representative_point("34022")
    return round(lon, 6), round(lat, 6)


class Sync:
    """A synchronous HTTP client for an ASGI app (httpx.ASGITransport), for readable tests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://open311.test") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(call())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


class Published(list):
    fail = False

    async def __call__(self, key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.append((key, value, dict(headers)))


@pytest.fixture
def endpoint(config: Config, checks: tuple[Any, Any], tmp_path: Path):  # noqa: ANN201
    store = Store(tmp_path / "open311.sqlite3")
    published = Published()
    shape, region = checks
    app = Open311App(config, store, published, {KEY: "fixmystreet"}, shape_check=shape, region_check=region).app()
    yield Sync(app), store, published
    store.close()


def _form(point: tuple[float, float], **extra: str) -> dict[str, str]:
    lon, lat = point
    return {
        "api_key": KEY,
        "service_code": "wegdefect",
        "lat": str(lat),
        "long": str(lon),
        "address_string": "Doorniksestraat 12, 8500 Kortrijk",
        "description": "Diepe put in het fietspad, gevaarlijk bij regen.",
        "email": "an.vermeulen@example.be",
        "first_name": "An",
        "last_name": "Vermeulen",
        "phone": "+32 470 12 34 56",
        "media_url": "https://fotos.example.be/put.jpg",
        **extra,
    }


# -- services --------------------------------------------------------------------------------------
def test_services_are_the_hubs_categories_and_follow_the_spec(endpoint, swagger) -> None:  # noqa: ANN001
    client, _, _ = endpoint
    answer = client.get("/services.json").json()
    conforms(swagger, "Service", answer, many=True)
    assert {s["service_code"] for s in answer} == {c.slug for c in categories()}
    assert next(s for s in answer if s["service_code"] == "wegdefect")["group"] == "Wegen en verkeer"
    definition = client.get("/services/wegdefect.json").json()
    conforms(swagger, "ServiceDefinition", definition)
    assert "fixmystreet_id" in {a["code"] for a in definition["attributes"]}
    xml = client.get("/services.xml")
    assert xml.headers["content-type"].startswith("text/xml") and b"<services><service>" in xml.content
    assert client.get("/services/ufo.json").status_code == 404


# -- submit ------------------------------------------------------------------------------------------
def test_a_submitted_request_becomes_a_valid_melding_routed_to_kortrijk(
    endpoint, swagger, config: Config, kortrijk_point  # noqa: ANN001
) -> None:
    client, store, published = endpoint
    form = _form(kortrijk_point)
    post_parameters_conform(swagger, form)
    response = client.post("/requests.json", data=form)
    assert response.status_code == 200, response.text
    conforms(swagger, "RequestResponse", response.json(), many=True)
    (created,) = response.json()
    rid = created["service_request_id"]
    uuid.UUID(rid)

    ((key, value, headers),) = published
    assert key == rid.encode()
    assert headers[Header.SOURCE] == b"open311-test" and headers[Header.MELDING_ID] == rid.encode()
    doc = json.loads(value)
    melding = Melding.from_jsonld(doc)
    assert melding.melding_id == rid
    router = Router(Registry.load(None), MunicipalityIndex.load())
    decision = router.route(melding.category_iris, melding.points())
    assert decision.authority_id == "kortrijk"
    assert doc["melder"]["contactpunt"]["email"] == "an.vermeulen@example.be"
    assert doc["heeftStatus"][0]["statuswaarde"].endswith("/511")
    assert doc["webpagina"] == f"https://meldingen.example.be/open311/requests/{rid}.json"
    assert any(b.get("bijlage") == "https://fotos.example.be/put.jpg" for b in doc["heeftBody"])

    # read back: open, and the store keeps no personal data
    (request,) = client.get(f"/requests/{rid}.json").json()
    conforms(swagger, "Request", request)
    assert request["status"] == "open" and request["service_code"] == "wegdefect"
    row = store.get(rid)
    assert row is not None and "Vermeulen" not in json.dumps(row) and "example.be" not in str(row.get("description"))


def test_status_from_the_hub_shows_in_requests_and_updates(endpoint, swagger, config: Config, kortrijk_point) -> None:  # noqa: ANN001
    client, store, _ = endpoint
    (created,) = client.post("/requests.json", data=_form(kortrijk_point)).json()
    rid = created["service_request_id"]
    t0 = datetime.now(UTC).replace(microsecond=0)
    assert store.apply(StatusChange.create(rid, "557", KORTRIJK, "Toegewezen aan Stad Kortrijk.", t0), "Stad Kortrijk")
    fixed = StatusChange.create(rid, "133", KORTRIJK, "De put werd hersteld.", t0 + timedelta(minutes=5))
    assert store.apply(fixed)
    assert not store.apply(fixed), "a re-delivered event changes nothing"
    # an older event arriving late does not override the newer status
    assert store.apply(StatusChange.create(rid, "496", KORTRIJK, "In onderzoek.", t0 + timedelta(minutes=1)))

    (request,) = client.get(f"/requests/{rid}.json").json()
    conforms(swagger, "Request", request)
    assert (request["status"], request["status_notes"]) == ("closed", "De put werd hersteld.")
    assert request["agency_responsible"] == "Stad Kortrijk"
    xml = client.get(f"/requests/{rid}.xml").text
    (parsed,) = t.parse_service_requests(xml, "xml")
    assert (parsed.service_request_id, parsed.status, parsed.status_notes) == (rid, "closed", "De put werd hersteld.")

    updates = client.get("/servicerequestupdates.json", params={"api_key": KEY}).json()
    assert [u["status"] for u in updates if u["service_request_id"] == rid] == ["in_progress", "investigating", "fixed"]
    assert client.get("/servicerequestupdates.xml").text.count("<request_update>") == 3

    closed = client.get("/requests.json", params={"status": "closed"}).json()
    assert [r["service_request_id"] for r in closed] == [rid]
    assert client.get("/requests.json", params={"status": "open"}).json() == []
    assert len(client.get("/requests.json", params={"service_request_id": f"{rid},nope"}).json()) == 1
    assert client.get("/requests.json", params={"service_code": "zwerfvuil"}).json() == []


def test_a_repeated_submission_with_the_same_client_reference_is_one_melding(endpoint, kortrijk_point) -> None:  # noqa: ANN001
    client, _, published = endpoint
    form = _form(kortrijk_point, **{"attribute[fixmystreet_id]": "4711"})
    first = client.post("/requests.json", data=form).json()
    second = client.post("/requests.json", data=form).json()
    assert first == second and len(published) == 1


def test_broker_trouble_is_a_503_and_nothing_is_kept(endpoint, kortrijk_point) -> None:  # noqa: ANN001
    client, store, published = endpoint
    published.fail = True
    response = client.post("/requests.json", data=_form(kortrijk_point))
    assert response.status_code == 503 and response.json()[0]["code"] == 503
    assert store.query() == []


def test_tokens_resolve_to_the_request(endpoint, kortrijk_point) -> None:  # noqa: ANN001
    client, store, _ = endpoint
    (created,) = client.post("/requests.json", data=_form(kortrijk_point)).json()
    token = store.get(created["service_request_id"])["token"]
    assert client.get(f"/tokens/{token}.json").json() == [{"service_request_id": created["service_request_id"], "token": token}]
    assert client.get("/tokens/nope.json").status_code == 404


@pytest.mark.parametrize(
    ("change", "status_code", "fragment"),
    [
        ({"api_key": None}, 403, "api_key is required"),
        ({"api_key": "wrong"}, 403, "invalid api_key"),
        ({"service_code": "ufo-waarneming"}, 404, "service_code"),
        ({"service_code": None}, 400, "service_code is required"),
        ({"lat": None}, 400, "lat and long"),
        ({"lat": "noord"}, 400, "not a number"),
        ({"lat": "50.6292", "long": "3.0573"}, 400, "outside the area"),  # Lille
        ({"jurisdiction_id": "gent"}, 404, "jurisdiction_id"),
        ({"email": "geen-adres"}, 400, "email"),
        ({"media_url": "file:///etc/passwd"}, 400, "media_url"),
        ({"description": "x" * 4001}, 400, "longer than"),
    ],
)
def test_errors_are_the_specs_error_list_with_the_right_http_code(
    endpoint, kortrijk_point, change, status_code, fragment  # noqa: ANN001
) -> None:
    client, _, published = endpoint
    form = {k: v for k, v in {**_form(kortrijk_point), **change}.items() if v is not None}
    response = client.post("/requests.json", data=form)
    assert response.status_code == status_code, response.text
    (error,) = response.json()
    assert error["code"] == status_code and fragment in error["description"]
    assert not published


def test_size_limit_format_and_media_type(endpoint, kortrijk_point) -> None:  # noqa: ANN001
    client, _, _ = endpoint
    big = client.post("/requests.json", data={**_form(kortrijk_point), "description": "x" * 3000, "padding": "y" * 6000})
    assert big.status_code == 413
    multipart = client.post("/requests.json", data={"api_key": KEY}, files={"media": ("a.jpg", b"\xff\xd8")})
    assert multipart.status_code == 415
    assert client.get("/services.csv").status_code == 400
    xml_error = client.post("/requests.xml", data={"service_code": "wegdefect"})
    assert xml_error.status_code == 403 and b"<errors><error><code>403</code>" in xml_error.content
    assert client.get("/nowhere.json").json()[0]["code"] == 404
    too_long = client.get("/requests.json", params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"})
    assert too_long.status_code == 400 and "90 days" in too_long.json()[0]["description"]
    assert client.get("/requests/nope.json").status_code == 404


def test_fixmystreet_can_post_a_citizen_update(endpoint, kortrijk_point) -> None:  # noqa: ANN001
    client, store, _ = endpoint
    (created,) = client.post("/requests.json", data=_form(kortrijk_point)).json()
    update = {
        "api_key": KEY,
        "service_request_id": created["service_request_id"],
        "update_id": "881",
        "status": "OPEN",
        "updated_datetime": "2026-11-24T10:00:00+01:00",
        "description": "Nog altijd niet hersteld.",
    }
    first = client.post("/servicerequestupdates.json", data=update)
    assert first.status_code == 200 and first.json() == [{"update_id": "fixmystreet:881"}]
    assert client.post("/servicerequestupdates.json", data=update).json() == first.json()
    assert client.post("/servicerequestupdates.json", data={**update, "status": "WHATEVER"}).status_code == 400
    assert client.post("/servicerequestupdates.json", data={**update, "service_request_id": "x"}).status_code == 404


# -- the spec's own examples ---------------------------------------------------------------------
def test_the_specs_example_answers_parse_into_oslo_statuses(examples: dict[str, str], swagger, config: Config) -> None:  # noqa: ANN001
    for name, fmt in (("json-service-requests", "json"), ("xml-service-requests", "xml")):
        requests = t.parse_service_requests(examples[name], fmt)
        assert [(r.service_request_id, r.status) for r in requests] == [("638344", "closed"), ("638349", "open")]
        assert requests[0].status_notes == "Duplicate request."
        assert requests[0].service_code == "006", "leading zeros kept (the spec writes 006 unquoted)"
        assert [t.oslo_status_of(r, config).notation for r in requests] == ["956", "557"]
        assert requests[0].requested_datetime == datetime(2010, 4, 14, 14, 37, 38, tzinfo=UTC)
    (single,) = t.parse_service_requests(examples["json-service-request"], "json")
    assert t.oslo_status_of(single, config).label == "Afgerond"
    for name in ("json-service-list", "json-service-definition", "json-service-request-post", "json-request-from-token"):
        assert t.loads_lenient(examples[name])
    conforms(swagger, "Service", t.loads_lenient(examples["json-service-list"]), many=True)
    errors = t.loads_lenient(examples["json-errors"].split("\n\n", 1)[1])
    assert errors == [{"code": 403, "description": "Invalid api_key received -- can't proceed with create_request."}]
    # FixMyStreet's extended statuses map to the life cycle as documented
    fixed = t.ServiceRequest("1", "closed", extended_status="fixed")
    assert t.oslo_status_of(fixed, config).label == "Opgelost"


def test_the_client_speaks_to_the_endpoint(config: Config, checks, tmp_path: Path, kortrijk_point, swagger) -> None:  # noqa: ANN001
    store = Store(tmp_path / "s.sqlite3")
    published = Published()
    app = Open311App(config, store, published, {KEY: "meldingsapp"}, *checks).app()
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with Open311Client("http://open311.test", api_key=KEY, transport=transport) as client:
            services = await client.services()
            assert any(s["service_code"] == "wegdefect" for s in services)
            form = {k: v for k, v in _form(kortrijk_point).items() if k != "api_key"}
            sent.append({**form, "api_key": KEY})
            created = await client.create(form)
            request = await client.request(created["service_request_id"])
            assert request is not None and request.status == "open"
            assert await client.request(str(uuid.uuid4())) is None

    asyncio.run(scenario())
    post_parameters_conform(swagger, sent[0])
    store.close()


# -- adapters check ------------------------------------------------------------------------------
def test_check_passes_for_the_defaults_and_names_each_gap(config: Config) -> None:
    assert t.check(config) == []
    broken = config.model_copy(
        update={
            "status_map": {k: v for k, v in config.status_map.items() if k != "138"}
            | {"956": Open311Status(status="open", extended="closed")},
            "extended_to_oslo": {k: v for k, v in config.extended_to_oslo.items() if k != "duplicate"} | {"fixed": "557"},
        }
    )
    problems = "\n".join(t.check(broken))
    assert "138 Definitief gesloten has no Open311 status" in problems
    assert "'duplicate' is not mapped" in problems
    assert "956 Afgerond is final but shows as open" in problems
    assert "Open311 'fixed' (closed) maps to 557 Toegewezen aan, which is open" in problems


# -- rate limits -------------------------------------------------------------------------------------
def test_rate_limits_per_client_and_per_address(config: Config, checks, tmp_path: Path, kortrijk_point) -> None:  # noqa: ANN001
    """A noisy client gets 429 with Retry-After in the spec's error list; others are not affected;
    key guessing from one address is cut off before any key is compared."""
    limited = config.model_copy(
        update={"rate_limit_submit": "3/minute", "rate_limit_read": "5/minute", "rate_limit_auth_failures": "2/hour"}
    )
    store = Store(tmp_path / "open311.sqlite3")
    published = Published()
    other = "another-clients-key-0123456789"
    app = Open311App(limited, store, published, {KEY: "fixmystreet", other: "meldingsapp"}, *checks).app()
    client = Sync(app)
    try:
        answers = [client.post("/requests.json", data=_form(kortrijk_point)).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429], answers
        refused = client.post("/requests.json", data=_form(kortrijk_point))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        (error,) = refused.json()
        assert error["code"] == 429 and "retry after" in error["description"]
        assert len(published) == 3, "a refused submission is not published"
        # another client (another api_key) is not affected
        assert client.post("/requests.json", data=_form(kortrijk_point, api_key=other)).status_code == 200

        # reads: per address
        reads = [client.get("/services.json").status_code for _ in range(6)]
        assert reads[:5] == [200] * 5 and reads[5] == 429

        # guessing keys: two wrong keys, then even the right key is refused from that address for a while
        fresh = Sync(Open311App(limited, store, published, {KEY: "fixmystreet"}, *checks).app())
        wrong = [fresh.post("/requests.json", data=_form(kortrijk_point, api_key=f"guess-{i}")).status_code for i in range(2)]
        assert wrong == [403, 403]
        blocked = fresh.post("/requests.json", data=_form(kortrijk_point))
        assert blocked.status_code == 429 and "invalid api_keys" in blocked.json()[0]["description"]
    finally:
        store.close()


def test_a_rate_limit_that_cannot_be_read_is_refused_at_start(config: Config) -> None:
    with pytest.raises(ValueError, match="<count>/<second|minute|hour|day>"):
        Config.model_validate(config.model_dump() | {"rate_limit_submit": "lots"})
