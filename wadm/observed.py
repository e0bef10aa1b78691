"""The lattice as the wadm controller sees it: plain, immutable data.

An observer (not in this module) builds an `Observed` from host heartbeats, the
link store and the config store; the scalers read it and never do I/O. Everything
here is frozen, so a snapshot cannot change under a reconcile pass.

Ownership. The controller tags every placement it makes with annotations:

* ``trellis.app``: the application name (wadm: ``wasmcloud.dev/managed-by`` + ``wasmcloud.dev/appspec``)
* ``trellis.app.version``: the manifest version that placed it
* ``trellis.spread``: the spread the placement belongs to (wadm: ``wasmcloud.dev/spread_name``)
* ``trellis.config``: the config names it was started with, comma separated
* ``trellis.secrets``: the secrets it was granted, as ``name=key`` references (never values);
  only on parts that have secrets
* ``trellis.pass``: the id of the reconcile pass that placed or last scaled it (tracing only)

A placement without ``trellis.app``, or with another app's name, is never touched.
Links and configs carry no annotations in the lattice, so the controller records
who put them (`PutLink.app`, `PutConfig.app`) and the observer reports it in
`ObservedLink.app` / `ObservedConfig.app` (``None``: nobody we know of).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Generic, TypeVar

from trellis.interfaces.annotations import (
    APP_ANNOTATION,
    APP_VERSION_ANNOTATION,
    CONFIG_ANNOTATION,
    PASS_ANNOTATION,
    SECRETS_ANNOTATION,
    SPREAD_ANNOTATION,
    TIMEOUT_ANNOTATION,
)
from trellis.interfaces.links import DEFAULT_LINK_NAME

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable, hashable mapping (keeps insertion order; equal to a dict with the same items)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._data: dict[K, V] = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        """A copy with `key` set to `value`."""
        return FrozenMap({**self._data, key: value})

    def without(self, key: K) -> FrozenMap[K, V]:
        """A copy without `key`."""
        return FrozenMap({k: v for k, v in self._data.items() if k != key})


def frozen_str_map(data: Mapping[str, str] | None) -> FrozenMap[str, str]:
    if isinstance(data, FrozenMap):
        return data
    return FrozenMap(data or {})


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class HostCapacity:
    """What a host advertises about its room for more work."""

    cpus: int = 0
    memory_available_bytes: int = 0
    load_1m: float = 0.0


@dataclass(frozen=True)
class Reuse:
    """A component's instance reuse: how many calls one instance serves and how long an
    idle one is kept (seconds; None: until it has served them). The default, one call
    per instance, is a fresh instance per call.

    wadm's value of it. The same two fields cross every layer, each in its own type: the
    manifest's ``ReuseProperties`` (strict), the control interface's ``ReuseSpec`` (a request:
    unknown fields refused) and ``ReuseDescription`` (a host's reply: unknown fields ignored),
    and the runtime's ``ReusePolicy`` (with ``max_warm``). A new field goes into all five."""

    max_invocations: int = 1
    max_idle_s: float | None = None

    def __post_init__(self) -> None:
        _set(self, "max_invocations", int(self.max_invocations))
        if self.max_idle_s is not None:
            _set(self, "max_idle_s", float(self.max_idle_s))

    @property
    def is_default(self) -> bool:
        return self == Reuse()

    def describe(self) -> str:
        if self.max_invocations == 1:
            text = "a fresh instance per call"
        else:
            text = f"reuse up to {self.max_invocations} calls per instance"
        if self.max_idle_s is not None:
            text += f", idle {self.max_idle_s:g}s"
        return text

    @classmethod
    def of(cls, data: Reuse | Mapping[str, Any] | None) -> Reuse | None:
        """`data` (a `Reuse`, or a mapping with its fields and maybe more) as a `Reuse`; None stays None."""
        if data is None or isinstance(data, Reuse):
            return data
        idle = data.get("max_idle_s")
        return cls(int(data.get("max_invocations") or 1), None if idle is None else float(idle))


@dataclass(frozen=True)
class RunningComponent:
    """A component running on a host: its image, instance cap, annotations and instance
    reuse (None: the host does not report it, as hosts before reuse reporting did not)."""

    image: str
    max_instances: int
    annotations: Mapping[str, str] = field(default_factory=FrozenMap)
    reuse: Reuse | None = None

    def __post_init__(self) -> None:
        _set(self, "annotations", frozen_str_map(self.annotations))
        _set(self, "reuse", Reuse.of(self.reuse))


PROVIDER_HEALTHY = "running"
PROVIDER_PENDING = frozenset({"starting", "stopping"})
"""Provider statuses (as its host reports them) that are on their way, not a problem yet."""


@dataclass(frozen=True)
class RunningProvider:
    """A capability provider running on a host, and how its host says it is: `status` is one of
    starting | running (healthy) | unhealthy | restarting | stopping | failed; `message` is
    why it is not healthy (its last health answer)."""

    image: str
    annotations: Mapping[str, str] = field(default_factory=FrozenMap)
    status: str = PROVIDER_HEALTHY
    message: str = ""
    local_state: bool = False
    """The provider declared that its data lives on this host."""
    problem_since: float | None = None
    """Since when (the observer's clock, seconds) it has had the `problem` it has now; None: no problem."""

    def __post_init__(self) -> None:
        _set(self, "annotations", frozen_str_map(self.annotations))

    def since(self, before: RunningProvider | None, now: float) -> RunningProvider:
        """This state, timed: a problem keeps the time it began (from `before`, the same provider as
        last seen), a new problem begins `now`, no problem has no time."""
        if self.problem() is None:
            when = None
        elif before is not None and before.problem() is not None and before.problem_since is not None:
            when = before.problem_since
        else:
            when = now
        return self if when == self.problem_since else replace(self, problem_since=when)

    @property
    def healthy(self) -> bool:
        return self.status == PROVIDER_HEALTHY

    def problem(self) -> str | None:
        """Why it does not run as it should, in words; None when healthy or merely on its way
        (starting with nothing wrong said yet)."""
        if self.healthy:
            return None
        if self.status in PROVIDER_PENDING and not self.message:
            return None
        what = {"starting": "not healthy yet", "restarting": "restarting after a crash",
                "unhealthy": "unhealthy", "failed": "failed"}.get(self.status, self.status)
        return f"{what}: {self.message}" if self.message else what


@dataclass(frozen=True)
class StatePin:
    """Where the data of a provider with local state lives: the host (by its state dir's id)
    that ran it. wadm keeps the provider there instead of starting it empty elsewhere."""

    state_id: str
    host_id: str
    host_name: str = ""
    labels: Mapping[str, str] = field(default_factory=FrozenMap)
    """The labels that host had, to tell whether a manifest's spread still allows it while it is gone."""

    def __post_init__(self) -> None:
        _set(self, "labels", frozen_str_map(self.labels))

    def describe(self) -> str:
        return f"{self.host_name} ({self.host_id})" if self.host_name else self.host_id


def _component(value: RunningComponent | Mapping[str, Any]) -> RunningComponent:
    return value if isinstance(value, RunningComponent) else RunningComponent(**value)


def _provider(value: RunningProvider | Mapping[str, Any]) -> RunningProvider:
    return value if isinstance(value, RunningProvider) else RunningProvider(**value)


@dataclass(frozen=True)
class ObservedHost:
    """One live host. Plain dicts are accepted for every field and frozen."""

    id: str
    labels: Mapping[str, str] = field(default_factory=FrozenMap)
    capacity: HostCapacity = field(default_factory=HostCapacity)
    components: Mapping[str, RunningComponent] = field(default_factory=FrozenMap)
    providers: Mapping[str, RunningProvider] = field(default_factory=FrozenMap)
    name: str = ""
    """Its friendly name (for messages)."""
    state_id: str = ""
    """The id of its state dir (the same across restarts on that dir); "" from older hosts."""

    def __post_init__(self) -> None:
        _set(self, "labels", frozen_str_map(self.labels))
        if isinstance(self.capacity, Mapping):
            _set(self, "capacity", HostCapacity(**self.capacity))
        _set(self, "components", FrozenMap({k: _component(v) for k, v in self.components.items()}))
        _set(self, "providers", FrozenMap({k: _provider(v) for k, v in self.providers.items()}))

    def matches(self, requirements: Mapping[str, str]) -> bool:
        """Whether the host has every label in `requirements` with that value."""
        return all(self.labels.get(k) == v for k, v in requirements.items())

    @property
    def data_key(self) -> str:
        """What identifies the data it holds: its state dir's id (its host id for older hosts)."""
        return self.state_id or self.id

    def describe(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


@dataclass(frozen=True)
class ObservedLink:
    """A link in the lattice (wasmCloud 1.x shape), and which app put it (None: unknown)."""

    source_id: str
    target: str
    namespace: str
    package: str
    interfaces: tuple[str, ...]
    name: str = DEFAULT_LINK_NAME
    source_config: tuple[str, ...] = ()
    target_config: tuple[str, ...] = ()
    app: str | None = None

    def __post_init__(self) -> None:
        _set(self, "interfaces", tuple(sorted(set(self.interfaces))))
        _set(self, "source_config", tuple(self.source_config))
        _set(self, "target_config", tuple(self.target_config))

    @property
    def group(self) -> tuple[str, str, str, str]:
        """(source, namespace, package, name)."""
        return (self.source_id, self.namespace, self.package, self.name)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """(source, namespace, package, name, target): putting a link with the same identity replaces it."""
        return (*self.group, self.target)


@dataclass(frozen=True)
class ObservedConfig:
    """A named config in the lattice, and which app put it (None: unknown)."""

    values: Mapping[str, str] = field(default_factory=FrozenMap)
    app: str | None = None

    def __post_init__(self) -> None:
        _set(self, "values", frozen_str_map(self.values))


def _config(value: ObservedConfig | Mapping[str, str]) -> ObservedConfig:
    return value if isinstance(value, ObservedConfig) else ObservedConfig(values=value)


@dataclass(frozen=True)
class Observed:
    """A snapshot of the lattice: live hosts (by id), links and configs (by name).

    `hosts` may be given as a list of `ObservedHost`; `configs` values may be plain
    ``{key: value}`` dicts (owner unknown).
    """

    hosts: Mapping[str, ObservedHost] = field(default_factory=FrozenMap)
    links: tuple[ObservedLink, ...] = ()
    configs: Mapping[str, ObservedConfig] = field(default_factory=FrozenMap)
    pins: Mapping[tuple[str, str], StatePin] = field(default_factory=FrozenMap)
    """(app, provider id) → where that provider's local data lives."""

    def __post_init__(self) -> None:
        hosts = self.hosts
        if not isinstance(hosts, Mapping):
            hosts = {h.id: h for h in hosts}
        _set(self, "hosts", FrozenMap(hosts))
        _set(self, "links", tuple(self.links))
        _set(self, "configs", FrozenMap({k: _config(v) for k, v in self.configs.items()}))
        _set(self, "pins", FrozenMap(self.pins))

    @cached_property
    def sorted_hosts(self) -> tuple[ObservedHost, ...]:
        """Hosts in host-id order (computed once per snapshot)."""
        return tuple(self.hosts[k] for k in sorted(self.hosts))

    def managed_by(self, app: str) -> bool:
        """Whether anything in the lattice belongs to application `app`."""
        for host in self.hosts.values():
            for comp in host.components.values():
                if comp.annotations.get(APP_ANNOTATION) == app:
                    return True
            for prov in host.providers.values():
                if prov.annotations.get(APP_ANNOTATION) == app:
                    return True
        return any(link.app == app for link in self.links) or any(
            cfg.app == app for cfg in self.configs.values()
        )


__all__ = [
    "APP_ANNOTATION",
    "CONFIG_ANNOTATION",
    "SECRETS_ANNOTATION",
    "DEFAULT_LINK_NAME",
    "PASS_ANNOTATION",
    "SPREAD_ANNOTATION",
    "TIMEOUT_ANNOTATION",
    "APP_VERSION_ANNOTATION",
    "FrozenMap",
    "HostCapacity",
    "Observed",
    "ObservedConfig",
    "ObservedHost",
    "ObservedLink",
    "Reuse",
    "RunningComponent",
    "RunningProvider",
    "StatePin",
]
