"""The consumers' contract: an AsyncAPI 3.0 document of every topic the hub reads or writes.

:func:`build_app` describes the hub as a FastStream application (the hub subscribes to the
inbound and status topics and publishes to the authority and dead-letter topics), so
``faststream docs gen hub.asyncapi:app --yaml`` works. FastStream 0.7 has no notion of Kafka
headers, message keys or channel parameters, so :func:`asyncapi_document` completes its output
with them (header schemas from the models below, the key binding, the authority ids of the
registry as the ``{authority}`` parameter) — ``meldhub route asyncapi`` writes that completed
document to ``docs/asyncapi.yaml``; ``tests/test_asyncapi.py`` fails when the file is stale.

:func:`topic_examples` runs demo meldingen through the real pipeline (validation, routing,
forwarding) and returns one example record per topic for ``docs/topics/``, with the reporter's
personal data replaced by obviously fake values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hub.melding import Melding
from hub.topics import DEADLETTER, INBOUND, JSONLD_CONTENT_TYPE, REFUSALS, STATUS, STATUS_PREFIX, TRIAGE, Header

if TYPE_CHECKING:
    from faststream import FastStream

    from hub.registry import Registry

CONTRACT_VERSION = "1.0.0"
"""Version of the topic contract (names, headers, payload shapes). Bump the major on any breaking change."""

AUTHORITY_CHANNEL = "meldingen.authority.{authority}"
SOURCE_STATUS_CHANNEL = STATUS_PREFIX + "{source}"
FIXED_REFUSED_AT = "2026-11-20T09:15:00+00:00"
"""``refused-at`` of the example refusal."""

FAKE_NAME = "Fictieve Melder (voorbeeld)"
FAKE_EMAIL = "melder@example.org"
FAKE_PHONE = "+32 000 00 00 00"
FIXED_FIRST_SEEN = "2026-11-20T08:00:00+00:00"
"""``first-seen`` of the example dead letter (the pipeline stamps the current time)."""

_DOCS = "https://w3id.org/meldingen-hub"  # hub namespace; the documents themselves live in the repository


# --- header models (documentation only: Kafka headers are UTF-8 byte strings) -------------------


class _Headers(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class InboundHeaders(_Headers):
    """Headers a channel adapter sets on ``meldingen.inbound``. Hub-only headers (``authority``,
    ``route-*``, ``error-*``, ...) arriving here are dropped, never trusted."""

    melding_id: str = Field(
        alias=Header.MELDING_ID, description="The melding's identificator.notatie (a UUID); also the record key."
    )
    source: str = Field(
        alias=Header.SOURCE, description="The channel adapter that produced it, e.g. 'meldingsapp-kortrijk'; kept as given."
    )


class AuthorityHeaders(_Headers):
    """Headers of a routed melding on ``meldingen.authority.<id>``."""

    melding_id: str = Field(alias=Header.MELDING_ID, description="The melding's id (a UUID); also the record key.")
    content_type: str = Field(alias=Header.CONTENT_TYPE, description=f"Always '{JSONLD_CONTENT_TYPE}'.")
    authority: str = Field(alias=Header.AUTHORITY, description="The owner's authority id: the <id> of the topic.")
    route_rule: str = Field(
        alias=Header.RULE_ID,
        description="Id of the registry rule that decided the owner, e.g. 'regional-road-awv'. "
        "`meldhub route explain` shows why.",
    )
    route_ruleset_version: str = Field(
        alias=Header.RULESET_VERSION,
        description="Version of the authority registry (rules and layers) that routed it, e.g. '2026.2'. "
        "A melding keeps the version it was routed with, also after the rules change.",
    )
    municipality_nis: str = Field(
        alias=Header.MUNICIPALITY_NIS,
        description="Post-2025 NIS code of the municipality the melding's first point lies in.",
        pattern=r"^[1-9][0-9]{4}$",
    )
    hub_version: str = Field(alias=Header.HUB_VERSION, description="Release of the hub that wrote the record.")
    source: str | None = Field(
        default=None, alias=Header.SOURCE, description="Passed through from the inbound record: the channel adapter."
    )


class DeadLetterHeaders(_Headers):
    """Headers of a dead letter on ``meldingen.deadletter`` (the value is the original bytes, untouched)."""

    error_class: str = Field(
        alias=Header.ERROR_CLASS,
        description="What failed: too-large, not-utf8, not-json, not-jsonld, shape-violation, unknown-category, "
        "missing-location, outside-region, no-owner or bug.",
    )
    error_reason: str = Field(alias=Header.ERROR_REASON, description="One line for people: why it failed.")
    error_details: str | None = Field(
        default=None,
        alias=Header.ERROR_DETAILS,
        description="JSON: SHACL violations or other structured context (values on personal paths redacted).",
    )
    original_topic: str = Field(alias=Header.ORIGINAL_TOPIC, description="Topic the record was consumed from.")
    original_partition: str = Field(alias=Header.ORIGINAL_PARTITION, description="Its partition (decimal).")
    original_offset: str = Field(alias=Header.ORIGINAL_OFFSET, description="Its offset (decimal).")
    first_seen: str = Field(
        alias=Header.FIRST_SEEN, description="ISO 8601 time it first failed; kept across replays."
    )
    hub_version: str = Field(alias=Header.HUB_VERSION, description="Release of the hub that wrote the record.")
    melding_id: str | None = Field(
        default=None, alias=Header.MELDING_ID, description="The melding id when it could be read (else absent)."
    )


class RefusalHeaders(AuthorityHeaders):
    """Headers on ``meldingen.refusals``: every header the melding had on the owner's topic, unchanged
    (the hub checks ``authority`` against ``refused-by``), plus who refused, why and when."""

    refused_by: str = Field(alias=Header.REFUSED_BY, description="The refusing owner's authority id (= `authority`).")
    refusal_reason: str = Field(
        alias=Header.REFUSAL_REASON, description="One line for the next owner and triage; no personal data."
    )
    refused_at: str | None = Field(
        default=None, alias=Header.REFUSED_AT, description="ISO 8601 with time zone; the hub's clock when absent."
    )
    melding_key: str | None = Field(
        default=None,
        alias=Header.MELDING_KEY,
        description="With encrypted contact details: the melding's key record from meldingen.keys (wrapped keys "
        "only), so the hub can re-encrypt them for the next owner. Without it such a refusal is dead-lettered.",
    )
    route_history: str | None = Field(
        default=None, alias=Header.ROUTE_HISTORY, description="As received (earlier refusals), if any."
    )


class TriageHeaders(_Headers):
    """Headers on ``meldingen.triage``: meldingen no candidate owner would take."""

    melding_id: str = Field(alias=Header.MELDING_ID, description="The melding's id (a UUID); also the record key.")
    content_type: str = Field(alias=Header.CONTENT_TYPE, description=f"Always '{JSONLD_CONTENT_TYPE}'.")
    route_history: str = Field(
        alias=Header.ROUTE_HISTORY,
        description="JSON list, oldest first, of the owners that refused it: "
        "{authority, rule, ruleset_version, refused_at, reason}.",
    )
    triage_reason: str = Field(
        alias=Header.TRIAGE_REASON, description="Why no candidate was left (Dutch, one line), e.g. the hop limit."
    )
    hub_version: str = Field(alias=Header.HUB_VERSION, description="Release of the hub that wrote the record.")
    source: str | None = Field(default=None, alias=Header.SOURCE, description="The channel adapter, passed through.")


class StatusHeaders(_Headers):
    """Headers of a status event on ``meldingen.status`` and ``meldingen.status.<source>``."""

    melding_id: str = Field(alias=Header.MELDING_ID, description="The melding whose status changed; also the key.")
    source: str = Field(
        alias=Header.SOURCE,
        description="The channel the melding came from (as on the owner's topic): the status goes back there.",
    )
    status_previous: str | None = Field(
        default=None,
        alias=Header.STATUS_PREVIOUS,
        description="Notation of the status the reporter knew before (e.g. '557'); the hub checks the transition.",
    )
    reported_by: str | None = Field(
        default=None, alias=Header.REPORTED_BY, description="Adapter id that reported it, or 'hub' after a refusal."
    )


class StatusChange(BaseModel):
    """A ``melding:Meldingstatus`` in the hub's JSON-LD context: ``statuswaarde`` (a MeldingStatuswaarde
    concept), ``statusdatum``, ``statuswijzigingDoor``, ``beschrijving`` (Dutch, for the citizen) and the
    melding as ``"@reverse": {"heeftStatus": {"@id": ...}}``; ``@id`` derived from (melding, status, time).
    Example: docs/topics/meldingen.status.jsonld; life cycle: hub/status.py, docs/adapters.md."""

    model_config = ConfigDict(extra="allow")


class DeadLetterValue(BaseModel):
    """Placeholder type: the dead letter's value is the original record's bytes, whatever they were."""


# --- the FastStream application -----------------------------------------------------------------


def build_app(registry: Registry | None = None) -> FastStream:
    """The hub as a FastStream app, for AsyncAPI generation (it is never run)."""
    from faststream import FastStream
    from faststream.kafka import KafkaBroker
    from faststream.specification import AsyncAPI

    from hub.registry import Registry

    registry = registry or Registry.load()
    broker = KafkaBroker(
        "localhost:9092",
        description="Any Kafka cluster; localhost:9092 is the local development broker (`meldhub kafka up`).",
    )

    @broker.subscriber(
        INBOUND,
        title="inbound",
        description=(
            "Every channel adapter produces new meldingen here: OSLO Melding as JSON-LD with the hub's context "
            "(https://w3id.org/meldingen-hub/context/melding-v1.jsonld), key = melding id. The hub validates "
            "(SHACL, schemas/shapes/melding-shapes.ttl), routes and forwards each one exactly to one place: "
            "its owner's topic or the dead-letter topic. Max 1 MiB."
        ),
        include_in_schema=True,
    )
    async def inbound(melding: Melding) -> None:  # pragma: no cover - documentation only
        return None

    authorities = ", ".join(a.id for a in registry.authorities)
    broker.publisher(
        AUTHORITY_CHANNEL,
        title="authority",
        description=(
            "One topic per authority (meldingen.authority.<id>): the meldingen it owns, as JSON-LD with "
            "`behandelaar` set to the authority's identifier, otherwise unchanged; key = melding id. "
            f"Authorities of registry {registry.version} ({registry.region}): {authorities}. "
            "A new authority's topic appears when the first melding is routed to it."
        ),
        schema=Melding,
    )
    broker.publisher(
        DEADLETTER,
        title="deadletter",
        description=(
            "What the hub cannot decode, validate or route: the original bytes untouched (key kept), "
            "the reason in headers. Admins inspect and replay with `meldhub dlq`."
        ),
        schema=DeadLetterValue,
    )

    @broker.subscriber(
        REFUSALS,
        title="refusals",
        description=(
            "An owner's 'not ours': the melding exactly as it was received from meldingen.authority.<id> (value "
            "and headers), plus refused-by, refusal-reason and refused-at (key = melding id). The hub routes it to "
            "the next matching rule's owner (route-history header kept) or, when none is left or after "
            "MELDHUB_MAX_ROUTE_HOPS refusals, to meldingen.triage; the citizen's channel gets 'Toegewezen aan'."
        ),
    )
    async def refusals(melding: Melding) -> None:  # pragma: no cover - documentation only
        return None

    broker.publisher(
        TRIAGE,
        title="triage",
        description=(
            "Meldingen no candidate owner would take, for the region's triage team (principal `triage`): "
            "JSON-LD without `behandelaar`, the whole route history and the reason in headers."
        ),
        schema=Melding,
    )

    @broker.subscriber(
        STATUS,
        title="status",
        description=(
            "Status changes reported by the owning authority's system, and 'Toegewezen aan' from the hub after "
            "a refusal (key = melding id). The hub checks each against the status life cycle and sends it to "
            "meldingen.status.<source>, the channel the melding came from."
        ),
    )
    async def status(change: StatusChange) -> None:  # pragma: no cover - documentation only
        return None

    broker.publisher(
        SOURCE_STATUS_CHANNEL,
        title="source-status",
        description=(
            "Status changes for one channel adapter (meldingen.status.<source>), which shows them to the citizen "
            "(e.g. Open311 GET requests/{id})."
        ),
        schema=StatusChange,
    )

    return FastStream(
        broker,
        specification=AsyncAPI(
            title="Meldingen Hub topics",
            version=CONTRACT_VERSION,
            description=(
                "Topics of the Meldingen Hub, which validates OSLO meldingen and routes them to the owning "
                "authority. How to consume: docs/consumers.md; examples per topic: docs/topics/."
            ),
            schema_version="3.0.0",
        ),
    )


def asyncapi_document(registry: Registry | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document: FastStream's output completed with headers, key, parameters."""
    from hub.registry import Registry

    registry = registry or Registry.load()
    app = build_app(registry)
    doc: dict[str, Any] = app.schema.to_specification().to_jsonable()  # type: ignore[union-attr]
    doc["defaultContentType"] = JSONLD_CONTENT_TYPE
    doc["info"]["x-ruleset-version"] = registry.version
    messages = doc["components"]["messages"]
    headers = {
        "inbound": InboundHeaders,
        "authority": AuthorityHeaders,
        "deadletter": DeadLetterHeaders,
        "refusals": RefusalHeaders,
        "triage": TriageHeaders,
        "status": StatusHeaders,
        "source-status": StatusHeaders,
    }
    summaries = {
        "inbound": "A new melding from a channel adapter (JSON-LD).",
        "authority": "A melding routed to the authority that owns it, `behandelaar` set (JSON-LD).",
        "deadletter": "A record the hub could not process: the original bytes, the reason in headers.",
        "refusals": "An owner's 'not ours': the melding as received, with who refused, why and when.",
        "triage": "A melding no candidate owner would take, with its route history (JSON-LD).",
        "status": "A status change of a melding (melding:Meldingstatus, JSON-LD).",
        "source-status": "A checked status change for the channel the melding came from (JSON-LD).",
    }
    for name, message in messages.items():
        channel = name.split(":", 1)[0]
        model = headers[channel]
        message["name"] = f"{channel}-record"
        message["summary"] = summaries[channel]
        message["headers"] = _header_schema(model)
        message["correlationId"] = {
            "description": "The melding id, in the header and as the record key.",
            "location": f"$message.header#/{Header.MELDING_ID}",
        }
        message["contentType"] = {"deadletter": "application/octet-stream"}.get(channel, JSONLD_CONTENT_TYPE)
        message["bindings"] = {
            "kafka": {
                "key": {"type": "string", "description": "The melding id (UUID); dead letters keep the original key."},
                "bindingVersion": "0.4.0",
            }
        }
    doc["components"]["schemas"]["DeadLetterValue"] = {
        "type": "string",
        "format": "binary",
        "description": "The original record's value, byte for byte (may be invalid UTF-8, not JSON, or over 1 MiB).",
    }
    doc["components"]["schemas"]["StatusChange"]["description"] = (StatusChange.__doc__ or "").strip()
    # FastStream's order of channels follows set iteration (differs per process): fix it
    order = ["inbound", "authority", "deadletter", "refusals", "triage", "status", "source-status"]
    doc["channels"] = {k: doc["channels"][k] for k in sorted(doc["channels"], key=order.index)}
    doc["operations"] = {k: doc["operations"][k] for k in sorted(doc["operations"], key=order.index)}
    components = doc["components"]
    components["messages"] = {
        k: components["messages"][k] for k in sorted(components["messages"], key=lambda m: order.index(m.split(":")[0]))
    }
    components["schemas"] = dict(sorted(components["schemas"].items()))
    authority = doc["channels"]["authority"]
    authority["parameters"] = {
        "authority": {
            "description": "Authority id from the registry (lower-case letters, digits, '-').",
            "enum": [a.id for a in registry.authorities],
            "examples": ["kortrijk", "awv"],
        }
    }
    doc["channels"]["source-status"]["parameters"] = {
        "source": {
            "description": "Channel adapter id, as in the melding's `source` header.",
            "examples": ["open311-zwvl", "meldingsapp-kortrijk"],
        }
    }
    return doc


def _header_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    properties = {}
    for key, prop in schema.get("properties", {}).items():
        clean = {k: v for k, v in prop.items() if k not in ("title", "default")}
        if "anyOf" in clean:  # Optional[str] → string (an absent header is simply not there)
            clean = {"type": "string", **{k: v for k, v in clean.items() if k != "anyOf"}}
        properties[key] = clean
    return {
        "type": "object",
        "description": "Kafka record headers; every value is a UTF-8 string. "
        + " ".join((model.__doc__ or "").split()).replace("``", "`"),
        "properties": properties,
        "required": schema.get("required", []),
        "additionalProperties": True,
    }


def asyncapi_yaml(registry: Registry | None = None) -> str:
    header = (
        "# GENERATED by `meldhub route asyncapi` from hub/asyncapi.py and the authority registry: do not edit.\n"
        "# tests/test_asyncapi.py fails when this file is out of date.\n"
    )
    return header + yaml.safe_dump(asyncapi_document(registry), sort_keys=False, allow_unicode=True, width=100)


def __getattr__(name: str) -> Any:
    """``app`` is built on first use, so importing this module reads no registry."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


# --- example records ---------------------------------------------------------------------------


def topic_examples(registry: Registry | None = None) -> dict[str, str]:
    """File name → content: ``<topic>.jsonld`` (the value) and ``<topic>.headers.json`` (key and headers)
    for the inbound topic, every authority topic and the dead-letter topic, made by the real pipeline."""
    from hub.demo import DemoFeed
    from hub.geo import MunicipalityIndex
    from hub.pipeline import Pipeline, Record
    from hub.registry import Registry
    from hub.routing import Router
    from hub.validation import ShaclValidator

    registry = registry or Registry.load()
    index = MunicipalityIndex.load()
    router = Router(registry, index)
    from datetime import datetime

    pipeline = Pipeline(ShaclValidator(), router, clock=lambda: datetime.fromisoformat(FIXED_REFUSED_AT))
    feed = DemoFeed(registry, index, seed=2026)
    files: dict[str, str] = {}

    def record(doc: dict[str, Any], source: str) -> Record:
        value = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        melding_id = doc["identificator"]["notatie"]
        headers = ((Header.SOURCE, source.encode()), (Header.MELDING_ID, melding_id.encode()))
        return Record(value=value, key=melding_id.encode(), headers=headers, topic=INBOUND, partition=0, offset=0)

    def emit(topic: str, value: bytes | None, key: bytes | None, headers: tuple[tuple[str, bytes], ...]) -> None:
        doc = json.loads(value or b"null")
        files[f"{topic}.jsonld"] = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
        meta = {
            "topic": topic,
            "key": None if key is None else key.decode("utf-8"),
            "headers": {k: v.decode("utf-8") for k, v in headers},
            "note": "Example generated by `meldhub route asyncapi --examples docs/topics` through the real pipeline; "
            "personal data replaced by obviously fake values.",
        }
        files[f"{topic}.headers.json"] = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"

    for authority in registry.authorities:
        doc = _example_for(authority.id, feed, router, registry)
        outcome = pipeline.process(record(doc, doc["meldingsapplicatie"].rsplit("/", 1)[-1]))
        if outcome.dead_lettered or outcome.decision is None or outcome.decision.authority_id != authority.id:
            raise RuntimeError(f"example for {authority.id} did not route there: {outcome.reason or outcome.decision}")
        out = outcome.output
        emit(out.topic, out.value, out.key, out.headers)
        if authority.id == "kortrijk":
            emit(INBOUND, record(doc, "meldingsapp-kortrijk").value, out.key, record(doc, "meldingsapp-kortrijk").headers)

    # an owner's refusal, what the hub makes of it, and the citizen's status event
    from hub.refusal import refusal_output

    imog_doc = _example_for("imog", feed, router, registry)
    routed = pipeline.process(record(imog_doc, "meldingsapp-kortrijk")).output
    when = datetime.fromisoformat(FIXED_REFUSED_AT)
    topic, key, value, headers = refusal_output(
        routed.value or b"", routed.headers, "imog", "Sluikstort op privéterrein: niet voor Imog", refused_at=when
    )
    emit(topic, value, key, headers)
    rerouted = pipeline.process(Record(value=value, key=key, headers=headers, topic=topic, partition=0, offset=0))
    status_out = next(o for o in rerouted.extra if o.topic == STATUS)
    emit(STATUS, status_out.value, status_out.key, status_out.headers)
    out = rerouted.output
    _, key2, value2, headers2 = refusal_output(
        out.value or b"", out.headers, out.topic.rsplit(".", 1)[-1], "Ligt op het domein van de NMBS", refused_at=when
    )
    triaged = pipeline.process(Record(value=value2, key=key2, headers=headers2, topic=topic, partition=0, offset=0))
    if not triaged.triaged:
        raise RuntimeError(f"example triage did not reach {TRIAGE}: {triaged.reason}")
    emit(TRIAGE, triaged.output.value, triaged.output.key, triaged.output.headers)

    broken, _, _ = feed.melding(category="wegdefect", nis="34022", anonymous=False)
    _fake_reporter(broken)
    del broken["titel"]  # a shape violation: titel is required
    outcome = pipeline.process(record(broken, "meldingsapp-kortrijk"))
    out = outcome.output
    headers = tuple((k, FIXED_FIRST_SEEN.encode() if k == Header.FIRST_SEEN else v) for k, v in out.headers)
    emit(out.topic, out.value, out.key, headers)
    return dict(sorted(files.items()))


def _example_for(authority_id: str, feed: Any, router: Any, registry: Registry) -> dict[str, Any]:
    """A demo melding (fake reporter) that the registry routes to ``authority_id``."""
    authority = registry.authority(authority_id)
    candidates: list[tuple[str, str | None, tuple[float, float] | None]] = []
    if authority.nis is not None:
        candidates = [("wegdefect", authority.nis, None)] * 20
    else:
        for rule in registry.rules:
            if rule.authority != authority_id:
                continue
            slug = rule.categories[0] if rule.categories != "*" else "wegdefect"
            points: list[tuple[float, float] | None] = [None]
            if rule.layer is not None:
                layer = router.layers[rule.layer.id]
                points = [(float(x), float(y)) for g in layer.geometries_lonlat for x, y in _coords(g)]
            for point in points:
                nis = None
                if point is not None:
                    m = router.index.locate(*point)
                    if m is None or m.nis not in registry.region_municipalities:
                        continue
                    nis = m.nis
                candidates.append((slug, nis, point))
    candidates.sort(key=lambda c: c[1] != "34022")  # prefer an example in Kortrijk, the region's centre
    for slug, nis, point in candidates:
        doc, _, _ = feed.melding(category=slug, nis=nis, point=point, anonymous=False)
        try:
            decision = router.route([doc["type"][0]], [point or _wkt_point(doc)])
        except Exception:  # noqa: BLE001 - try the next candidate
            continue
        if decision.authority_id == authority_id:
            _fake_reporter(doc)
            return doc
    raise RuntimeError(f"no example melding routes to {authority_id}")


def _coords(geometry: Any) -> list[tuple[float, float]]:
    import shapely

    return [(float(x), float(y)) for x, y in shapely.get_coordinates(geometry)]


def _wkt_point(doc: dict[str, Any]) -> tuple[float, float]:
    wkt = doc["heeftBody"][0]["geometrie"]["wkt"]
    lon, lat = wkt[wkt.index("(") + 1 : wkt.index(")")].split()
    return float(lon), float(lat)


def _fake_reporter(doc: dict[str, Any]) -> None:
    melder = doc.get("melder")
    if isinstance(melder, dict):
        melder["naam"] = FAKE_NAME
        melder["contactpunt"] = {"@type": "Contactpunt", "email": FAKE_EMAIL, "telefoon": FAKE_PHONE}
