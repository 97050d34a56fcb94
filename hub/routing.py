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
- **Layers are place conditions, not places.** A rule may add "within ``buffer_m`` metres of a
  feature of layer L" (a regional road, a navigable waterway, a utility's asset); distances are
  metres in Belgian Lambert 2008 (:mod:`hub.layers`). A layer never brings a point outside the
  region into it: the place check comes first.

:class:`ReloadingRouter` wraps a :class:`Router` and swaps in a new one when the registry file
(or one of its layer files) changes and the new version loads; :func:`check_coverage` samples
the region to prove that every category has exactly one owner at every point.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hub import logs
from hub.errors import HubError, MissingLocation, NoOwner, OutsideRegion, UnknownCategory
from hub.geo import Municipality, MunicipalityIndex
from hub.layers import Layer, LayerError, LayerView, from_lambert2008, to_lambert2008
from hub.registry import (
    ANY,
    CATEGORY_BASE,
    CATEGORY_SLUGS,
    MUNICIPALITY,
    Authority,
    Registry,
    RegistryError,
    Rule,
    default_registry_path,
)

log = logs.get_logger("hub.routing")

RELOAD_INTERVAL_ENV = "MELDHUB_REGISTRY_RELOAD_S"
DEFAULT_RELOAD_INTERVAL_S = 2.0


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
    reached: bool = True  # False: after the deciding rule (only with ``explain(..., all_rules=True)``)
    layer_feature: str | None = None  # nearest feature of the rule's layer, when it was looked at
    distance_m: float | None = None  # distance to it, metres (Lambert 2008)


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

    def __init__(
        self, registry: Registry, index: MunicipalityIndex, layers: Mapping[str, Layer] | None = None
    ) -> None:
        """``layers`` (id → Layer) defaults to reading the registry's layer files; RegistryError
        if a polygon, a layer file or a rule's layer selection is missing or broken."""
        missing = sorted(n for n in registry.region_municipalities if n not in index)
        if missing:
            raise RegistryError(
                f"registry {registry.version} ({registry.region}) names municipalities with no polygon: {missing}"
            )
        self.registry = registry
        self.index = index
        self.layers: dict[str, Layer] = dict(layers) if layers is not None else _load_layers(registry)
        views: list[LayerView | None] = []
        for rule in registry.rules:
            if rule.layer is None:
                views.append(None)
                continue
            layer = self.layers.get(rule.layer.id)
            if layer is None:
                raise RegistryError(f"rule {rule.id!r}: layer {rule.layer.id!r} was not loaded")
            view = layer.select(rule.layer.where)
            if not len(view):
                raise RegistryError(
                    f"rule {rule.id!r}: no feature of layer {rule.layer.id!r} matches where={rule.layer.where}"
                )
            views.append(view)
        self._views: tuple[LayerView | None, ...] = tuple(views)
        self._compiled = tuple(zip(registry.rules, self._views, strict=True))

    @property
    def version(self) -> str:
        return self.registry.version

    def route(
        self,
        category_iris: Sequence[str],
        points: Sequence[tuple[float, float]],
        exclude: frozenset[str] = frozenset(),
    ) -> RouteDecision:
        """The owner of a melding; raises UnknownCategory, MissingLocation, OutsideRegion or NoOwner.

        ``exclude``: authority ids that refused this melding (:mod:`hub.refusal`); a matching rule
        that resolves to one of them is passed over, so the next matching rule is the next candidate.
        """
        slug = self._category(category_iris)
        municipality = self._place(points)
        xy: tuple[float, float] | None = None
        for rule, view in self._compiled:
            if not rule.matches(slug, municipality.nis):
                continue
            if view is not None:
                if xy is None:
                    xy = to_lambert2008(points[0][0], points[0][1])
                if not view.within(xy[0], xy[1], rule.layer.buffer_m):  # type: ignore[union-attr]
                    continue
            decision = self._decide(rule, municipality)
            if exclude and decision.authority_id in exclude:
                continue
            return decision
        raise self._no_owner(slug, municipality, exclude)

    def owner_id(self, rule: Rule, municipality: Municipality) -> str:
        """The authority id a rule resolves to at a place (``{municipality}`` → that municipality)."""
        return self._decide(rule, municipality).authority_id

    def explain(
        self,
        category_iris: Sequence[str],
        points: Sequence[tuple[float, float]],
        *,
        all_rules: bool = False,
        exclude: frozenset[str] = frozenset(),
    ) -> Explanation:
        """What :meth:`route` does, step by step, with the reason each rule did or did not match.

        ``all_rules``: go on after the deciding rule and say which later rules would also have
        matched (marked ``reached=False``): shows what the ordering hides. ``exclude``: owners that
        refused the melding (as in :meth:`route`); their rules show as matched but passed over.
        """
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
            assert point is not None
            xy = to_lambert2008(*point)
            for rule, view in self._compiled:
                trace = self._why(rule, view, slug, municipality, xy)
                if trace.matched and exclude:
                    owner = self._decide(rule, municipality).authority_id
                    if owner in exclude:
                        trace = RuleTrace(
                            rule.id,
                            False,
                            f"{trace.reason}, but {owner} refused this melding: passed over for the next candidate",
                            layer_feature=trace.layer_feature,
                            distance_m=trace.distance_m,
                        )
                if decision is not None:
                    prefix = f"not reached ({decision.rule_id} decided)"
                    reason = f"{prefix}; would match: {trace.reason}" if trace.matched else f"{prefix}; {trace.reason}"
                    traces.append(
                        RuleTrace(rule.id, trace.matched, reason, False, trace.layer_feature, trace.distance_m)
                    )
                    continue
                traces.append(trace)
                if trace.matched:
                    decision = self._decide(rule, municipality)
                    if not all_rules:
                        break
            if decision is None:
                error = self._no_owner(slug, municipality, exclude)
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

    def _no_owner(self, slug: str, municipality: Municipality, exclude: frozenset[str] = frozenset()) -> NoOwner:
        details = {"category": slug, "municipality_nis": municipality.nis, "ruleset_version": self.registry.version}
        if exclude:
            return NoOwner(
                f"no rule of ruleset {self.registry.version} names an owner for category {slug} "
                f"in {municipality.name} ({municipality.nis}) other than {', '.join(sorted(exclude))}, who refused it",
                details | {"refused_by": sorted(exclude)},
            )
        return NoOwner(
            f"no rule of ruleset {self.registry.version} matches category {slug} "
            f"in {municipality.name} ({municipality.nis})",
            details,
        )

    def _why(
        self,
        rule: Rule,
        view: LayerView | None,
        slug: str,
        municipality: Municipality,
        xy: tuple[float, float],
    ) -> RuleTrace:
        place = f"{municipality.name} ({municipality.nis})"
        if rule.categories != ANY and slug not in rule.categories:
            return RuleTrace(rule.id, False, f"category {slug} is not one of {list(rule.categories)}")
        if rule.municipalities != ANY and municipality.nis not in rule.municipalities:
            return RuleTrace(rule.id, False, f"{place} is not one of the rule's {len(rule.municipalities)} municipalities")
        cat = "any category" if rule.categories == ANY else f"category {slug} listed"
        mun = "any municipality" if rule.municipalities == ANY else f"{place} listed"
        owner = "the point's municipality" if rule.authority == MUNICIPALITY else "authority"
        feature: str | None = None
        distance: float | None = None
        where = ""
        if view is not None:
            condition = rule.layer
            assert condition is not None
            spec = self.registry.layer_spec(condition.id)
            sample = " (hand-made sample layer)" if spec.sample else ""
            hit = view.nearest(xy[0], xy[1])
            buffer = _metres(condition.buffer_m)
            if hit is None:  # unreachable: an empty selection is refused at construction
                return RuleTrace(rule.id, False, f"layer {condition.id}{sample} has no feature")
            feature, distance = hit.feature.label, hit.distance_m
            if distance > condition.buffer_m:
                return RuleTrace(
                    rule.id,
                    False,
                    f"nearest {condition.id} feature '{feature}'{sample} is {_metres(distance)} away, "
                    f"outside the {buffer} buffer",
                    layer_feature=feature,
                    distance_m=distance,
                )
            where = f", {_metres(distance)} from {condition.id} '{feature}'{sample} (buffer {buffer})"
        return RuleTrace(
            rule.id,
            True,
            f"{cat}, {mun}{where} → {owner} {self._decide(rule, municipality).authority_id}",
            layer_feature=feature,
            distance_m=distance,
        )


def _metres(value: float) -> str:
    return f"{value:.0f} m" if value >= 10 else f"{value:.1f} m"


def _load_layers(registry: Registry) -> dict[str, Layer]:
    layers: dict[str, Layer] = {}
    for spec in registry.layers:
        path = registry.layer_path(spec)
        try:
            layer = Layer.load(spec.id, path, label_property=spec.label_property)
        except LayerError as exc:
            raise RegistryError(f"registry {registry.version}: layer {spec.id!r}: {exc}") from None
        if spec.sha256 is not None and layer.sha256 != spec.sha256:
            raise RegistryError(
                f"registry {registry.version}: layer {spec.id!r} file {path} has sha256 {layer.sha256}, "
                f"but the registry pins {spec.sha256}: a changed layer needs a new registry version "
                "(update sha256 and bump version)"
            )
        layers[spec.id] = layer
    return layers


def _fmt(lon: float, lat: float) -> str:
    def num(x: float) -> str:
        return f"{x:.6f}".rstrip("0").rstrip(".")

    return f"({num(lon)}, {num(lat)})"


# --- hot reload ---------------------------------------------------------------------------------


class RouterLike(Protocol):
    """What the pipeline needs from a router: :class:`Router` and :class:`ReloadingRouter` both are."""

    def route(
        self,
        category_iris: Sequence[str],
        points: Sequence[tuple[float, float]],
        exclude: frozenset[str] = frozenset(),
    ) -> RouteDecision: ...

    def explain(
        self,
        category_iris: Sequence[str],
        points: Sequence[tuple[float, float]],
        *,
        all_rules: bool = False,
        exclude: frozenset[str] = frozenset(),
    ) -> Explanation: ...


def reload_interval_from_env(default: float = DEFAULT_RELOAD_INTERVAL_S) -> float:
    """``$MELDHUB_REGISTRY_RELOAD_S`` (seconds between checks; 0 = every message, negative = never)."""
    raw = os.environ.get(RELOAD_INTERVAL_ENV)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        log.warning("registry.reload_interval_invalid", value=raw[:40], default=default)
        return default


class ReloadingRouter:
    """A :class:`Router` that follows its registry file without a restart.

    At most every ``interval_s`` seconds (checked on the routing path, no thread of its own) it
    compares the modification time and size of the registry file and of the layer files it
    names. When they changed and the content (SHA-256) differs, it loads and checks the new
    registry and its layers off to the side and swaps the router in one assignment. Until then,
    and for good if the new files do not load, the old rules keep routing: a broken file is
    logged (``registry.reload_failed``, once per content) and never stops the hub.

    Each :meth:`route` call takes the current router once, so a decision's rule id and
    ``ruleset_version`` always come from the same ruleset, and a melding already routed keeps
    the version it was routed with (it is in its headers). A new file must carry a new
    ``version`` when its rules or layers differ: the version is what a routed melding names
    (``route-ruleset-version``), so a changed ruleset under an old version is refused.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        index: MunicipalityIndex | None = None,
        *,
        interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path) if path is not None else default_registry_path()
        self.index = index if index is not None else MunicipalityIndex.load()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        router = self._build()  # raises RegistryError: a broken file at start-up stops the hub
        self._router = router
        self._stamp: tuple[tuple[str, int, int] | None, ...] | None = self._stat(router.registry)
        self._digest = self._content_digest(router.registry)
        self._failed_reason: str | None = None
        self._next_check = clock() + max(interval_s, 0.0)
        self.reloads = 0

    # -- the Router interface ---------------------------------------------------------------

    @property
    def router(self) -> Router:
        """The current router (after a reload check if one is due)."""
        self._maybe_reload()
        return self._router

    @property
    def registry(self) -> Registry:
        return self._router.registry

    @property
    def version(self) -> str:
        return self._router.registry.version

    def route(
        self,
        category_iris: Sequence[str],
        points: Sequence[tuple[float, float]],
        exclude: frozenset[str] = frozenset(),
    ) -> RouteDecision:
        return self.router.route(category_iris, points, exclude)

    def explain(
        self,
        category_iris: Sequence[str],
        points: Sequence[tuple[float, float]],
        *,
        all_rules: bool = False,
        exclude: frozenset[str] = frozenset(),
    ) -> Explanation:
        return self.router.explain(category_iris, points, all_rules=all_rules, exclude=exclude)

    # -- reloading ---------------------------------------------------------------------------

    def reload_now(self) -> bool:
        """Check the files now; True if a new ruleset was swapped in."""
        with self._lock:
            return self._check()

    def _maybe_reload(self) -> None:
        if self.interval_s < 0 or self._clock() < self._next_check:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking; route with the current rules meanwhile
        try:
            self._check()
        finally:
            self._next_check = self._clock() + self.interval_s
            self._lock.release()

    def _check(self) -> bool:
        current = self._router
        stamp = self._stat(current.registry)
        if stamp == self._stamp:
            return False
        try:
            candidate = self._build()
        except (RegistryError, OSError) as exc:
            self._stamp = None  # try again at the next check (an editor may still be writing)
            self._fail(str(exc))
            return False
        old = current.registry
        digest = self._content_digest(candidate.registry)
        if digest == self._digest or _same_ruleset(current, candidate):
            self._stamp, self._digest, self._failed_reason = self._stat(candidate.registry), digest, None
            return False  # touched, reformatted or changed back: same rules
        if candidate.registry.version == old.version:
            self._stamp = None
            self._fail(
                f"{self.path}: rules or layers changed but version is still {old.version!r}: bump 'version' "
                "so that every routed melding names the ruleset that routed it"
            )
            return False
        self._router = candidate  # one assignment: every later route() sees the new ruleset
        self._digest = digest
        self._failed_reason = None
        self._stamp = self._stat(candidate.registry)
        self.reloads += 1
        added = sorted({a.id for a in candidate.registry.authorities} - {a.id for a in old.authorities})
        log.info(
            "registry.reloaded",
            path=str(self.path),
            old_version=old.version,
            new_version=candidate.registry.version,
            rules=len(candidate.registry.rules),
            authorities_added=added,
        )
        return True

    def _fail(self, reason: str) -> None:
        if reason == self._failed_reason:
            return  # said once; said again only when the reason changes
        self._failed_reason = reason
        log.error(
            "registry.reload_failed",
            path=str(self.path),
            reason=reason[:1000],
            kept_version=self._router.registry.version,
        )

    def _build(self) -> Router:
        return Router(Registry.load(self.path), self.index)

    def _stat(self, registry: Registry) -> tuple[tuple[str, int, int] | None, ...]:
        files = [self.path] + [registry.layer_path(spec) for spec in registry.layers]
        return tuple(_file_stamp(f) for f in files)

    def _content_digest(self, registry: Registry) -> str:
        return _digest_files([self.path] + [registry.layer_path(spec) for spec in registry.layers])


def _same_ruleset(a: Router, b: Router) -> bool:
    """Same rules, authorities and layer contents (a comment or formatting change is no new ruleset)."""
    if a.registry.model_dump() != b.registry.model_dump():
        return False
    return {k: v.sha256 for k, v in a.layers.items()} == {k: v.sha256 for k, v in b.layers.items()}


def _file_stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)


def _digest_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\0missing")
    return h.hexdigest()


# --- coverage check ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gap:
    """No rule matches this category at this place: meldingen there are dead-lettered as no-owner."""

    category: str
    municipality_nis: str
    municipality_name: str
    points: int  # sampled points with this gap
    example: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two rules claim the same (category, point) for different owners and the order silently decides.

    Precisely: at the point, for the category, rule ``winner`` decides; rule ``hidden`` comes later,
    also matches, has a layer condition (it claims this specific place), resolves to a different
    authority, and ``winner`` does not list it in ``overrides``.
    """

    category: str
    winner: str
    winner_owner: str
    hidden: str
    hidden_owner: str
    points: int
    example: tuple[float, float]
    example_municipality: str


@dataclass(frozen=True, slots=True)
class Spill:
    """A layer feature (with a rule's buffer) reaches outside the region: its claim ends at the border."""

    layer_id: str
    feature: str
    rule_id: str
    where: str  # the municipality outside the region, or "outside Flanders and Brussels"
    points: int
    example: tuple[float, float]


@dataclass
class CoverageReport:
    ruleset_version: str
    region: str
    spacing_m: float
    points: int = 0  # sampled points inside the region
    points_per_municipality: dict[str, int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)
    spills: list[Spill] = field(default_factory=list)
    wins: dict[str, int] = field(default_factory=dict)  # rule id → (point, category) pairs it decides
    unused_rules: list[str] = field(default_factory=list)  # rules that decide nowhere in the sample

    @property
    def ok(self) -> bool:
        return not self.gaps


def check_coverage(router: Router, spacing_m: float = 250.0, layer_step_m: float = 25.0) -> CoverageReport:
    """Sample the region and report gaps, overlaps and layer spill (see :class:`Gap`, :class:`Overlap`,
    :class:`Spill`).

    Points: a grid of ``spacing_m`` over every municipality of the region (plus one point that
    is surely inside it), and along every feature of every layer a rule uses, every
    ``layer_step_m``: on the feature and at 1 m inside and 1 m outside each side of the rule's buffer.
    Every category is tried at every point.
    """
    registry = router.registry
    report = CoverageReport(registry.version, registry.region, spacing_m)
    region = registry.region_municipalities
    samples: list[tuple[float, float]] = []
    for nis in sorted(region):
        samples.extend(_grid(router.index, nis, spacing_m))
    near_layers: list[tuple[tuple[float, float], str, str, str]] = []  # point, layer, feature, rule
    for rule, view in router._compiled:
        if view is None or rule.layer is None:
            continue
        for feature, geometry in view.geometries():
            for point in _along(geometry, rule.layer.buffer_m, layer_step_m):
                near_layers.append((point, rule.layer.id, feature.label, rule.id))
    samples.extend(p for p, *_ in near_layers)

    categories = sorted(CATEGORY_SLUGS)
    gaps: dict[tuple[str, str], list[tuple[float, float]]] = {}
    overlaps: dict[tuple[str, str, str], list[tuple[tuple[float, float], str, str, str]]] = {}
    spills: dict[tuple[str, str, str, str], list[tuple[float, float]]] = {}
    wins: dict[str, int] = {rule.id: 0 for rule in registry.rules}
    seen: set[tuple[float, float]] = set()
    layer_origin = {p: (layer, feature, rule) for p, layer, feature, rule in near_layers}
    for point in samples:
        if point in seen:
            continue
        seen.add(point)
        municipality = router.index.locate(*point)
        if municipality is None or municipality.nis not in region:
            origin = layer_origin.get(point)
            if origin is not None:
                where = (
                    "outside Flanders and Brussels"
                    if municipality is None
                    else f"{municipality.name} ({municipality.nis})"
                )
                spills.setdefault((origin[0], origin[1], origin[2], where), []).append(point)
            continue
        report.points += 1
        report.points_per_municipality[municipality.nis] = report.points_per_municipality.get(municipality.nis, 0) + 1
        xy = to_lambert2008(*point)
        place_match = [
            rule.municipalities == ANY or municipality.nis in rule.municipalities
            if view is None
            else (rule.municipalities == ANY or municipality.nis in rule.municipalities)
            and view.within(xy[0], xy[1], rule.layer.buffer_m)  # type: ignore[union-attr]
            for rule, view in router._compiled
        ]
        for slug in categories:
            matching = [
                rule
                for rule, ok in zip(registry.rules, place_match, strict=True)
                if ok and (rule.categories == ANY or slug in rule.categories)
            ]
            if not matching:
                gaps.setdefault((slug, municipality.nis), []).append(point)
                continue
            winner = matching[0]
            wins[winner.id] += 1
            winner_owner = router.owner_id(winner, municipality)
            for hidden in matching[1:]:
                if hidden.layer is None or hidden.id in winner.overrides:
                    continue
                hidden_owner = router.owner_id(hidden, municipality)
                if hidden_owner != winner_owner:
                    overlaps.setdefault((slug, winner.id, hidden.id), []).append(
                        (point, winner_owner, hidden_owner, f"{municipality.name} ({municipality.nis})")
                    )
    for (slug, nis), pts in sorted(gaps.items()):
        m = router.index.get(nis)
        report.gaps.append(Gap(slug, nis, m.name if m else nis, len(pts), pts[0]))
    for (slug, winner_id, hidden_id), found in sorted(overlaps.items()):
        point, winner_owner, hidden_owner, where = found[0]
        report.overlaps.append(Overlap(slug, winner_id, winner_owner, hidden_id, hidden_owner, len(found), point, where))
    for (layer_id, feature, rule_id, where), pts in sorted(spills.items()):
        report.spills.append(Spill(layer_id, feature, rule_id, where, len(pts), pts[0]))
    report.wins = wins
    report.unused_rules = [rule_id for rule_id, n in wins.items() if n == 0]
    return report


def _grid(index: MunicipalityIndex, nis: str, spacing_m: float) -> list[tuple[float, float]]:
    """Grid points (``spacing_m`` apart, in Lambert 2008) inside a municipality, plus one sure point."""
    import shapely

    geometry = index.geometry(nis)
    minx, miny, maxx, maxy = geometry.bounds
    x0, y0 = to_lambert2008(minx, miny)
    x1, y1 = to_lambert2008(maxx, maxy)
    # the bounding box of the projected corners, widened: meridians converge a little
    xs = _frange(min(x0, x1) - spacing_m, max(x0, x1) + spacing_m, spacing_m)
    ys = _frange(min(y0, y1) - spacing_m, max(y0, y1) + spacing_m, spacing_m)
    candidates = [_round(from_lambert2008(x, y)) for y in ys for x in xs]
    inside = shapely.contains_xy(geometry, [c[0] for c in candidates], [c[1] for c in candidates])
    points = [c for c, ok in zip(candidates, inside, strict=True) if ok]
    points.append(_round(index.representative_point(nis)))
    return points


def _along(geometry: object, buffer_m: float, step_m: float) -> list[tuple[float, float]]:
    """Points on and around a projected feature: on it, and 1 m inside/outside the buffer both sides."""
    import shapely

    geom = geometry  # Lambert 2008
    kind = getattr(geom, "geom_type", "")
    out: list[tuple[float, float]] = []
    offsets = [0.0] + ([buffer_m - 1.0] if buffer_m > 1.0 else []) + [buffer_m + 1.0]
    if kind in ("Point", "MultiPoint"):
        for p in getattr(geom, "geoms", [geom]):
            for d in offsets:
                for k in range(8 if d else 1):
                    a = k * math.pi / 4
                    out.append(_round(from_lambert2008(p.x + d * math.cos(a), p.y + d * math.sin(a))))
        return out
    lines = []
    if kind in ("Polygon", "MultiPolygon"):
        lines = [shapely.boundary(g) for g in getattr(geom, "geoms", [geom])]
    else:
        lines = list(getattr(geom, "geoms", [geom]))
    for line in lines:
        for part in getattr(line, "geoms", [line]):
            length = part.length
            n = max(1, int(length // step_m))
            for i in range(n + 1):
                d = min(length, i * step_m)
                p = part.interpolate(d)
                q = part.interpolate(min(length, d + 0.5)) if d + 0.5 <= length else part.interpolate(max(0.0, d - 0.5))
                dx, dy = q.x - p.x, q.y - p.y
                if d + 0.5 > length:
                    dx, dy = -dx, -dy
                norm = math.hypot(dx, dy) or 1.0
                nx, ny = -dy / norm, dx / norm  # unit normal
                for off in offsets:
                    for sign in ((1.0,) if off == 0 else (1.0, -1.0)):
                        out.append(_round(from_lambert2008(p.x + sign * off * nx, p.y + sign * off * ny)))
    return out


def _frange(start: float, stop: float, step: float) -> list[float]:
    n = int((stop - start) // step) + 1
    return [start + i * step for i in range(max(n, 0))]


def _round(point: tuple[float, float]) -> tuple[float, float]:
    return (round(point[0], 7), round(point[1], 7))
