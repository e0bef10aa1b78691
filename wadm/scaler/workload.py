"""What a manifest asks to run, reduced to plain data the scalers work from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from trellis.interfaces.secrets import SecretRef

from ..manifest import (
    DAEMONSCALER,
    DEFAULT_SPREAD_NAME,
    Component,
    Manifest,
    ScalerProperties,
    Spread,
    config_name,
    generated_id,
)
from ..observed import Reuse

Kind = Literal["component", "capability"]
ScalerKind = Literal["spreadscaler", "daemonscaler"]


@dataclass(frozen=True)
class ReconcilePass:
    """The reconcile pass: which app (name and version) and the pass id for tracing."""

    app: str
    version: str
    pass_id: str = ""


@dataclass(frozen=True)
class Workload:
    """One component or provider this app places, and how."""

    name: str
    """The component's name in the manifest."""
    id: str
    kind: Kind
    image: str
    config: tuple[str, ...]
    """Lattice config names, in manifest order (inline ones as ``<app>-<name>``)."""
    scaler: ScalerKind
    instances: int
    spreads: tuple[Spread, ...]
    """As written; empty means one spread over all hosts."""
    reuse: Reuse = Reuse()
    """Instance reuse (components; ``properties.reuse``); the default is a fresh instance per call."""
    state: str | None = None
    """Providers: ``properties.state`` (``local``, ``shared``, or None: as the provider declares)."""
    secrets: tuple[SecretRef, ...] = ()
    """``properties.secrets``: what the part reads, by name, and where each is stored (never a value)."""
    timeout_ms: int | None = None
    """Components: ``properties.timeout_ms``, the per-call deadline (None: the host's default)."""

    @property
    def is_provider(self) -> bool:
        return self.kind == "capability"

    @property
    def effective_spreads(self) -> tuple[Spread, ...]:
        return self.spreads or (Spread(name=DEFAULT_SPREAD_NAME),)


def resolve_id(app: Manifest, comp: Component, shared_apps: Mapping[str, Manifest] | None = None) -> str:
    """The lattice id of `comp`; for a shared component, its id in the shared application
    (looked up in `shared_apps` when given, else computed as wadm does)."""
    if comp.image is not None or comp.shared is None:
        return app.component_id(comp)
    shared_app = (shared_apps or {}).get(comp.shared.name)
    if shared_app is not None:
        target = shared_app.component(comp.shared.component)
        if target is not None and target.image is not None:
            return shared_app.component_id(target)
    return generated_id(comp.shared.name, comp.shared.component)


def component_configs(app: Manifest, comp: Component) -> tuple[str, ...]:
    return tuple(config_name(app.name, c) for c in comp.properties.config)


def component_secrets(comp: Component) -> tuple[SecretRef, ...]:
    return tuple(SecretRef(name=s.name, key=s.properties.key, field=s.properties.field,
                           version=s.properties.version) for s in comp.properties.secrets)


def component_reuse(comp: Component) -> Reuse:
    props = comp.properties.reuse
    if props is None or comp.is_capability:
        return Reuse()
    return Reuse(props.max_invocations, props.max_idle_s)


def workload_of(app: Manifest, comp: Component) -> Workload | None:
    """How `comp` is placed, or None if this app does not place it: shared components
    (their own app does), and components with no scaler trait (wadm starts those
    never; a capability provider with no scaler trait runs on one host)."""
    if comp.image is None:
        return None
    trait = comp.scaler_trait
    props: ScalerProperties | None = trait.scaler if trait is not None else None
    if trait is not None and props is None:
        return None  # invalid scaler properties: validate() reports them
    if props is None:
        if not comp.is_capability:
            return None
        props, scaler = ScalerProperties(instances=1), "spreadscaler"
    else:
        scaler = DAEMONSCALER if trait is not None and trait.type == DAEMONSCALER else "spreadscaler"
    return Workload(
        name=comp.name,
        id=app.component_id(comp),
        kind=comp.kind,
        image=comp.image,
        config=component_configs(app, comp),
        scaler=scaler,  # type: ignore[arg-type]  # the manifest model validated the scaler's name
        instances=props.instances,
        spreads=props.spread,
        reuse=component_reuse(comp),
        state=comp.properties.state if comp.is_capability else None,
        secrets=component_secrets(comp),
        timeout_ms=None if comp.is_capability else comp.properties.timeout_ms,
    )
