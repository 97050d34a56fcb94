"""The route stage: category × place → the authority that owns a melding.

A pure function of (registry, polygons, melding): no I/O, no clock, no randomness, so the same
melding under the same ``ruleset_version`` always goes to the same owner, and a decision can be
replayed and explained later (``explain``; ``meldhub route explain`` builds on it).

Rules of the game, all deliberate:

- **First category only.** A melding may carry several categories (``oa:motivatedBy`` 1..*); the
  first one in the order the melding model gives decides. Channels list the citizen's own choice
  first, and routing on "any" category would make the owner depend on rule order in surprising ways.
- **First point only.** Further points (or other geometries) do not change the owner.
- **Place first, then rules.** The point must lie in a municipality of the registry's region;
  otherwise the melding is dead-lettered as ``outside-region`` naming where it is, because a
  municipality outside the region has no authority here to send it to.
- **First matching rule wins**; ``{municipality}`` means the municipality of the point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.errors import HubError, MissingLocation, NoOwner, OutsideRegion, UnknownCategory
from hub.geo import Municipality, MunicipalityIndex
from hub.registry import (
    ANY,
    CATEGORY_BASE,
    CATEGORY_SLUGS,
    MUNICIPALITY,
    Authority,
    Registry,
    RegistryError,
    Rule,
)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Who owns the melding, where it is, and which rule of which ruleset said so."""

    authority_id: str
    authority_name: str
    authority_iri: str
    topic: str
    municipality_nis: str
    municipality_name: str
    rule_id: str
    ruleset_version: str


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule tried by :meth:`Router.explain` and why it did or did not match."""

    rule_id: str
    matched: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything :meth:`Router.route` looked at, in order (built by :meth:`Router.explain`, which never raises)."""

    ruleset_version: str
    category: str | None  # slug of the category used
    point: tuple[float, float] | None  # the point used
    municipality: Municipality | None
    rules: tuple[RuleTrace, ...]  # the rules tried, in order, up to the first match
    decision: RouteDecision | None
    error_class: str | None  # hub.errors.ErrorClass value when routing fails
    error_reason: str | None
    notes: tuple[str, ...]  # e.g. which of several categories/points was used


class Router:
    """Routes with one registry over one municipality index (both loaded once, shared)."""

    def __init__(self, registry: Registry, index: MunicipalityIndex) -> None:
        missing = sorted(n for n in registry.region_municipalities if n not in index)
        if missing:
            raise RegistryError(
                f"registry {registry.version} ({registry.region}) names municipalities with no polygon: {missing}"
            )
        self.registry = registry
        self.index = index

    def route(self, category_iris: Sequence[str], points: Sequence[tuple[float, float]]) -> RouteDecision:
        """The owner of a melding; raises UnknownCategory, MissingLocation, OutsideRegion or NoOwner."""
        slug = self._category(category_iris)
        municipality = self._place(points)
        for rule in self.registry.rules:
            if rule.matches(slug, municipality.nis):
                return self._decide(rule, municipality)
        raise self._no_owner(slug, municipality)

    def explain(self, category_iris: Sequence[str], points: Sequence[tuple[float, float]]) -> Explanation:
        """What :meth:`route` does, step by step, with the reason each rule did or did not match."""
        notes: list[str] = []
        if len(category_iris) > 1:
            notes.append(f"{len(category_iris)} categories given; routed on the first ({category_iris[0]})")
        if len(points) > 1:
            notes.append(f"{len(points)} points given; routed on the first")
        point = (points[0][0], points[0][1]) if points else None
        slug: str | None = None
        municipality: Municipality | None = None
        traces: list[RuleTrace] = []
        decision: RouteDecision | None = None
        error: HubError | None = None
        try:
            slug = self._category(category_iris)
            municipality = self._place(points)
            for rule in self.registry.rules:
                matched, reason = self._why(rule, slug, municipality)
                traces.append(RuleTrace(rule.id, matched, reason))
                if matched:
                    decision = self._decide(rule, municipality)
                    break
            else:
                error = self._no_owner(slug, municipality)
        except HubError as exc:
            error = exc
            if municipality is None and point is not None and not isinstance(exc, MissingLocation):
                try:
                    municipality = self.index.locate(*point)
                except ValueError:
                    pass
        return Explanation(
            ruleset_version=self.registry.version,
            category=slug,
            point=point,
            municipality=municipality,
            rules=tuple(traces),
            decision=decision,
            error_class=None if error is None else error.error_class.value,
            error_reason=None if error is None else error.reason,
            notes=tuple(notes),
        )

    # --- steps ------------------------------------------------------------------------------

    def _category(self, category_iris: Sequence[str]) -> str:
        if not category_iris:
            raise UnknownCategory("melding has no category")
        iri = category_iris[0]
        slug = iri[len(CATEGORY_BASE) :] if iri.startswith(CATEGORY_BASE) else ""
        if slug not in CATEGORY_SLUGS:
            raise UnknownCategory(f"first category {iri!r} is not a concept of the hub's category scheme")
        return slug

    def _place(self, points: Sequence[tuple[float, float]]) -> Municipality:
        if not points:
            raise MissingLocation("melding has no point location, so no municipality can be found")
        lon, lat = points[0]
        try:
            municipality = self.index.locate(lon, lat)
        except ValueError as exc:
            raise MissingLocation(f"first point is not a usable location: {exc}") from None
        where = _fmt(lon, lat)
        region = self.registry.region
        details = {"lon": lon, "lat": lat, "region": region}
        if municipality is None:
            raise OutsideRegion(
                f"point {where} lies in no Flemish or Brussels municipality, outside the region served ({region})"
                + self._swapped_hint(lon, lat),
                details,
            )
        if municipality.nis not in self.registry.region_municipalities:
            raise OutsideRegion(
                f"point {where} lies in {municipality.name} ({municipality.nis}), "
                f"outside the region served ({region})",
                details | {"municipality_nis": municipality.nis, "municipality_name": municipality.name},
            )
        return municipality

    def _swapped_hint(self, lon: float, lat: float) -> str:
        # The commonest producer bug: lat/lon order. Say so instead of leaving admins to guess.
        try:
            swapped = self.index.locate(lat, lon)
        except ValueError:
            return ""
        return f"; as (lon, lat) = {_fmt(lat, lon)} it would lie in {swapped.name}: lon/lat swapped?" if swapped else ""

    def _decide(self, rule: Rule, municipality: Municipality) -> RouteDecision:
        authority: Authority | None
        if rule.authority == MUNICIPALITY:
            authority = self.registry.municipality_authority(municipality.nis)
        else:
            authority = self.registry.authority(rule.authority)
        if authority is None:  # unreachable while _place only lets region municipalities through
            raise NoOwner(f"rule {rule.id!r} names {MUNICIPALITY} but {municipality.nis} has no authority")
        return RouteDecision(
            authority_id=authority.id,
            authority_name=authority.name,
            authority_iri=authority.identifier,
            topic=authority.topic,
            municipality_nis=municipality.nis,
            municipality_name=municipality.name,
            rule_id=rule.id,
            ruleset_version=self.registry.version,
        )

    def _no_owner(self, slug: str, municipality: Municipality) -> NoOwner:
        return NoOwner(
            f"no rule of ruleset {self.registry.version} matches category {slug} "
            f"in {municipality.name} ({municipality.nis})",
            {"category": slug, "municipality_nis": municipality.nis, "ruleset_version": self.registry.version},
        )

    def _why(self, rule: Rule, slug: str, municipality: Municipality) -> tuple[bool, str]:
        place = f"{municipality.name} ({municipality.nis})"
        if rule.categories != ANY and slug not in rule.categories:
            return False, f"category {slug} is not one of {list(rule.categories)}"
        if rule.municipalities != ANY and municipality.nis not in rule.municipalities:
            return False, f"{place} is not one of the rule's {len(rule.municipalities)} municipalities"
        cat = "any category" if rule.categories == ANY else f"category {slug} listed"
        mun = "any municipality" if rule.municipalities == ANY else f"{place} listed"
        owner = "the point's municipality" if rule.authority == MUNICIPALITY else "authority"
        return True, f"{cat}, {mun} → {owner} {self._decide(rule, municipality).authority_id}"


def _fmt(lon: float, lat: float) -> str:
    def num(x: float) -> str:
        return f"{x:.6f}".rstrip("0").rstrip(".")

    return f"({num(lon)}, {num(lat)})"
