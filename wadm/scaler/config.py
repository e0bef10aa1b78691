"""Configs: the app's inline configs put into the lattice; named ones waited for.

* An inline config (``name`` + ``properties``) is owned by the app and stored as
  ``<app>-<name>`` (sanitized, as wadm names them). It is put when missing or when
  its values differ. A config of that name put by *another* app is a conflict and
  is left alone; one with no known owner is taken over (the name is the app's).
* A named config (no ``properties``) must already exist: until it does, anything
  that names it waits, and the status says so.
* A config the app put that the manifest no longer has is deleted once nothing in
  the lattice (no link, no placement's ``trellis.config``) names it any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..commands import DeleteConfig, PutConfig
from ..manifest import ConfigProperty, Manifest, config_name
from ..observed import CONFIG_ANNOTATION, FrozenMap, Observed
from .workload import ReconcilePass


@dataclass
class ConfigOutcome:
    puts: list[PutConfig] = field(default_factory=list)
    deletes: list[DeleteConfig] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    """Config name → why anything naming it must wait (missing, or another app's)."""


def _all_config_entries(app: Manifest) -> Iterable[ConfigProperty]:
    for comp in app.components:
        yield from comp.properties.config
        for link in comp.links:
            yield from link.target.config
            yield from link.source_config


def desired_configs(app: Manifest) -> dict[str, FrozenMap[str, str]]:
    """Inline configs of the app by lattice name (first definition wins; validate() rejects clashes)."""
    found: dict[str, FrozenMap[str, str]] = {}
    for cfg in _all_config_entries(app):
        if cfg.properties is not None:
            found.setdefault(config_name(app.name, cfg), FrozenMap(cfg.properties))
    return found


def referenced_configs(app: Manifest) -> set[str]:
    """Names of configs the app names without defining them."""
    return {cfg.name for cfg in _all_config_entries(app) if cfg.properties is None}


def configs_in_use(observed: Observed) -> set[str]:
    """Config names something in the lattice still uses."""
    used: set[str] = set()
    for link in observed.links:
        used.update(link.source_config)
        used.update(link.target_config)
    for host in observed.hosts.values():
        tags = [c.annotations for c in host.components.values()] + [p.annotations for p in host.providers.values()]
        for notes in tags:
            raw = notes.get(CONFIG_ANNOTATION, "")
            used.update(x for x in raw.split(",") if x)
    return used


def plan_configs(app: Manifest | None, app_name: str, observed: Observed, ctx: ReconcilePass) -> ConfigOutcome:
    """Puts, deletes and blocked names for `app` (None: the app is being undeployed)."""
    out = ConfigOutcome()
    desired = desired_configs(app) if app is not None else {}
    for name, values in desired.items():
        have = observed.configs.get(name)
        if have is None:
            out.puts.append(PutConfig(name=name, values=values, app=app_name, reason="inline config is missing",
                                      pass_id=ctx.pass_id))
        elif have.values != values:
            if have.app not in (None, app_name):
                out.blocked[name] = f"config '{name}' belongs to application '{have.app}'"
            else:
                out.puts.append(PutConfig(name=name, values=values, app=app_name,
                                          reason="inline config values changed", pass_id=ctx.pass_id))
    if app is not None:
        for name in sorted(referenced_configs(app)):
            if name not in observed.configs and name not in desired:
                out.blocked[name] = f"waiting for config '{name}', which this application does not define: create it"
    in_use = configs_in_use(observed)
    for name in sorted(observed.configs):
        cfg = observed.configs[name]
        if cfg.app == app_name and name not in desired and name not in in_use:
            out.deletes.append(DeleteConfig(name=name, app=app_name, reason="no longer in the manifest or in use",
                                            pass_id=ctx.pass_id))
    return out
