"""The controller's picture of the lattice, fed by events and store changes. Pure: no I/O.

`LatticeView` folds host events (``host_started``, ``host_heartbeat``,
``host_stopped``, ``labels_changed``, component and provider outcomes), link and
config changes and the ownership records into plain state, and hands out
immutable `Observed` snapshots for the scalers.

* A heartbeat (or ``host_started``, or a ping reply) replaces everything known
  about that host: it is the host's own inventory, so a missed event costs nothing.
* Outcome events (``component_scaled``, ``provider_started``, …) are applied
  at once, so the next pass sees the result of the previous one even before the
  next heartbeat.
* A host not heard from for ``expiry_intervals`` of its own heartbeat intervals
  is dropped by `expire`.

Every method that changes something returns whether the change matters to
placement (hosts, labels, what runs, links, configs, owners): the controller
uses that to trigger a pass at once instead of waiting for the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from trellis.interfaces.control import Capacity, ComponentDescription, HostBeat, HostInfo, ProviderDescription
from trellis.interfaces.events import Event, EventType
from trellis.interfaces.links import Link

from ..observed import (
    APP_ANNOTATION,
    HostCapacity,
    Observed,
    ObservedConfig,
    ObservedHost,
    ObservedLink,
    Reuse,
    RunningComponent,
    RunningProvider,
    StatePin,
)

log = logging.getLogger(__name__)

LinkIdentity = tuple[str, str, str, str, str]
"""(source, namespace, package, link name, target)."""


@dataclass
class HostEntry:
    id: str
    labels: dict[str, str]
    capacity: HostCapacity
    components: dict[str, RunningComponent]
    providers: dict[str, RunningProvider]
    heartbeat_interval_s: float
    last_seen: float
    name: str = ""
    state_id: str = ""
    inventory: str = ""
    """The digest of the host's inventory this entry holds (``HostInfo.inventory``)."""

    def placement_state(self) -> tuple[Any, ...]:
        """What placement depends on (copies: the entry's dicts change in place)."""
        return (dict(self.labels), dict(self.components), dict(self.providers))


def _known(model: type[BaseModel], data: Any) -> Any:
    """`data` without keys `model` does not know (a newer host may send more)."""
    if not isinstance(data, Mapping):
        return data
    return {k: v for k, v in data.items() if k in model.model_fields}


def host_info(data: Any) -> HostInfo | None:
    """A host's self-description from an event, tolerating fields added by newer hosts."""
    try:
        return HostInfo.model_validate(data)
    except ValidationError:
        pass
    if not isinstance(data, Mapping):
        return None
    try:
        lenient = dict(_known(HostInfo, data))
        lenient["capacity"] = _known(Capacity, lenient.get("capacity"))
        lenient["components"] = [_known(ComponentDescription, c) for c in lenient.get("components") or []]
        lenient["providers"] = [_known(ProviderDescription, p) for p in lenient.get("providers") or []]
        return HostInfo.model_validate(lenient)
    except ValidationError:
        return None


def _reuse(data: Any) -> Reuse | None:
    """The reuse a host reports for a component (a `ReuseDescription` or its JSON); None if it
    reports none (an older host) or something unreadable."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        return None
    try:
        return Reuse.of(data)
    except (TypeError, ValueError):
        return None


def _entry_from_info(info: HostInfo, now: float) -> HostEntry:
    return HostEntry(
        id=info.id,
        labels=dict(info.labels),
        capacity=HostCapacity(cpus=info.capacity.cpus, memory_available_bytes=info.capacity.memory_available_bytes,
                              load_1m=info.capacity.load_1m),
        components={c.id: RunningComponent(c.image, c.max_instances, c.annotations, _reuse(c.reuse))
                    for c in info.components},
        providers={p.id: RunningProvider(p.image, p.annotations, p.status, p.health_message, p.local_state)
                   for p in info.providers},
        heartbeat_interval_s=info.heartbeat_interval_s,
        last_seen=now,
        name=info.name,
        state_id=info.state_id,
        inventory=info.inventory,
    )


@dataclass
class LatticeView:
    expiry_intervals: float = 3.0
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    links: dict[LinkIdentity, Link] = field(default_factory=dict)
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    link_owners: dict[LinkIdentity, str] = field(default_factory=dict)
    config_owners: dict[str, str] = field(default_factory=dict)
    pins: dict[tuple[str, str], StatePin] = field(default_factory=dict)
    """(app, provider id) → where its local data lives (wadm's records)."""
    stale: set[str] = field(default_factory=set)
    """Hosts whose light heartbeat named an inventory this view does not hold: ask them for it."""
    _snapshot: Observed | None = field(default=None, repr=False)

    # --- hosts -----------------------------------------------------------------------

    def host_seen(self, info: HostInfo, now: float) -> bool:
        """A host described itself (heartbeat, started, ping reply): replace what we knew."""
        new = _entry_from_info(info, now)
        old = self.hosts.get(info.id)
        new.providers = {pid: p.since(old.providers.get(pid) if old else None, now)
                         for pid, p in new.providers.items()}
        self.hosts[info.id] = new
        self.stale.discard(info.id)
        self._snapshot = None
        if old is None:
            log.info("host %s joined (labels %s)", info.id, _labels(new.labels))
            return True
        return old.placement_state() != new.placement_state()

    def remove_host(self, host_id: str, why: str) -> bool:
        self.stale.discard(host_id)
        if self.hosts.pop(host_id, None) is None:
            return False
        self._snapshot = None
        log.info("host %s is gone: %s", host_id, why)
        return True

    def expire(self, now: float) -> list[str]:
        """Drop hosts silent for too long; return their ids."""
        gone = [h.id for h in self.hosts.values()
                if now - h.last_seen > self.expiry_intervals * h.heartbeat_interval_s]
        for host_id in gone:
            entry = self.hosts[host_id]
            self.remove_host(host_id, f"no heartbeat for {now - entry.last_seen:.1f}s "
                                      f"({self.expiry_intervals:g} x {entry.heartbeat_interval_s:g}s)")
        return gone

    def next_expiry(self) -> float | None:
        """When the first host will be dropped unless it is heard from again (None: no host)."""
        return min((h.last_seen + self.expiry_intervals * h.heartbeat_interval_s for h in self.hosts.values()),
                   default=None)

    def host_beat(self, data: Mapping[str, Any], now: float) -> bool:
        """A light heartbeat (`HostBeat`): the host is alive, with this capacity; if the inventory it
        names is not the one held here (a whole heartbeat was missed, or the host is new to us), the
        host goes into `stale`, to be asked. Never a change by itself: the inventory's answer is."""
        host_id = str(data.get("id") or "")
        entry = self.hosts.get(host_id)
        if entry is None or entry.inventory != data.get("inventory"):
            if host_id:
                self.stale.add(host_id)
            if entry is None:
                return False
        entry.last_seen = now
        cap = data.get("capacity")
        if isinstance(cap, Mapping):
            new = HostCapacity(cpus=int(cap.get("cpus") or 0),
                               memory_available_bytes=int(cap.get("memory_available_bytes") or 0),
                               load_1m=float(cap.get("load_1m") or 0.0))
            if new != entry.capacity:
                entry.capacity = new
                self._snapshot = None
        return False

    def apply_event(self, ev: Event, now: float) -> bool:
        """Fold one lattice event in; True if it changed what placement depends on."""
        t, data = ev.type, ev.data
        if t == EventType.HOST_HEARTBEAT and HostBeat.is_light(data):
            return self.host_beat(data, now)
        if t in (EventType.HOST_STARTED, EventType.HOST_HEARTBEAT):
            info = host_info(data)
            if info is None:
                log.warning("ignoring unreadable %s from %s", t, ev.source)
                return False
            return self.host_seen(info, now)
        if t == EventType.HOST_STOPPED:
            return self.remove_host(str(data.get("host_id") or ev.source), "host stopped")
        host = self.hosts.get(str(data.get("host_id") or ""))
        if host is None:
            return False  # a host we have not heard describe itself: its heartbeat will tell
        host.last_seen = now
        before = host.placement_state()
        if t == EventType.LABELS_CHANGED and isinstance(data.get("labels"), Mapping):
            host.labels = {str(k): str(v) for k, v in data["labels"].items()}
        elif t == EventType.COMPONENT_SCALED:
            cid = str(data.get("component_id", ""))
            if int(data.get("max_instances") or 0) <= 0:
                host.components.pop(cid, None)
            else:
                host.components[cid] = RunningComponent(
                    str(data.get("image", "")), int(data["max_instances"]), dict(data.get("annotations") or {}),
                    _reuse(data.get("reuse")))
        elif t == EventType.PROVIDER_STARTED:
            pid = str(data.get("provider_id", ""))
            host.providers[pid] = RunningProvider(str(data.get("image", "")), dict(data.get("annotations") or {}),
                                                  local_state=bool(data.get("local_state")))
        elif t in (EventType.HEALTH_CHECK_FAILED, EventType.HEALTH_CHECK_PASSED) or (
                t == EventType.PROVIDER_STOPPED and data.get("reason") != "stopped"):
            pid = str(data.get("provider_id", ""))
            prov = host.providers.get(pid)
            if prov is None:
                return False
            if t == EventType.HEALTH_CHECK_PASSED:
                status, message = "running", ""
            elif t == EventType.HEALTH_CHECK_FAILED:
                status, message = "unhealthy", str(data.get("message") or "")
            else:
                status, message = "restarting", str(data.get("reason") or "")
            host.providers[pid] = RunningProvider(prov.image, prov.annotations, status, message,
                                                  bool(data.get("local_state", prov.local_state))).since(prov, now)
        elif t == EventType.PROVIDER_START_FAILED or (
                t == EventType.PROVIDER_STOPPED and data.get("reason") == "stopped"):
            host.providers.pop(str(data.get("provider_id", "")), None)
        else:
            return False
        changed = before != host.placement_state()
        if changed:
            self._snapshot = None
        return changed

    # --- links, configs, owners ---------------------------------------------------------

    def put_link(self, link: Link) -> bool:
        if self.links.get(link.identity) == link:
            return False
        self.links[link.identity] = link
        self._snapshot = None
        return True

    def delete_link(self, identity: LinkIdentity) -> bool:
        if self.links.pop(identity, None) is None:
            return False
        self._snapshot = None
        return True

    def put_config(self, name: str, values: Mapping[str, str]) -> bool:
        if self.configs.get(name) == dict(values):
            return False
        self.configs[name] = dict(values)
        self._snapshot = None
        return True

    def delete_config(self, name: str) -> bool:
        if self.configs.pop(name, None) is None:
            return False
        self._snapshot = None
        return True

    def set_link_owner(self, identity: LinkIdentity, app: str | None) -> bool:
        return self._set_owner(self.link_owners, identity, app)

    def set_config_owner(self, name: str, app: str | None) -> bool:
        return self._set_owner(self.config_owners, name, app)

    def set_pin(self, key: tuple[str, str], pin: StatePin | None) -> bool:
        if self.pins.get(key) == pin:
            return False
        if pin is None:
            self.pins.pop(key, None)
        else:
            self.pins[key] = pin
        self._snapshot = None
        return True

    def _set_owner(self, owners: dict[Any, str], key: Any, app: str | None) -> bool:
        if owners.get(key) == app:
            return False
        if app is None:
            owners.pop(key, None)
        else:
            owners[key] = app
        self._snapshot = None
        return True

    # --- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> Observed:
        """The lattice as of now, immutable (cached until something changes)."""
        if self._snapshot is None:
            self._snapshot = Observed(
                hosts={
                    h.id: ObservedHost(id=h.id, labels=h.labels, capacity=h.capacity, components=h.components,
                                       providers=h.providers, name=h.name, state_id=h.state_id)
                    for h in self.hosts.values()
                },
                links=tuple(
                    ObservedLink(source_id=lk.source_id, target=lk.target, namespace=lk.wit_namespace,
                                 package=lk.wit_package, interfaces=tuple(lk.interfaces), name=lk.name,
                                 source_config=tuple(lk.source_config), target_config=tuple(lk.target_config),
                                 app=self.link_owners.get(ident))
                    for ident, lk in sorted(self.links.items())
                ),
                configs={name: ObservedConfig(values=values, app=self.config_owners.get(name))
                         for name, values in sorted(self.configs.items())},
                pins=dict(sorted(self.pins.items())),
            )
        return self._snapshot

    def app_names(self) -> set[str]:
        """Every application that owns something in the lattice (placements, links, configs)."""
        names: set[str] = set()
        for h in self.hosts.values():
            for comp in h.components.values():
                if comp.annotations.get(APP_ANNOTATION):
                    names.add(comp.annotations[APP_ANNOTATION])
            for prov in h.providers.values():
                if prov.annotations.get(APP_ANNOTATION):
                    names.add(prov.annotations[APP_ANNOTATION])
        names.update(app for ident, app in self.link_owners.items() if ident in self.links)
        names.update(app for name, app in self.config_owners.items() if name in self.configs)
        return names


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
