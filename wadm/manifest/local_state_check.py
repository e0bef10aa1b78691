"""`trellis app validate`'s warnings about providers whose data lives on their host.

A provider with local state (``properties.state: local``, or a built-in known to keep
files on its host such as ``builtin:sqldb-sqlite``, unless ``state: shared``) has its
data where it runs. wadm keeps it there (docs/wadm.md, "State stays where its data
is"), so the manifest should say which host that is, and must not spread it: every
copy would have different data.
"""

from __future__ import annotations

from trellis.interfaces.provider_state import STATE_LOCAL, STATE_SHARED, builtin_has_local_state

from .models import DAEMONSCALER, Component, Manifest, ScalerProperties
from .problems import Problem, error, warning


def _where(comp: Component) -> str:
    return f'component "{comp.name}"'


def _is_local(comp: Component) -> bool:
    state = comp.properties.state
    if state == STATE_SHARED or comp.properties.image is None:
        return False
    return state == STATE_LOCAL or builtin_has_local_state(comp.properties.image)


def check_local_state(m: Manifest) -> list[Problem]:
    """Warnings for local-state providers spread over several hosts or left without a host requirement."""
    out: list[Problem] = []
    for comp in m.components:
        if comp.properties.state is not None and not comp.is_capability:
            out.append(error(_where(comp), "'state' applies to capability providers only"))
            continue
        if not comp.is_capability or not _is_local(comp):
            continue
        why = (f"{comp.properties.image} keeps its data on the host it runs on"
               if comp.properties.state is None else "its data lives on the host it runs on (state: local)")
        trait = comp.scaler_trait
        props = trait.scaler if trait is not None else None
        if trait is not None and not isinstance(props, ScalerProperties):
            continue  # invalid scaler properties: reported elsewhere
        if trait is not None and trait.type == DAEMONSCALER:
            out.append(warning(_where(comp), f"{why}, and a daemonscaler runs a copy on every host, each with "
                                             "its own, different data; use a spreadscaler with instances: 1, "
                                             "or set 'state: shared' if the data is on shared storage"))
            continue
        instances = props.instances if props is not None else 1
        if instances > 1:
            out.append(warning(_where(comp), f"{why}, and {instances} instances run on {instances} hosts, each "
                                             "with its own, different data; use instances: 1, or set "
                                             "'state: shared' if the data is on shared storage"))
            continue
        spreads = props.spread if props is not None else ()
        if instances == 1 and not any(s.requirements for s in spreads):
            out.append(warning(_where(comp), f"{why}, with no host requirement: wadm keeps it on whichever host "
                                             "runs it first and waits for that host when it goes away; choose "
                                             "the host with a spread requirement (e.g. requirements: "
                                             "{hostname: db-1}), or set 'state: shared'"))
    return out
