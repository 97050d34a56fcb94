"""Which adapters are installed (a folder with the three parts) and which are configured.

*Installed*: every folder ``adapters/<vendor>/`` holding ``client.py``, ``translate.py`` and
``config.py`` — adding a vendor means adding a folder; nothing here lists vendors by name. A
vendor whose protocol has two roles keeps the second in a sub-folder with the same three parts
(``adapters/open311/outbound/``: vendor ``open311-out``, the authority side of GeoReport v2
next to the ``open311`` channel); its ``VENDOR`` names it.

*Configured*: the region's ``adapters.yaml`` (default
``deploy/regions/zuid-west-vlaanderen/adapters.yaml``, or ``$MELDHUB_ADAPTERS``)::

    version: "2026.1"
    vendors:                 # per-vendor defaults for this region (optional)
      topdesk: {timeout_s: 10}
    adapters:                # one entry per instance; it overrides its vendor's defaults
      - {id: open311-zwvl, vendor: open311, indiener: https://…, clients: [...]}
      - {id: topdesk-kortrijk, vendor: topdesk, authority: kortrijk, base_url: https://…,
         username_env: …, password_env: …}

Defaults are deep-merged under each entry (maps merge key by key, lists and scalars are
replaced), then validated by the vendor's ``Config`` model. Secrets are never in the file:
entries name environment variables (``*_env``). A bad entry does not hide the others: it is
reported with the file and the entry (``meldhub adapters list|check``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import yaml

from adapters.base import AdapterConfig

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
DEFAULT_CONFIG = PROJECT_ROOT / "deploy" / "regions" / "zuid-west-vlaanderen" / "adapters.yaml"
CONFIG_ENV = "MELDHUB_ADAPTERS"
PARTS = ("client", "translate", "config")


class AdapterConfigError(ValueError):
    """The adapters file is missing, unreadable or not the expected shape."""


@dataclass(frozen=True)
class InstalledAdapter:
    vendor: str
    role: str
    path: Path
    has_service: bool

    @property
    def package(self) -> str:
        return "adapters." + ".".join(self.path.relative_to(PACKAGE_DIR).parts)

    def module(self, part: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{part}")

    @property
    def config_model(self) -> type[AdapterConfig]:
        return self.module("config").Config  # type: ignore[no-any-return]


@dataclass
class ConfiguredAdapter:
    id: str
    vendor: str
    installed: InstalledAdapter | None
    config: AdapterConfig | None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.config.enabled) if self.config else bool(self.raw.get("enabled", True))

    def missing_secrets(self) -> list[str]:
        if self.config is None:
            return []
        return [name for name in self.config.secret_envs() if not os.environ.get(name)]


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


@lru_cache(maxsize=1)
def _installed() -> tuple[InstalledAdapter, ...]:
    found = []
    folders = [c for c in sorted(PACKAGE_DIR.iterdir()) if _is_folder(c)]
    folders += [g for c in folders for g in sorted(c.iterdir()) if _is_folder(g)]  # one role per sub-folder
    for child in folders:
        if not all((child / f"{part}.py").is_file() for part in PARTS):
            continue
        package = "adapters." + ".".join(child.relative_to(PACKAGE_DIR).parts)
        config = importlib.import_module(f"{package}.config")
        vendor = getattr(config, "VENDOR", child.name)
        role = getattr(config, "ROLE", "?")
        found.append(InstalledAdapter(vendor, role, child, (child / "service.py").is_file()))
    return tuple(found)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(("_", "."))


def installed() -> dict[str, InstalledAdapter]:
    """Vendor → installed adapter (folders under ``adapters/`` with client, translate and config)."""
    return {a.vendor: a for a in _installed()}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(entry)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts[:5]) + (f" (+{len(parts) - 5} more)" if len(parts) > 5 else "")


def load(path: Path | str | None = None) -> list[ConfiguredAdapter]:
    """Every adapter entry of the file, validated (an invalid one carries ``error``)."""
    file = Path(path) if path else default_config_path()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise AdapterConfigError(f"{file}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise AdapterConfigError(f"{file}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("adapters", []), list):
        raise AdapterConfigError(f"{file}: expected a mapping with an 'adapters' list")
    defaults = data.get("vendors") or {}
    if not isinstance(defaults, dict):
        raise AdapterConfigError(f"{file}: 'vendors' must map vendor → defaults")
    known = installed()
    out: list[ConfiguredAdapter] = []
    seen: set[str] = set()
    for number, entry in enumerate(data.get("adapters") or [], start=1):
        if not isinstance(entry, dict):
            out.append(ConfiguredAdapter(f"#{number}", "?", None, None, f"{file}: entry {number} is not a mapping"))
            continue
        aid, vendor = str(entry.get("id", f"#{number}")), str(entry.get("vendor", "?"))
        where = f"{file}: adapter {aid!r}"
        if aid in seen:
            out.append(ConfiguredAdapter(aid, vendor, None, None, f"{where}: id used twice", entry))
            continue
        seen.add(aid)
        adapter = known.get(vendor)
        if adapter is None:
            out.append(ConfiguredAdapter(aid, vendor, None, None,
                                         f"{where}: vendor {vendor!r} is not installed (have: {', '.join(sorted(known))})", entry))
            continue
        merged = deep_merge(defaults.get(vendor) or {}, entry)
        try:
            config = adapter.config_model.model_validate(merged)
        except pydantic.ValidationError as e:
            out.append(ConfiguredAdapter(aid, vendor, adapter, None, f"{where}: {_describe(e)}", entry))
            continue
        out.append(ConfiguredAdapter(aid, vendor, adapter, config, None, entry))
    return out


def find(configured: list[ConfiguredAdapter], name: str) -> ConfiguredAdapter:
    """An adapter by id, or by vendor when exactly one enabled adapter of that vendor is configured."""
    for c in configured:
        if c.id == name:
            return c
    of_vendor = [c for c in configured if c.vendor == name and c.enabled]
    if len(of_vendor) == 1:
        return of_vendor[0]
    ids = ", ".join(c.id for c in configured) or "none"
    if len(of_vendor) > 1:
        raise LookupError(f"{len(of_vendor)} {name} adapters are configured; name one: {ids}")
    disabled = [c.id for c in configured if c.vendor == name and not c.enabled]
    if disabled:
        raise LookupError(f"the {name} adapters configured are disabled ({', '.join(disabled)}); enable one or name it by id")
    raise LookupError(f"no adapter {name!r} is configured (configured: {ids})")


def check(configured: list[ConfiguredAdapter], registry: Any | None = None) -> dict[str, list[str]]:
    """Problems per adapter id (an empty list = sound), plus ``"(life cycle)"`` for the table itself."""
    from hub.status import check_table

    problems: dict[str, list[str]] = {"(life cycle)": check_table()}
    owners: dict[str, str] = {}
    for c in configured:
        found: list[str] = []
        if c.error:
            found.append(c.error)
        elif c.installed is not None and c.config is not None:
            translate = c.installed.module("translate")
            found += translate.check(c.config)
            authority = getattr(c.config, "authority", None)
            if authority is not None:
                if registry is not None and authority not in {a.id for a in registry.authorities}:
                    found.append(f"authority {authority!r} is not in the registry")
                if c.enabled:
                    if authority in owners:
                        found.append(f"authority {authority!r} is already served by {owners[authority]!r}")
                    owners[authority] = c.id
        problems[c.id] = found
    return problems


def refusals(configured: list[ConfiguredAdapter]) -> dict[str, list[tuple[str, str]]]:
    """Per authority adapter: how its system says "not ours" and the reason sent with it (an empty
    list: it cannot refuse; its meldingen can only be re-routed by an admin)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for c in configured:
        if c.config is None or c.installed is None or c.installed.role != "authority":
            continue
        out[c.id] = c.installed.module("translate").status_mapping(c.config).refusal_rows()
    return out
