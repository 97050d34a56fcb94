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
  municipalities of this region.

The region served is *derived*: the NIS codes of the ``gemeente`` authorities.
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


class Rule(BaseModel):
    """If the category and the municipality both match, ``authority`` owns the melding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    description: str = Field(min_length=1)
    categories: tuple[str, ...] | Literal["*"]
    municipalities: tuple[str, ...] | Literal["*"]
    authority: str

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
    rules: tuple[Rule, ...]

    _by_id: dict[str, Authority] = PrivateAttr(default_factory=dict)
    _by_nis: dict[str, Authority] = PrivateAttr(default_factory=dict)

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
        _check_post_2025(gemeenten)
        for rule in self.rules:
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
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise RegistryError(f"{path}: {_describe(exc, data)}") from None


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
        if len(loc) >= 2 and loc[0] in ("authorities", "rules") and isinstance(loc[1], int):
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
