"""What the scalers ask for: frozen, hashable command objects.

The scalers return lists of these; an executor (elsewhere) turns each into a
control-interface request (``trellis.interfaces.control``: note that `StartComponent` &
co. here are *decisions*, not the wire requests of the same name) or a store
write, and records `app` as the owner of links and configs it puts.

Every command carries `app` (the application it is for), `reason` (why, in words)
and `pass_id` (the reconcile pass that decided it). `reason` and `pass_id` are for
tracing and take no part in equality or hashing: two passes that decide the same
thing produce equal commands.

Apply a list in order: scalers put configs before anything that names them and
delete links before putting conflicting ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from trellis.interfaces.secrets import SecretRef

from .observed import FrozenMap, Reuse, frozen_str_map


@dataclass(frozen=True, kw_only=True)
class _Command:
    app: str = ""
    reason: str = field(default="", compare=False)
    pass_id: str = field(default="", compare=False)

    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        extra = f" ({self.reason})" if self.reason else ""
        return f"{self.describe()}{extra}"


@dataclass(frozen=True, kw_only=True)
class StartComponent(_Command):
    host_id: str
    component_id: str
    image: str
    max_instances: int
    annotations: Mapping[str, str] = field(default_factory=FrozenMap)
    config: tuple[str, ...] = ()
    reuse: Reuse = field(default_factory=Reuse)
    #: the manifest's ``secrets:`` of the component (references; wadm never sees a value)
    secrets: tuple[SecretRef, ...] = ()
    #: the manifest's ``timeout_ms`` (None: the host's default deadline)
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", frozen_str_map(self.annotations))
        object.__setattr__(self, "config", tuple(self.config))
        object.__setattr__(self, "secrets", tuple(self.secrets))

    def describe(self) -> str:
        reuse = "" if self.reuse.is_default else f", {self.reuse.describe()}"
        timeout = "" if self.timeout_ms is None else f", timeout {self.timeout_ms} ms"
        return (f"start component {self.component_id} ({self.image}) on {self.host_id} "
                f"with max {self.max_instances}{reuse}{timeout}")


@dataclass(frozen=True, kw_only=True)
class ScaleComponent(_Command):
    """Change a running component's instance cap and (re)set its annotations."""

    host_id: str
    component_id: str
    max_instances: int
    annotations: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", frozen_str_map(self.annotations))

    def describe(self) -> str:
        return f"scale component {self.component_id} on {self.host_id} to max {self.max_instances}"


@dataclass(frozen=True, kw_only=True)
class UpdateComponent(_Command):
    """Replace a running component's image, and with `reuse` its instance reuse, in place
    (same id, same config). `reuse` None leaves the reuse as it is."""

    host_id: str
    component_id: str
    image: str
    reuse: Reuse | None = None

    def describe(self) -> str:
        reuse = "" if self.reuse is None else f" ({self.reuse.describe()})"
        return f"update component {self.component_id} on {self.host_id} to {self.image}{reuse}"


@dataclass(frozen=True, kw_only=True)
class StopComponent(_Command):
    host_id: str
    component_id: str

    def describe(self) -> str:
        return f"stop component {self.component_id} on {self.host_id}"


@dataclass(frozen=True, kw_only=True)
class StartProvider(_Command):
    host_id: str
    provider_id: str
    image: str
    config: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=FrozenMap)
    secrets: tuple[SecretRef, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", frozen_str_map(self.annotations))
        object.__setattr__(self, "config", tuple(self.config))
        object.__setattr__(self, "secrets", tuple(self.secrets))

    def describe(self) -> str:
        return f"start provider {self.provider_id} ({self.image}) on {self.host_id}"


@dataclass(frozen=True, kw_only=True)
class StopProvider(_Command):
    host_id: str
    provider_id: str

    def describe(self) -> str:
        return f"stop provider {self.provider_id} on {self.host_id}"


@dataclass(frozen=True, kw_only=True)
class PutLink(_Command):
    source_id: str
    target: str
    namespace: str
    package: str
    interfaces: tuple[str, ...]
    name: str = "default"
    source_config: tuple[str, ...] = ()
    target_config: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "interfaces", tuple(sorted(set(self.interfaces))))
        object.__setattr__(self, "source_config", tuple(self.source_config))
        object.__setattr__(self, "target_config", tuple(self.target_config))

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.source_id, self.namespace, self.package, self.name, self.target)

    def describe(self) -> str:
        return (
            f"put link {self.source_id} -> {self.target} {self.namespace}:{self.package}/"
            f"{{{','.join(self.interfaces)}}} (name {self.name!r})"
        )


@dataclass(frozen=True, kw_only=True)
class DeleteLink(_Command):
    source_id: str
    target: str
    namespace: str
    package: str
    name: str = "default"

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.source_id, self.namespace, self.package, self.name, self.target)

    def describe(self) -> str:
        return f"delete link {self.source_id} -> {self.target} {self.namespace}:{self.package} (name {self.name!r})"


@dataclass(frozen=True, kw_only=True)
class PutConfig(_Command):
    name: str
    values: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", frozen_str_map(self.values))

    def describe(self) -> str:
        return f"put config {self.name} ({len(self.values)} key(s))"


@dataclass(frozen=True, kw_only=True)
class DeleteConfig(_Command):
    name: str

    def describe(self) -> str:
        return f"delete config {self.name}"


@dataclass(frozen=True, kw_only=True)
class PinState(_Command):
    """Record that the local data of provider `provider_id` (of `app`) lives on the host with state
    dir id `state_id` (wadm keeps the provider there)."""

    provider_id: str
    state_id: str
    host_id: str
    host_name: str = ""
    labels: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", frozen_str_map(self.labels))

    def describe(self) -> str:
        return f"pin the data of {self.provider_id} to host {self.host_name or self.host_id} ({self.host_id})"


Command = (
    StartComponent
    | ScaleComponent
    | UpdateComponent
    | StopComponent
    | StartProvider
    | StopProvider
    | PutLink
    | DeleteLink
    | PutConfig
    | DeleteConfig
    | PinState
)

__all__ = [
    "Command",
    "DeleteConfig",
    "DeleteLink",
    "PinState",
    "PutConfig",
    "PutLink",
    "ScaleComponent",
    "StartComponent",
    "StartProvider",
    "StopComponent",
    "StopProvider",
    "UpdateComponent",
]
