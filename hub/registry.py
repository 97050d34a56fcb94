"""The authority registry: who can own a melding in a region, and the ordered rules that decide.

One YAML file per deployed region (example: ``deploy/regions/zuid-west-vlaanderen/registry.yaml``).
It is configuration written by people, so everything that can be checked is checked once, at
load, with an error that names the file and the entry — a typo must stop the hub at start-up,
not dead-letter meldingen at 3 a.m.:

- authority and rule ids are unique; authority ids are valid topic suffixes
  (``meldingen.authority.<id>``);
- every municipality authority has a post-2025 NIS code (a pre-2025 code is named as such,
  with its successor) and no NIS code appears twice;
- a rule names a known authority (or ``{municipality}``), known category slugs and only
  municipalities of this region;
- a rule with a ``layer`` condition names a declared layer, with a buffer in metres
  (0–1000); ``overrides`` names only later rules.

The region served is *derived*: the NIS codes of the ``gemeente`` authorities.

Layers (``layers:``) are declared here and read by :mod:`hub.layers` when a
:class:`~hub.routing.Router` is built: a relative ``path`` is relative to the registry file
(or, for a registry built from data, to the example region's folder). A missing or broken layer
file therefore stops the hub at start-up and makes a hot reload keep the old rules.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from hub.geo import load_nis_2024_to_2025
from hub.topics import authority_topic

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = PROJECT_ROOT / "deploy" / "regions" / "zuid-west-vlaanderen" / "registry.yaml"
REGISTRY_ENV = "MELDHUB_REGISTRY"

CATEGORY_BASE = "https://w3id.org/meldingen-hub/id/concept/categorie/"
CATEGORY_SLUGS: frozenset[str] = frozenset(
    {
        "zwerfvuil",
        "sluikstort",
        "volle-vuilnisbak",
        "wegdefect",
        "voetpad-fietspad-defect",
        "straatverlichting",
        "verkeerslicht-signalisatie",
        "hinder-wegenwerken",
        "riolering-wateroverlast",
        "groenonderhoud-bomen",
        "dierenoverlast-dood-dier",
        "graffiti-vandalisme",
        "geluidsoverlast",
        "vraag-burgerzaken",
    }
)
"""The hub's category scheme (slugs of ``CATEGORY_BASE``). Kept here until the scheme has a
module of its own; the registry must refuse a rule for a category no melding can carry."""

HUB_LOCAL_ORGANISATION = "https://w3id.org/meldingen-hub/id/organisatie/"
"""Prefix of identifiers the hub minted itself because no OVO/KBO URI was known."""

ANY: Literal["*"] = "*"
MUNICIPALITY = "{municipality}"
"""Rule authority meaning "the municipality authority of the point"."""

AuthorityKind = Literal["gemeente", "intercommunale", "gewestelijk-agentschap", "nutsbedrijf"]

_NIS = re.compile(r"^[1-9][0-9]{4}$")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_IRI = re.compile(r"^https?://[^\s<>\"{}|\\^`]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_BUFFER_M = 1000.0


class RegistryError(ValueError):
    """The registry file is missing, unreadable or inconsistent; the message says where."""


def default_registry_path() -> Path:
    """``$MELDHUB_REGISTRY`` if set, else the example region shipped with the project."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else DEFAULT_REGISTRY


def _nis_str(value: Any) -> Any:
    # YAML reads an unquoted 34022 as an int; accept it rather than fail on quoting style.
    return f"{value:05d}" if isinstance(value, int) and not isinstance(value, bool) else value


def category_slug(category: str) -> str:
    """Slug of a hub category IRI (a bare slug is returned unchanged)."""
    return category[len(CATEGORY_BASE) :] if category.startswith(CATEGORY_BASE) else category


class Authority(BaseModel):
    """An organisation that can own meldingen; it reads them from ``topic``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = Field(min_length=1)
    kind: AuthorityKind
    identifier: str
    nis: str | None = None

    @field_validator("id")
    @classmethod
    def _topic_safe(cls, v: str) -> str:
        authority_topic(v)  # raises ValueError with the allowed alphabet
        return v

    @field_validator("identifier")
    @classmethod
    def _absolute_iri(cls, v: str) -> str:
        if not _IRI.match(v):
            raise ValueError(f"identifier {v!r} is not an absolute http(s) IRI")
        return v

    @field_validator("nis", mode="before")
    @classmethod
    def _nis_format(cls, v: Any) -> Any:
        v = _nis_str(v)
        if isinstance(v, str) and not _NIS.match(v):
            raise ValueError(f"NIS code {v!r} is not 5 digits")
        return v

    @model_validator(mode="after")
    def _nis_iff_gemeente(self) -> Authority:
        if self.kind == "gemeente" and self.nis is None:
            raise ValueError(f"authority {self.id!r} is a gemeente but has no 'nis'")
        if self.kind != "gemeente" and self.nis is not None:
            raise ValueError(f"authority {self.id!r} is a {self.kind}; only a gemeente has a 'nis'")
        return self

    @property
    def topic(self) -> str:
        return authority_topic(self.id)

    @property
    def hub_local(self) -> bool:
        """True when the identifier is a placeholder minted by the hub, not an OVO/KBO URI."""
        return self.identifier.startswith(HUB_LOCAL_ORGANISATION)


class LayerSpec(BaseModel):
    """A geographic layer rules can refer to: a GeoJSON file (CRS84) and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    path: str = Field(min_length=1)
    description: str = Field(min_length=1)
    sample: bool = False
    """True for hand-made sample geometry: routing on it is a demonstration, not the truth."""
    source: str = ""
    licence: str = ""
    label_property: str = "naam"
    """The feature property that names a feature in explanations (e.g. a road number)."""
    sha256: str | None = None
    """Pins the file's content: a changed layer file must come with a new registry version."""

    @field_validator("id")
    @classmethod
    def _id_format(cls, v: str) -> str:
        if not _RULE_ID.match(v):
            raise ValueError(f"layer id {v!r}: use lower-case letters, digits and '-'")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha_format(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.match(v):
            raise ValueError(f"sha256 {v!r} is not 64 lower-case hex digits")
        return v


class LayerCondition(BaseModel):
    """A rule's place condition: the point lies within ``buffer_m`` metres of a feature of ``id``
    (optionally only features whose properties match ``where``: property → allowed values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    buffer_m: float = Field(ge=0, le=MAX_BUFFER_M)
    where: dict[str, tuple[str, ...]] | None = None

    @field_validator("where", mode="before")
    @classmethod
    def _where_lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: tuple(str(x) for x in (vals if isinstance(vals, list | tuple) else [vals])) for k, vals in v.items()}
        return v


class Rule(BaseModel):
    """If the category, the municipality and (when given) the layer all match, ``authority`` owns the melding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    description: str = Field(min_length=1)
    categories: tuple[str, ...] | Literal["*"]
    municipalities: tuple[str, ...] | Literal["*"]
    authority: str
    layer: LayerCondition | None = None
    overrides: tuple[str, ...] = ()
    """Later rules this rule knowingly wins over where both match (``route check`` then does not
    report that overlap)."""

    @field_validator("id")
    @classmethod
    def _id_format(cls, v: str) -> str:
        if not _RULE_ID.match(v):
            raise ValueError(f"rule id {v!r}: use lower-case letters, digits and '-'")
        return v

    @field_validator("categories", mode="before")
    @classmethod
    def _known_categories(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            v = [category_slug(c) if isinstance(c, str) else c for c in v]
            unknown = [c for c in v if c not in CATEGORY_SLUGS]
            if unknown:
                noun = "category" if len(unknown) == 1 else "categories"
                raise ValueError(f"unknown {noun} {unknown}; known: {sorted(CATEGORY_SLUGS)}")
            _non_empty_unique(v, "categories")
        return v

    @field_validator("municipalities", mode="before")
    @classmethod
    def _nis_list(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            v = [_nis_str(n) for n in v]
            bad = [n for n in v if not (isinstance(n, str) and _NIS.match(n))]
            if bad:
                raise ValueError(f"NIS codes must be 5 digits, got {bad}")
            _non_empty_unique(v, "municipalities")
        return v

    def matches(self, slug: str, nis: str) -> bool:
        """Category and municipality match (the layer condition, if any, is the router's to test)."""
        return (self.categories == ANY or slug in self.categories) and (
            self.municipalities == ANY or nis in self.municipalities
        )


def _non_empty_unique(values: list[Any], what: str) -> None:
    if not values:
        raise ValueError(f"{what} is empty; use \"*\" for any")
    dupes = sorted({x for x in values if values.count(x) > 1})
    if dupes:
        raise ValueError(f"{what} lists {dupes} more than once")


class Registry(BaseModel):
    """A region's authorities and its ordered routing rules (first match wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    region: str = Field(min_length=1)
    authorities: tuple[Authority, ...]
    layers: tuple[LayerSpec, ...] = ()
    rules: tuple[Rule, ...]

    _by_id: dict[str, Authority] = PrivateAttr(default_factory=dict)
    _by_nis: dict[str, Authority] = PrivateAttr(default_factory=dict)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError(f"version {v!r} must be a quoted string (YAML reads 2026.10 as 2026.1)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        if not self.rules:
            raise ValueError("no rules: every melding would be dead-lettered as no-owner")
        self._by_id = _unique({a.id: a for a in self.authorities}, [a.id for a in self.authorities], "authority id")
        gemeenten = [a for a in self.authorities if a.nis is not None]
        if not gemeenten:
            raise ValueError("no gemeente authority: the region served is empty")
        self._by_nis = _unique({a.nis: a for a in gemeenten if a.nis}, [a.nis for a in gemeenten], "NIS code")
        _unique({}, [r.id for r in self.rules], "rule id")
        layer_ids = [spec.id for spec in self.layers]
        _unique({}, layer_ids, "layer id")
        _check_post_2025(gemeenten)
        rule_ids = [r.id for r in self.rules]
        for position, rule in enumerate(self.rules):
            if rule.layer is not None and rule.layer.id not in layer_ids:
                raise ValueError(f"rule {rule.id!r}: unknown layer {rule.layer.id!r}; declared layers: {layer_ids}")
            for other in rule.overrides:
                if other not in rule_ids[position + 1 :]:
                    raise ValueError(
                        f"rule {rule.id!r}: overrides {other!r}, which is not a later rule "
                        "(a rule can only win over rules after it)"
                    )
            if rule.authority != MUNICIPALITY and rule.authority not in self._by_id:
                raise ValueError(
                    f"rule {rule.id!r}: unknown authority {rule.authority!r}; "
                    f"known: {sorted(self._by_id)} or {MUNICIPALITY!r}"
                )
            if rule.municipalities != ANY:
                outside = [n for n in rule.municipalities if n not in self._by_nis]
                if outside:
                    raise ValueError(
                        f"rule {rule.id!r}: municipalities {outside} are not gemeente authorities of "
                        f"region {self.region} (region: {sorted(self._by_nis)})" + _successor_hint(outside)
                    )
        return self

    @property
    def region_municipalities(self) -> frozenset[str]:
        """NIS codes of the municipalities this registry serves (its gemeente authorities)."""
        return frozenset(self._by_nis)

    def authority(self, authority_id: str) -> Authority:
        return self._by_id[authority_id]

    @property
    def source(self) -> Path | None:
        """The file this registry was loaded from (None when built from data)."""
        return self._source

    def layer_spec(self, layer_id: str) -> LayerSpec:
        return next(spec for spec in self.layers if spec.id == layer_id)

    def layer_path(self, spec: LayerSpec | str) -> Path:
        """Where a layer's file is: relative paths are relative to the registry file."""
        if isinstance(spec, str):
            spec = self.layer_spec(spec)
        path = Path(spec.path)
        if path.is_absolute():
            return path
        base = self._source.parent if self._source is not None else DEFAULT_REGISTRY.parent
        return base / path

    def municipality_authority(self, nis: str) -> Authority | None:
        return self._by_nis.get(nis)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Registry:
        """Read and check a registry file (default: :func:`default_registry_path`)."""
        path = Path(path) if path is not None else default_registry_path()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(
                f"{path}: cannot read registry ({exc.strerror}); set {REGISTRY_ENV} or --registry"
            ) from None
        except yaml.YAMLError as exc:
            raise RegistryError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: expected a mapping with version, region, authorities, rules")
        try:
            registry = cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise RegistryError(f"{path}: {_describe(exc, data)}") from None
        registry._source = path.resolve()
        return registry


def _unique(mapping: dict[str, Any], keys: list[Any], what: str) -> dict[str, Any]:
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate {what}(s): {dupes}")
    return mapping


def _check_post_2025(gemeenten: list[Authority]) -> None:
    mapping = load_nis_2024_to_2025()
    current = set(mapping.values())
    for a in gemeenten:
        if a.nis is not None and a.nis not in current:
            raise ValueError(f"authority {a.id!r}: {a.nis} is not a post-2025 NIS code" + _successor_hint([a.nis]))


def _successor_hint(codes: list[str]) -> str:
    mapping = load_nis_2024_to_2025()
    hints = [f"{c} became {mapping[c]} on 1 January 2025" for c in codes if c in mapping and mapping[c] != c]
    return f" ({'; '.join(hints)})" if hints else ""


def _describe(exc: pydantic.ValidationError, data: dict[str, Any]) -> str:
    """pydantic's errors as 'where: what', naming the authority/rule id rather than an index."""
    parts = []
    for e in exc.errors()[:5]:
        loc = list(e["loc"])
        if len(loc) >= 2 and loc[0] in ("authorities", "rules", "layers") and isinstance(loc[1], int):
            try:
                ident = data[loc[0]][loc[1]].get("id")
            except (AttributeError, IndexError, KeyError, TypeError):
                ident = None
            if ident:
                loc[1] = f"[{ident}]"
        where = ".".join(str(x) for x in loc)
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more
