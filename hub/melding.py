"""Typed access to a melding in the hub's compact JSON-LD form, without losing a byte of meaning.

Why pydantic over the compact JSON (and not over RDF): adapters and the router read and write
the JSON shape of ``schemas/examples/valid/*.jsonld``; they want attributes, not triples. Every
model allows extra keys and every field keeps the shape it arrived in (a string stays a string,
a ``{"@value", "@language"}`` object stays one, a single value is not turned into a list), so
``Melding.from_jsonld(doc).to_jsonld() == doc``. Validation is SHACL's job
(:mod:`hub.validation`); the models only type what the hub's code reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from hub.errors import NotJsonLd, ShapeViolation
from hub.jsonld import HUB_CONTEXT_IRI, decode_json
from hub.topics import JSONLD_CONTENT_TYPE, Header


class _JsonLd(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    def to_jsonld(self) -> dict[str, Any]:
        """The compact JSON-LD object, exactly the keys that were given (or set)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ValueObject(_JsonLd):
    """A JSON-LD value object: ``{"@value": "…", "@language": "nl"}`` or ``{"@value": …, "@type": …}``."""

    value: Any = Field(alias="@value")
    language: str | None = Field(default=None, alias="@language")
    datatype: str | None = Field(default=None, alias="@type")


class Node(_JsonLd):
    """Any JSON-LD node object; also used for a reference written as ``{"@id": "…"}``."""

    id: str | None = Field(default=None, alias="@id")
    rdf_type: str | list[str] | None = Field(default=None, alias="@type")


Text = Union[str, ValueObject]
Ref = Union[str, Node]
"""An IRI as a plain string (the hub context coerces it) or as a node object ``{"@id": …}``."""


def text_of(value: Text | list[Text] | None) -> str | None:
    """The lexical value of a text field (first one if several)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.value)


def iri_of(value: Ref | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.id


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Identificator(Node):
    notatie: Text | None = None
    toegekendDoor: Ref | None = None
    toegekendDoorString: Text | None = None
    toegekendOp: Text | None = None


class Geometrie(Node):
    wkt: Text | None = None
    gml: Text | None = None


class MeldingBody(Node):
    beschrijving: Text | None = None
    bijlage: Text | None = None
    geometrie: Geometrie | str | None = None


class Adresvoorstelling(Node):
    straatnaam: Text | None = None
    huisnummer: Text | None = None
    busnummer: Text | None = None
    postcode: Text | None = None
    gemeentenaam: Text | None = None
    volledigAdres: Text | None = None
    land: Text | None = None
    verwijstNaar: Ref | None = None


class Meldingstatus(Node):
    statuswaarde: Ref | None = None
    statusdatum: Text | None = None
    statuswijzigingDoor: Ref | None = None
    beschrijving: Text | None = None


class Contactpunt(Node):
    email: Text | None = None
    telefoon: Text | None = None


class Persoon(Node):
    naam: Text | None = None
    contactpunt: list[Contactpunt | str] | Contactpunt | str | None = None


class Melding(Node):
    """A melding in compact JSON-LD (context ``melding-v1``). Field names are the JSON terms."""

    context: Any = Field(default=None, alias="@context")
    identificator: Identificator | str | None = None
    titel: Text | list[Text] | None = None
    samenvatting: Text | list[Text] | None = None
    meldingstype: list[Ref] | Ref | None = None
    type_: list[Ref] | Ref | None = Field(default=None, alias="type")
    heeftBody: list[MeldingBody | str] | MeldingBody | str | None = None
    heeftTarget: list[Adresvoorstelling | str] | Adresvoorstelling | str | None = None
    heeftStatus: list[Meldingstatus | str] | Meldingstatus | str | None = None
    indiener: Ref | None = None
    behandelaar: Ref | None = None
    betrokkene: list[Ref] | Ref | None = None
    melder: Persoon | str | None = None
    meldingsapplicatie: Ref | None = None
    meldingsorganisatie: Ref | None = None
    webpagina: Text | None = None
    _source: dict[str, Any] | None = PrivateAttr(default=None)
    """The JSON object it was parsed from (:meth:`from_jsonld`), which :meth:`to_jsonld` equals."""

    # -- (de)serialisation ---------------------------------------------------------------------
    @classmethod
    def from_jsonld(cls, doc: Any) -> Melding:
        """Parse a compact JSON-LD melding; ShapeViolation if a field the hub reads has the wrong JSON type."""
        if not isinstance(doc, dict):
            raise NotJsonLd(f"the message is a JSON {type(doc).__name__}, not a JSON-LD object")
        try:
            melding = cls.model_validate(doc)
        except ValidationError as e:
            # Locations and messages only: the inputs may be personal data (melder, contactpunt).
            errors = e.errors(include_url=False, include_context=False, include_input=False)
            first = errors[0]
            where = ".".join(str(p) for p in first["loc"][:3])
            details = [{"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]} for err in errors]
            raise ShapeViolation(f"not the hub's compact form: {where}: {first['msg']}", details=details) from e
        melding._source = doc
        return melding

    # -- accessors used by the router ------------------------------------------------------------
    @property
    def melding_id(self) -> str:
        """The identificator's notation: a UUID, the Kafka key of the melding."""
        notation = text_of(self.identificator.notatie) if isinstance(self.identificator, Identificator) else None
        if not notation:
            raise ShapeViolation("the melding has no identificator with a notatie (its id)")
        return notation

    @property
    def category_iris(self) -> list[str]:
        """The category concept IRIs from ``meldingstype`` and ``type`` (both carry it), de-duplicated."""
        seen: dict[str, None] = {}
        for ref in _many(self.meldingstype) + _many(self.type_):
            iri = iri_of(ref)
            if iri:
                seen.setdefault(iri, None)
        return list(seen)

    @property
    def bodies(self) -> list[MeldingBody]:
        return [b for b in _many(self.heeftBody) if isinstance(b, MeldingBody)]

    @property
    def addresses(self) -> list[Adresvoorstelling]:
        return [t for t in _many(self.heeftTarget) if isinstance(t, Adresvoorstelling)]

    @property
    def statuses(self) -> list[Meldingstatus]:
        return [s for s in _many(self.heeftStatus) if isinstance(s, Meldingstatus)]

    def points(self) -> list[tuple[float, float]]:
        """(longitude, latitude) of every WKT POINT and GML Point in WGS84 (CRS84 or EPSG:4326).

        Points in other reference systems (e.g. Lambert 72) are skipped: turning them into WGS84
        needs a projection library the hub does not carry.
        """
        out: list[tuple[float, float]] = []
        for body in self.bodies:
            geometry = body.geometrie
            if not isinstance(geometry, Geometrie):
                continue
            point = parse_wkt_point(text_of(geometry.wkt)) or parse_gml_point(text_of(geometry.gml))
            if point is not None:
                out.append(point)
        return out

    def with_behandelaar(self, iri: str) -> dict[str, Any]:
        """The compact JSON-LD of this melding with ``behandelaar`` set (the route stage's decision).

        From the parsed object itself when there is one (equal to :meth:`to_jsonld`, which would
        serialise the whole model again: a twentieth of the hub's work per melding); top-level
        copy only, so the caller's object is not changed. Models are not mutated after parsing."""
        doc = dict(self._source) if self._source is not None else self.to_jsonld()
        doc["behandelaar"] = iri
        return doc


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_WKT_POINT = re.compile(
    rf"^\s*(?:<(?P<crs>[^<>\s]+)>\s+)?POINT\s*(?:ZM|Z|M)?\s*\(\s*(?P<x>{_NUM})\s+(?P<y>{_NUM})(?:\s+{_NUM}){{0,2}}\s*\)\s*$",
    re.IGNORECASE,
)
_GML_POINT = re.compile(r"<(?:[\w.-]+:)?Point\b(?P<attrs>[^>]*)>.*?<(?:[\w.-]+:)?pos\b[^>]*>(?P<pos>[^<]+)<", re.S)
_SRS = re.compile(r"""srsName\s*=\s*["'](?P<srs>[^"']+)["']""")

_LON_LAT_CRS = ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "urn:ogc:def:crs:OGC:1.3:CRS84", "CRS84")
_LAT_LON_CRS = ("http://www.opengis.net/def/crs/EPSG/0/4326", "urn:ogc:def:crs:EPSG::4326", "EPSG:4326")


def _ordered(a: float, b: float, crs: str | None) -> tuple[float, float] | None:
    """(lon, lat) from two coordinates in axis order of ``crs`` (None = CRS84, the WKT/GeoSPARQL default)."""
    if crs is None or crs in _LON_LAT_CRS:
        return (a, b)
    if crs in _LAT_LON_CRS:  # EPSG:4326 is latitude first
        return (b, a)
    return None


def parse_wkt_point(wkt: str | None) -> tuple[float, float] | None:
    """(lon, lat) of a WKT POINT literal (optionally prefixed with a CRS IRI), else None."""
    if not wkt:
        return None
    m = _WKT_POINT.match(wkt)
    return _ordered(float(m["x"]), float(m["y"]), m["crs"]) if m else None


def parse_gml_point(gml: str | None) -> tuple[float, float] | None:
    """(lon, lat) of a ``<gml:Point srsName=…><gml:pos>…</gml:pos></gml:Point>``; no srsName = CRS84."""
    if not gml:
        return None
    m = _GML_POINT.search(gml)
    if not m:
        return None
    parts = m["pos"].split()
    if len(parts) < 2:
        return None
    srs = _SRS.search(m["attrs"])
    try:
        return _ordered(float(parts[0]), float(parts[1]), srs["srs"] if srs else None)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Kafka envelope
# ---------------------------------------------------------------------------------------------
class Envelope(BaseModel):
    """A melding as a Kafka record: key = melding id, headers per :class:`hub.topics.Header`."""

    key: str
    headers: dict[str, str] = Field(default_factory=dict)
    value: Melding

    @classmethod
    def for_melding(cls, melding: Melding, *, source: str | None = None, **headers: str) -> Envelope:
        """An envelope with the standard headers (melding-id, content-type, schema, source) set."""
        standard = {
            Header.MELDING_ID: melding.melding_id,
            Header.CONTENT_TYPE: JSONLD_CONTENT_TYPE,
            Header.SCHEMA: HUB_CONTEXT_IRI,
        }
        if source is not None:
            standard[Header.SOURCE] = source
        return cls(key=melding.melding_id, headers={**standard, **headers}, value=melding)

    def to_kafka(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        value = json.dumps(self.value.to_jsonld(), ensure_ascii=False, separators=(",", ":"))
        headers = [(name, text.encode("utf-8")) for name, text in self.headers.items()]
        return self.key.encode("utf-8"), value.encode("utf-8"), headers

    @classmethod
    def from_kafka(
        cls,
        key: bytes | None,
        value: bytes,
        headers: Iterable[tuple[str, bytes | None]] | None = None,
    ) -> Envelope:
        """Decode a record; NotUtf8 / NotJson / NotJsonLd / ShapeViolation say why it cannot be."""
        melding = Melding.from_jsonld(decode_json(value))
        decoded = {name: (raw or b"").decode("utf-8", errors="replace") for name, raw in (headers or [])}
        text_key = key.decode("utf-8", errors="replace") if key else melding.melding_id
        return cls(key=text_key, headers=decoded, value=melding)
