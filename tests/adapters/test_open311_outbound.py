"""Open311 outbound (vendor ``open311-out``): the hub files an authority's meldingen at the
authority's GeoReport v2 server and reads their status back.

The stand-in authority server is the hub's OWN Open311 endpoint (:class:`Open311App`, over
ASGI, with its SHACL and region checks): it enforces the spec (api_key, service_code, lat/long,
field formats) and turns every POST into a melding that must be valid. A recording transport in
front of it checks every request the adapter sends against the published Swagger, and injects
faults (lost answers, 5xx, timeouts, malformed answers). No broker: the worker returns what it
would produce (as in ``test_topdesk.py``).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import yaml

from adapters import registry as adapter_registry
from adapters.base import Runtime, UnknownVendorStatus, VendorMalformed
from adapters.loop import _gate_pauses, gate_for
from adapters.open311.config import Config as ServerConfig
from adapters.open311.outbound import translate as t
from adapters.open311.outbound.client import GeoReportClient
from adapters.open311.outbound.config import Config
from adapters.open311.outbound.service import Open311OutWorker
from adapters.open311.outbound.store import Store
from adapters.open311.server import Open311App
from adapters.open311.service import _region_check, _shape_check
from adapters.open311.store import Store as ServerStore
from adapters.open311.translate import loads_lenient
from hub import logs
from hub.demo import DemoFeed
from hub.geo import MunicipalityIndex
from hub.melding import Melding
from hub.pipeline import Record
from hub.registry import Registry
from hub.status import StatusChange, StatusHeader
from hub.topics import DEADLETTER, STATUS, Header, authority_topic
from tests.adapters.refusal_check import assert_one_refusal, owner_record
from tests.adapters.test_open311 import SPECS, post_parameters_conform

KEY = "hub-key-at-kortrijk-0123456789"
KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"
BASE = "http://open311.kortrijk.test/v2"


# -- spec ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def swagger() -> dict[str, Any]:
    return yaml.safe_load((SPECS / "georeport_v2-1.swagger.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fms() -> dict[str, Any]:
    return yaml.safe_load((SPECS / "fixmystreet-servicerequestupdates.derived.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    return yaml.safe_load((SPECS / "georeport_v2-spec-examples.yaml").read_text(encoding="utf-8"))["examples"]


def get_parameters_conform(swagger: dict[str, Any], fms: dict[str, Any], path: str, params: dict[str, str]) -> None:
    """A GET the adapter sends names only parameters the spec declares for it (api_key: the
    Swagger's securityDefinitions), with date-times that parse and ids comma-separated."""
    declared = {"api_key"}
    if path.endswith("/servicerequestupdates.json"):
        declared |= set(fms["endpoints"]["get_updates"]["query"])
    else:
        key = "/requests.{response_format}" if path.endswith("/requests.json") else "/tokens/{token_id}.{response_format}"
        op = swagger["paths"][key]["get"]
        declared |= {swagger["parameters"][p["$ref"].rsplit("/", 1)[-1]]["name"] if "$ref" in p else p["name"]
                     for p in op["parameters"]}
    assert set(params) <= declared, f"{path}: {set(params) - declared} not in the spec"
    for name in ("start_date", "end_date"):
        if name in params:
            assert datetime.fromisoformat(params[name].replace("Z", "+00:00")).tzinfo is not None
    if "status" in params:
        assert set(params["status"].split(",")) <= {"open", "closed"}


# -- the stand-in authority server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    runtime = Runtime(bootstrap_servers="unused", state_dir=tmp_path_factory.mktemp("state"))
    return _shape_check(), _region_check(runtime)


@pytest.fixture(scope="module")
def feed() -> DemoFeed:
    return DemoFeed(Registry.load(None), MunicipalityIndex.load(), seed=3110)


class Published(list):
    async def __call__(self, key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        self.append((key, value, dict(headers)))


Fault = int | str  # an HTTP status to answer, or "timeout" (never sent), "lost" (sent, answer lost), "not-json"


class Recorder(httpx.AsyncBaseTransport):
    """In front of the stand-in: records each request (method, path, fields), checks it against
    the spec, and injects the queued faults of the request's method."""

    def __init__(self, app: Any, swagger: dict[str, Any], fms: dict[str, Any]) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.swagger, self.fms = swagger, fms
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.faults: dict[str, list[Fault]] = {"POST": [], "GET": []}
        self.rewrite: Callable[[str, Any], Any] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        params = dict(request.url.params)
        if request.method == "POST":
            post_parameters_conform(self.swagger, fields)
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        else:
            get_parameters_conform(self.swagger, self.fms, request.url.path, params)
        self.sent.append((request.method, request.url.path, fields or params))
        fault = self.faults[request.method].pop(0) if self.faults[request.method] else None
        if fault == "timeout":
            raise httpx.ReadTimeout("stand-in: no answer", request=request)
        if isinstance(fault, int):
            return httpx.Response(fault, json=[{"code": fault, "description": f"stand-in fault for {fields.get('email', '?')}"}])
        if fault == "not-json":
            return httpx.Response(200, text="<html>Bad gateway</html>")
        response = await self.inner.handle_async_request(request)
        if fault == "lost":
            await response.aread()
            raise httpx.ReadTimeout("stand-in: answer lost", request=request)
        if self.rewrite is not None:
            await response.aread()
            data = self.rewrite(request.url.path, json.loads(response.content))
            return httpx.Response(response.status_code, json=data)
        return response

    def posts(self) -> list[dict[str, str]]:
        return [f for m, _, f in self.sent if m == "POST"]


class Clock:
    """The worker's clock: real time at start, moved on by the test (statuses get distinct dates)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=120)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 10) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def _config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "id": "open311-out-test",
        "authority": "kortrijk",
        "base_url": BASE,
        "api_key_env": "UNUSED_IN_UNIT_TESTS",
        "jurisdiction_id": "kortrijk.be",
        "service_codes": {"wegdefect": "wegdefect", "zwerfvuil": "zwerfvuil"},
        "retry": {"max_attempts": 3, "base_delay_s": 0, "max_delay_s": 0},
    }
    return Config.model_validate({**base, **overrides})


class Harness:
    def __init__(self, tmp_path: Path, checks: tuple[Any, Any], swagger: dict[str, Any], fms: dict[str, Any],
                 server: dict[str, Any] | None = None, api_key: str = KEY, contacts: Any = None, **config: Any) -> None:
        self.server_config = ServerConfig.model_validate({
            "id": "open311-kortrijk", "indiener": KORTRIJK, "jurisdiction_id": "kortrijk.be",
            "clients": [{"name": "meldingen-hub", "api_key_env": "UNUSED"}], "base_path": "/v2",
            "reference_attributes": ["meldingen_hub_id"], **(server or {}),
        })
        self.server_store = ServerStore(tmp_path / "server.sqlite3")
        self.published = Published()
        app = Open311App(self.server_config, self.server_store, self.published, {KEY: "meldingen-hub"}, *checks).app()
        self.recorder = Recorder(app, swagger, fms)
        self.config = _config(**config)
        self.clock = Clock()
        self.path = tmp_path / "adapter.sqlite3"
        self.api_key = api_key
        self.contacts = contacts
        self.worker = self._worker()

    def _worker(self) -> Open311OutWorker:
        client = GeoReportClient(BASE, self.api_key, self.config.jurisdiction_id, transport=self.recorder)
        return Open311OutWorker(self.config, client, Store(self.path), KORTRIJK, "Stad Kortrijk", clock=self.clock,
                                contacts=self.contacts)

    def restart(self) -> None:
        """A new process on the same state file (after a crash or a deploy)."""
        self.worker.store.close()
        self.worker = self._worker()

    async def deliver(self, record: Record) -> list[Any]:
        emit = await self.worker.handle(record)
        emit.done()  # as if the broker acknowledged
        return emit.outputs

    async def poll(self) -> list[Any]:
        emit = await self.worker.poll_once()
        emit.done()
        return emit.outputs

    def server_status(self, melding_id: str, notation: str, text: str) -> None:
        """The authority's civil servant changes the request's status in its own system."""
        rid = self.worker.store.get(melding_id)["service_request_id"]  # type: ignore[index]
        assert self.server_store.apply(StatusChange.create(rid, notation, KORTRIJK, text, self.clock.tick()), "Stad Kortrijk")


@pytest.fixture
def harness(tmp_path: Path, checks: tuple[Any, Any], swagger: dict[str, Any], fms: dict[str, Any]) -> Callable[..., Harness]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(tmp_path / str(len(made)), checks, swagger, fms, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.worker.store.close()
        h.server_store.close()


def _routed(feed: DemoFeed, category: str = "wegdefect", **kwargs: Any) -> Record:
    item = feed.valid(category=category, nis="34022", **kwargs)
    doc = json.loads(item.value)
    doc["behandelaar"] = KORTRIJK
    record = Record(value=json.dumps(doc).encode(), key=item.key,
                    headers=((Header.SOURCE, b"open311-zwvl"), (Header.MELDING_ID, item.key)),
                    topic=authority_topic("kortrijk"), partition=0, offset=7)
    return owner_record(record, "kortrijk")


def _change(out: Any) -> StatusChange:
    assert out.topic == STATUS, out.topic
    return StatusChange.from_jsonld(json.loads(out.value))


# -- translation: the POST, against the spec -----------------------------------------------------------
def test_the_post_carries_the_melding_its_location_reporter_and_id_as_the_spec_names_them(
    feed: DemoFeed, swagger: dict[str, Any]
) -> None:
    config = _config()
    record = _routed(feed, anonymous=False)
    doc = json.loads(record.value)
    melding = Melding.from_jsonld(doc)
    form = t.request_form(melding, config, KEY)
    post_parameters_conform(swagger, form)
    mid = melding.melding_id
    assert form["attribute[meldingen_hub_id]"] == mid
    assert form["service_code"] == "wegdefect" and form["api_key"] == KEY and form["jurisdiction_id"] == "kortrijk.be"
    (lon, lat), = melding.points()[:1]
    assert (float(form["lat"]), float(form["long"])) == pytest.approx((lat, lon), abs=1e-6)
    assert form["description"].endswith(t.marker(mid))
    melder = doc["melder"]
    assert f"{form['first_name']} {form.get('last_name', '')}".strip() == melder["naam"]
    assert form["email"] == melder["contactpunt"]["email"]
    anonymous = t.request_form(Melding.from_jsonld(json.loads(_routed(feed, anonymous=True).value)), config, KEY)
    assert not {"email", "first_name", "last_name", "phone"} & set(anonymous)
    quiet = t.request_form(melding, _config(send_contact_details=False), KEY)
    assert not {"email", "first_name", "last_name", "phone"} & set(quiet)
    # a long text is cut, the marker line never
    doc["heeftBody"][0]["beschrijving"] = "x" * 10_000
    long_form = t.request_form(Melding.from_jsonld(doc), _config(max_description_chars=500), KEY)
    assert len(long_form["description"]) == 500 and long_form["description"].endswith(t.marker(mid))
    # another attribute code for a server that dedups on its own name
    assert t.request_form(melding, _config(reference_attribute="fixmystreet_id"), KEY)["attribute[fixmystreet_id]"] == mid


def test_the_specs_example_answers_read_as_the_right_oslo_statuses(examples: dict[str, str], swagger: dict[str, Any]) -> None:
    config = _config()
    states = t.parse_requests(loads_lenient(examples["json-service-requests"]))
    # the spec's example writes ids as bare numbers (not the Swagger's string): read as strings all the same
    assert [(s.service_request_id, s.status, s.coarse) for s in states] == [("638344", "closed", True), ("638349", "open", True)]
    assert states[0].status_notes == "Duplicate request."
    # the citizen knows Toegewezen aan (557): closed is Afgerond, open is not news
    assert t.decide(states[0].vendor_status, True, "557", config).label == "Afgerond"  # type: ignore[union-attr]
    assert t.decide(states[1].vendor_status, True, "557", config) is None
    # closed after Opgelost is not news either; FixMyStreet's extended statuses are precise
    assert t.decide("closed", True, "133", config) is None
    assert t.decide("fixed", False, "557", config).label == "Opgelost"  # type: ignore[union-attr]
    assert t.decide("investigating", False, "557", config).label == "In onderzoek"  # type: ignore[union-attr]
    with pytest.raises(UnknownVendorStatus, match="'parked'"):
        t.decide("parked", False, "557", config)
    (single,) = t.parse_requests(loads_lenient(examples["json-service-request"]))
    assert t.decide(single.vendor_status, single.coarse, "496", config).notation == "956"  # type: ignore[union-attr]
    created = t.created_ref(loads_lenient(examples["json-service-request-post"]))
    assert created == t.Created("293944", None)
    assert t.token_ref(loads_lenient(examples["json-request-from-token"])) == "638344"
    # a server that adds an extended status to GET requests
    (ext,) = t.parse_requests([{"service_request_id": "9", "status": "closed", "extended_status": "FIXED"}])
    assert (ext.vendor_status, ext.coarse) == ("fixed", False)
    for bad in ({"status": "open"}, {"service_request_id": "9", "status": "open", "updated_datetime": "gisteren"}):
        with pytest.raises(VendorMalformed):
            t.parse_request(bad)
    with pytest.raises(UnknownVendorStatus):
        t.parse_request({"service_request_id": "9", "status": "pending"})
    with pytest.raises(VendorMalformed):
        t.created_ref([{"service_notice": "bedankt"}])


def test_check_proves_the_defaults_and_the_shipped_tenant_and_names_each_gap() -> None:
    assert t.check(_config()) == []
    configured = adapter_registry.load()
    shipped = next(c for c in configured if c.vendor == "open311-out")
    assert shipped.installed is not None and shipped.installed.role == "authority"
    assert shipped.config is not None and t.check(shipped.config) == []  # type: ignore[arg-type]
    assert adapter_registry.check([shipped], Registry.load(None))[shipped.id] == []
    broken = _config(
        statuses={k: v for k, v in _config().statuses.items() if k != "duplicate"} | {"fixed": "557", "not_councils_responsibility": "751"},
    )
    problems = "\n".join(t.check(broken))
    assert "'duplicate' is not mapped" in problems
    assert "'fixed' (closed) maps to 557 Toegewezen aan, which is open" in problems
    assert "refusal status 'not_councils_responsibility' maps to 751" in problems
    with pytest.raises(ValueError, match="service_codes"):
        _config(service_codes={}, default_service_code=None)
    with pytest.raises(ValueError, match="not categories"):
        _config(service_codes={"ufo": "x"})


# -- filing: once --------------------------------------------------------------------------------------
async def test_a_melding_is_filed_once_and_the_citizen_hears_toegewezen_aan_once(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    h = harness()
    record = _routed(feed, anonymous=False)
    mid = record.key.decode()
    (out,) = await h.deliver(record)
    change = _change(out)
    assert (change.melding_id, change.status.notation, change.door) == (mid, "557", KORTRIJK)
    headers = dict(out.headers)
    assert headers[Header.SOURCE] == b"open311-zwvl" and headers[StatusHeader.PREVIOUS] == b"511"
    assert headers[StatusHeader.REPORTED_BY] == b"open311-out-test"
    # the server made one request, and the melding it made of our POST is valid (SHACL) and complete
    ((_, value, _),) = h.published
    made = json.loads(value)
    rid = h.worker.store.get(mid)["service_request_id"]  # type: ignore[index]
    assert made["identificator"]["notatie"] == rid and rid in change.beschrijving
    assert made["melder"]["contactpunt"]["email"] == json.loads(record.value)["melder"]["contactpunt"]["email"]
    # redelivered, replayed after a restart: no second POST, nothing reported twice
    assert await h.deliver(record) == []
    h.restart()
    assert await h.deliver(record) == []
    assert len(h.recorder.posts()) == 1 and len(h.published) == 1


async def test_a_lost_answer_is_found_again_and_never_filed_twice(harness: Callable[..., Harness], feed: DemoFeed) -> None:
    h = harness()
    h.recorder.faults["POST"] = ["lost"]
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert _change(out).status.notation == "557"
    assert len(h.recorder.posts()) == 1 and len(h.published) == 1, "found by the search, not POSTed again"
    searches = [p for m, path, p in h.recorder.sent if m == "GET" and path.endswith("/requests.json")]
    assert searches and searches[0]["service_code"] == "wegdefect" and "start_date" in searches[0]

    # lost, then the process dies before it could retry (all retries fail): the next delivery searches first
    h2 = harness()
    h2.recorder.faults["POST"] = ["lost"]
    h2.recorder.faults["GET"] = [503, 503]  # the searches of the 2nd and 3rd attempt fail too
    record = _routed(feed)
    emit = await h2.worker.handle(record)
    assert emit.failure is not None and emit.failure.transient, "an outage: the loop pauses, nothing dead-lettered"
    h2.restart()
    (out,) = await h2.deliver(record)
    assert _change(out).status.notation == "557"
    assert len(h2.published) == 1 and len(h2.recorder.posts()) == 1


async def test_without_search_a_deduplicating_server_still_makes_one_request(harness: Callable[..., Harness], feed: DemoFeed) -> None:
    h = harness(recover_by_search=False)
    h.recorder.faults["POST"] = ["lost"]
    record = _routed(feed)
    (out,) = await h.deliver(record)
    assert _change(out).status.notation == "557"
    assert len(h.recorder.posts()) == 2 and len(h.published) == 1, "POSTed again; the server answered the first request"
    assert h.recorder.posts()[0]["attribute[meldingen_hub_id]"] == record.key.decode()
    # a server that refuses the search (400): the adapter POSTs again with the reference, not a dead letter
    h2 = harness()
    h2.recorder.faults["POST"] = ["lost"]
    h2.recorder.faults["GET"] = [400]
    (out,) = await h2.deliver(_routed(feed))
    assert _change(out).status.notation == "557" and len(h2.published) == 1 and len(h2.recorder.posts()) == 2


async def test_the_limit_a_server_that_neither_dedups_nor_is_searched_makes_a_second_request(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    """What is NOT guaranteed (docs/adapters.md): with the search off and a server that ignores
    the reference attribute, a lost answer means a second request. Kept as a test so the
    documentation of the limit stays true."""
    h = harness(recover_by_search=False, server={"reference_attributes": []})
    h.recorder.faults["POST"] = ["lost"]
    await h.deliver(_routed(feed))
    assert len(h.published) == 2


async def test_a_batch_server_answers_a_token_which_becomes_the_request_id(harness: Callable[..., Harness], feed: DemoFeed) -> None:
    h = harness(server={"service_type": "batch"})
    record = _routed(feed)
    mid = record.key.decode()
    (out,) = await h.deliver(record)
    assert "token" in _change(out).beschrijving
    row = h.worker.store.get(mid)
    assert row["token"] and row["service_request_id"] is None  # type: ignore[index]
    assert await h.deliver(record) == [] and len(h.published) == 1, "a token is as good as an id: never POSTed again"
    assert await h.poll() == []
    assert h.worker.store.get(mid)["service_request_id"] == json.loads(h.published[0][1])["identificator"]["notatie"]  # type: ignore[index]
    h.server_status(mid, "133", "De put werd hersteld.")
    (out,) = await h.poll()
    assert _change(out).status.notation == "956"


# -- status back ---------------------------------------------------------------------------------------
async def test_status_changes_on_the_server_come_back_once_with_their_transitions(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    """GeoReport only: open/closed and status_notes, by service_request_id in batches."""
    h = harness(batch_size=2)
    records = [_routed(feed) for _ in range(3)]
    for r in records:
        await h.deliver(r)
    mid = records[0].key.decode()
    assert await h.poll() == [], "open = Toegewezen aan, already reported"
    by_id = [p for m, path, p in h.recorder.sent if m == "GET" and "service_request_id" in p]
    assert [len(p["service_request_id"].split(",")) for p in by_id] == [2, 1], "batched"

    h.server_status(mid, "496", "We bekijken de put.")  # still open: nothing the spec shows
    assert await h.poll() == []
    h.server_status(mid, "133", "De put werd hersteld.")
    (out,) = await h.poll()
    change = _change(out)
    assert (change.status.label, change.beschrijving) == ("Afgerond", "De put werd hersteld.")
    assert dict(out.headers)[StatusHeader.PREVIOUS] == b"557" and dict(out.headers)[Header.SOURCE] == b"open311-zwvl"
    assert await h.poll() == [], "reported once"
    assert mid not in {r["melding_id"] for r in h.worker.store.followed()}, "final: no longer polled"


@pytest.mark.parametrize(("status_source", "overlap"), [("requests", 300), ("servicerequestupdates", 300),
                                                      ("servicerequestupdates", 0)])
async def test_a_poll_during_a_deliverys_unacknowledged_status_reports_nothing_twice(
    harness: Callable[..., Harness], feed: DemoFeed, status_source: str, overlap: int
) -> None:
    """The poll runs beside the consume loop: while a delivery's Toegewezen aan waits for the
    broker's acknowledgement, a poll neither reports it again nor loses a later change (without
    overlap too: the cursor stays before the update it left for the next poll)."""
    h = harness(status_source=status_source, poll_overlap_s=overlap)
    record = _routed(feed)
    mid = record.key.decode()
    delivering = await h.worker.handle(record)  # its Toegewezen aan is not acknowledged yet
    assert [o.topic for o in delivering.outputs] == [STATUS]
    assert await h.poll() == [], "Toegewezen aan is on its way already"
    h.server_status(mid, "133", "De put werd hersteld.")
    h.clock.tick()  # the poll comes a while after the change
    assert await h.poll() == [], "a later change waits until the delivery's status is acknowledged"
    delivering.done()
    h.clock.tick()
    (out,) = await h.poll()
    assert _change(out).beschrijving == "De put werd hersteld." and dict(out.headers)[StatusHeader.PREVIOUS] == b"557"
    assert await h.poll() == []


@pytest.mark.parametrize("status_source", ["requests", "servicerequestupdates"])
async def test_a_crash_before_the_store_moved_repeats_the_deliverys_own_event(
    harness: Callable[..., Harness], feed: DemoFeed, status_source: str
) -> None:
    """The broker acknowledged the delivery's Toegewezen aan, the adapter stopped before its store
    moved (and before the offset was committed): after the restart, whichever comes first — the
    poll (here: the server's own in_progress update) or the record read again — reports it as the
    same event (same id, date and text), and the other reports nothing."""
    h = harness(status_source=status_source)
    record = _routed(feed)
    mid = record.key.decode()
    (delivered,) = (await h.worker.handle(record)).outputs  # acknowledged; its after-ack steps never ran
    h.restart()
    h.server_status(mid, "557", "Toegewezen aan de uitvoeringsdienst.")  # FixMyStreet: in_progress
    h.clock.tick()
    repeated = [*(await h.poll()), *(await h.deliver(record))]
    assert len(repeated) == 1
    first, again = _change(delivered), _change(repeated[0])
    assert (again.event_id, again.statusdatum, again.beschrijving) == (first.event_id, first.statusdatum, first.beschrijving)
    assert await h.poll() == [] and await h.deliver(record) == []


async def test_fixmystreet_updates_bring_every_change_with_its_extended_status(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    h = harness(status_source="servicerequestupdates")
    record = _routed(feed)
    mid = record.key.decode()
    await h.deliver(record)
    h.server_status(mid, "557", "Toegewezen aan de uitvoeringsdienst.")  # in_progress: what the citizen knows
    h.server_status(mid, "496", "We bekijken de put.")  # investigating
    h.server_status(mid, "133", "De put werd hersteld.")  # fixed
    outputs = await h.poll()
    changes = [_change(o) for o in outputs]
    assert [c.status.notation for c in changes] == ["496", "133"]
    assert [dict(o.headers)[StatusHeader.PREVIOUS] for o in outputs] == [b"557", b"496"]
    assert changes[1].beschrijving == "De put werd hersteld."
    h.clock.tick()
    assert await h.poll() == [], "the overlap re-reads; each update is reported once"
    # a change the life cycle forbids: a dead letter, once; the citizen keeps Opgelost
    h.server_status(mid, "557", "Terug in behandeling.")
    (out,) = await h.poll()
    assert out.topic == DEADLETTER and dict(out.headers)[Header.ERROR_CLASS] == b"illegal-transition"
    assert await h.poll() == []
    assert h.worker.store.get(mid)["oslo_status"] == "133"  # type: ignore[index]
    updates = [p for m, path, p in h.recorder.sent if path.endswith("/servicerequestupdates.json")]
    assert updates and all("start_date" in p and "end_date" in p for p in updates)


async def test_an_unknown_or_unreadable_status_is_a_dead_letter_once(harness: Callable[..., Harness], feed: DemoFeed) -> None:
    h = harness()
    record = _routed(feed)
    mid = record.key.decode()
    await h.deliver(record)
    state = {"status": "pending"}
    h.recorder.rewrite = lambda path, data: [{**item, **state} for item in data] if "requests" in path else data
    (out,) = await h.poll()
    assert out.topic == DEADLETTER and dict(out.headers)[Header.ERROR_CLASS] == b"vendor-unknown-status"
    assert json.loads(out.value)["status"] == "pending" and out.key == mid.encode()
    assert await h.poll() == [], "once"
    state.update(status="closed", extended_status="parked")
    (out,) = await h.poll()
    assert dict(out.headers)[Header.ERROR_CLASS] == b"vendor-unknown-status"
    assert await h.poll() == []
    state.update(extended_status="fixed")
    (out,) = await h.poll()
    assert _change(out).status.label == "Opgelost"
    # a whole answer that is not JSON: the poll fails (logged by the loop, repeated next time), nothing moves
    h.recorder.rewrite = None
    h.recorder.faults["GET"] = ["not-json"]
    with pytest.raises(VendorMalformed):
        await h.worker.poll_once()


# -- refusal -------------------------------------------------------------------------------------------
async def test_not_the_councils_responsibility_gives_the_melding_back_once(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    h = harness(status_source="servicerequestupdates",
                refusal_statuses={"not_councils_responsibility": "Gewestweg: bevoegdheid van AWV"})
    record = _routed(feed)
    mid = record.key.decode()
    await h.deliver(record)
    h.server_status(mid, "751", "Niet onze bevoegdheid.")  # shown by the server as not_councils_responsibility
    emit = await h.worker.poll_once()  # not acknowledged: nothing marked, produced again next time
    assert [o.topic for o in emit.outputs] == ["meldingen.refusals"]
    outputs = await h.poll()
    refusal = assert_one_refusal(outputs, record, "kortrijk")
    assert refusal.reason == "Gewestweg: bevoegdheid van AWV"
    assert h.worker.store.kept.handed_over(mid)
    h.clock.tick()
    assert await h.poll() == [], "given back once"
    h.server_status(mid, "956", "Afgesloten.")
    assert await h.poll() == [], "handed over: no longer this authority's"


# -- encrypted contact details (the shared loop reveals them for the owner) ------------------------------
async def test_encrypted_contact_details_reach_the_server_decrypted_and_a_refusal_carries_the_key(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    from tests.adapters.test_contact_details import Keys

    keys = Keys("kortrijk")
    plain = _routed(feed, anonymous=False)
    melder = json.loads(plain.value)["melder"]
    record = keys.protect(plain)
    assert melder["naam"].encode() not in record.value
    h = harness(contacts=keys.contacts, status_source="servicerequestupdates")
    await h.deliver(record)
    (post,) = h.recorder.posts()
    assert post["email"] == melder["contactpunt"]["email"] and "mh1." not in json.dumps(post)
    mid = record.key.decode()
    value, _ = h.worker.store.kept.get(mid)  # type: ignore[misc]
    assert value == record.value, "kept as consumed: encrypted"
    h.server_status(mid, "751", "Niet onze bevoegdheid.")
    outputs = await h.poll()
    assert_one_refusal(outputs, record, "kortrijk")
    assert json.loads(dict(outputs[0].headers)[Header.MELDING_KEY]) == keys.records[mid]
    # erased (meldhub gdpr erase): filed without contact details
    erased = keys.protect(_routed(feed, anonymous=False))
    keys.erase(erased.key.decode())
    await h.deliver(erased)
    assert not {"email", "first_name", "last_name", "phone"} & set(h.recorder.posts()[-1])


# -- failures ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ([400], "vendor-rejected"),
        ([422], "vendor-rejected"),
        ([500, 502, 503], "vendor-unavailable"),
        (["timeout", "timeout", "timeout"], "vendor-timeout"),
        (["not-json"], "vendor-malformed"),
        ("wrong-key", "vendor-auth"),
        ("no-service-code", "unknown-category"),
        ("not-a-melding", "not-json"),
    ],
)
async def test_vendor_failures_are_dead_lettered_with_their_class(
    harness: Callable[..., Harness], feed: DemoFeed, fault: Any, error_class: str
) -> None:
    buf = io.StringIO()
    logs.configure("INFO", stream=buf)
    try:
        h = harness(api_key="wrong-key" if fault == "wrong-key" else KEY,
                    **({"service_codes": {"zwerfvuil": "zwerfvuil"}} if fault == "no-service-code" else {}))
        record = _routed(feed, anonymous=False)
        if fault == "not-a-melding":
            record = Record(value=b"geen melding", key=b"x", topic=authority_topic("kortrijk"))
        elif isinstance(fault, list):
            h.recorder.faults["POST"] = list(fault)
        emit = await h.worker.handle(record)
    finally:
        logs.configure("INFO")
    (out,) = emit.outputs
    assert out.topic == DEADLETTER and out.value == record.value, "the original record, untouched"
    headers = dict(out.headers)
    assert headers[Header.ERROR_CLASS] == error_class.encode()
    assert headers[Header.AUTHORITY] == b"kortrijk"
    if fault == [500, 502, 503]:
        assert b"gave up after 3 attempts" in headers[Header.ERROR_REASON]
    # the loop's gate: outages and 401/403 pause the destination, the rest is dead-lettered
    paused = _gate_pauses(gate_for(h.config), emit, "open311_out", h.config)
    assert paused == (error_class in ("vendor-unavailable", "vendor-timeout", "vendor-auth"))
    # no personal data in the reason or the logs (the stand-in's error body echoes the e-mail)
    if record.value.startswith(b"{"):
        melder = json.loads(record.value)["melder"]
        for secret in (melder["naam"], melder["contactpunt"]["email"]):
            assert secret.encode() not in headers[Header.ERROR_REASON] and secret not in buf.getvalue()
    assert len(h.published) == 0


async def test_a_rejected_post_is_not_searched_again_but_an_unreadable_answer_is(
    harness: Callable[..., Harness], feed: DemoFeed
) -> None:
    h = harness()
    record = _routed(feed)
    mid = record.key.decode()
    h.recorder.faults["POST"] = [400]
    await h.worker.handle(record)
    assert h.worker.store.get(mid)["unsure"] == 0, "the server answered: it made nothing"  # type: ignore[index]
    h.recorder.faults["POST"] = ["not-json"]
    await h.worker.handle(record)
    assert h.worker.store.get(mid)["unsure"] == 1, "an answer that cannot be read may hide a request"  # type: ignore[index]
    (out,) = await h.deliver(record)  # replayed: searched (nothing there: the stand-in's fault came first), filed once
    assert _change(out).status.notation == "557" and len(h.published) == 1
    assert Counter(m for m, _, _ in h.recorder.sent)["POST"] == 3


def test_the_worker_runs_under_the_cli_names() -> None:
    """``meldhub adapters run open311-out-<tenant>`` finds the vendor in its sub-folder."""
    installed = adapter_registry.installed()["open311-out"]
    assert installed.package == "adapters.open311.outbound" and installed.has_service
    assert installed.config_model is Config
    assert asyncio.iscoroutinefunction(installed.module("service").run)
