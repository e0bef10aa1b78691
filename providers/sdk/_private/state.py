"""What a provider instance should know about links and config: decisions without I/O.

The runtime feeds everything it sees (links and configs from the store) into a
:class:`LinkState`; :meth:`LinkState.plan` compares that with what the provider
was last told and returns the callbacks to fire. Level-triggered: a missed or
repeated change only means the next plan catches up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trellis.interfaces.lattice_config import merge_configs
from trellis.interfaces.links import Link, parse_wit_interface

Identity = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class LinkPut:
    link: Link
    config: dict[str, str]


@dataclass(frozen=True)
class LinkDeleted:
    link: Link


@dataclass(frozen=True)
class ConfigUpdated:
    name: str
    values: dict[str, str]


Action = LinkPut | LinkDeleted | ConfigUpdated


@dataclass
class LinkState:
    """Observed links and configs for one provider id, and what its callbacks were last told."""

    provider_id: str
    #: the provider's own named configs (from its bootstrap)
    own_config_names: tuple[str, ...] = ()
    #: inline config from the bootstrap, under the named ones
    base_config: dict[str, str] = field(default_factory=dict)
    links: dict[Identity, Link] = field(default_factory=dict)
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    applied: dict[Identity, LinkPut] = field(default_factory=dict)
    #: config values last reported through on_config_updated (or seen at first sync)
    reported_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    #: bumped by every change: what the runtime derives from the state (the per-call link index,
    #: ``info``) is rebuilt when this moves, not on every call
    generation: int = 0

    # --- observations ------------------------------------------------------------------

    def concerns(self, link: Link) -> bool:
        return self.provider_id in (link.source_id, link.target)

    def link_put(self, link: Link) -> None:
        if self.concerns(link):
            self.links[link.identity] = link
            self.generation += 1

    def link_deleted(self, link: Link) -> None:
        self.links.pop(link.identity, None)
        self.generation += 1

    def config_put(self, name: str, values: Mapping[str, str]) -> None:
        self.configs[name] = dict(values)
        self.generation += 1

    def config_deleted(self, name: str) -> None:
        self.configs.pop(name, None)
        self.generation += 1

    def replace(self, links: Iterable[Link], configs: Mapping[str, Mapping[str, str]]) -> None:
        """A fresh snapshot (e.g. after the watch restarted) replaces everything observed."""
        self.links = {lk.identity: lk for lk in links if self.concerns(lk)}
        self.configs = {n: dict(v) for n, v in configs.items()}
        self.generation += 1

    def seed_applied(self, links: Iterable[Link], configs: Mapping[str, Mapping[str, str]]) -> list[Action]:
        """Links the provider starts with (its bootstrap): all are put, with the config given."""
        self.replace(links, configs)
        return self.plan(report_configs=False)

    # --- decisions ----------------------------------------------------------------------

    def resolved(self, link: Link) -> dict[str, str]:
        return merge_configs(self.configs[n] for n in link.config_for(self.provider_id) if n in self.configs)

    def own_config(self) -> dict[str, str]:
        named = [self.configs[n] for n in self.own_config_names if n in self.configs]
        return merge_configs([self.base_config, *named])

    def relevant_config_names(self) -> set[str]:
        names = set(self.own_config_names)
        for lk in self.links.values():
            names.update(lk.config_for(self.provider_id))
        return names

    def plan(self, *, report_configs: bool = True) -> list[Action]:
        """Callbacks to fire so the provider matches what was observed, in order; marks them applied.

        Deleted links first (free resources), then config updates, then links put or
        whose resolved config changed.
        """
        self.generation += 1
        actions: list[Action] = []
        for ident in sorted(set(self.applied) - set(self.links)):
            actions.append(LinkDeleted(self.applied.pop(ident).link))
        relevant = self.relevant_config_names()
        for name in sorted(relevant):
            values = self.configs.get(name, {})
            before = self.reported_configs.get(name)
            if before is None or not report_configs:
                # newly relevant (a new link names it: its on_link_put carries the values)
                self.reported_configs[name] = values
            elif before != values:
                self.reported_configs[name] = values
                actions.append(ConfigUpdated(name, values))
        for name in set(self.reported_configs) - relevant:
            del self.reported_configs[name]
        for ident in sorted(self.links):
            want = LinkPut(self.links[ident], self.resolved(self.links[ident]))
            if self.applied.get(ident) != want:
                self.applied[ident] = want
                actions.append(want)
        return actions


# --- the link a call came over ------------------------------------------------------------

WitKey = tuple[str, str, str]
_NO_CONFIG: Mapping[str, str] = MappingProxyType({})
_wit_keys: dict[str, WitKey | None] = {}
_WIT_KEYS_MAX = 1024


def wit_key(interface: str) -> WitKey | None:
    """``(namespace, package, interface)`` of ``ns:pkg/iface[@version]``, or None if it is not one.

    Parsed once per spelling (calls name a handful of interfaces, again and again).
    """
    try:
        return _wit_keys[interface]
    except KeyError:
        pass
    try:
        wi = parse_wit_interface(interface)
        key: WitKey | None = (wi.namespace, wi.package, wi.interface)
    except ValueError:
        key = None
    if len(_wit_keys) >= _WIT_KEYS_MAX:
        _wit_keys.clear()
    _wit_keys[interface] = key
    return key


class CallLinks:
    """Which applied link a call to the provider came over, found with one dict lookup.

    Indexed by (source, link name, namespace, package, interface) over the links with
    the provider as target, each with a read-only view of its config; rebuilt when the
    state's generation moves. A link's identity holds source, package, name and target,
    so at most one link matches a key.
    """

    def __init__(self, state: LinkState) -> None:
        self.state = state
        self._generation = -1
        self._index: dict[tuple[str, str, str, str, str], tuple[Link, Mapping[str, str]]] = {}

    def find(self, source: str, link_name: str, interface: str) -> tuple[Link | None, Mapping[str, str]]:
        """(link, its config) for the call, or (None, {}) when no applied link covers it."""
        if self._generation != self.state.generation:
            self._rebuild()
        key = wit_key(interface)
        if key is None:
            return None, _NO_CONFIG
        return self._index.get((source, link_name, *key), (None, _NO_CONFIG))

    def _rebuild(self) -> None:
        index: dict[tuple[str, str, str, str, str], tuple[Link, Mapping[str, str]]] = {}
        me = self.state.provider_id
        for a in self.state.applied.values():
            lk = a.link
            if lk.target != me:
                continue
            view = MappingProxyType(a.config)
            for iface in lk.interfaces:
                index.setdefault((lk.source_id, lk.name, lk.wit_namespace, lk.wit_package, iface), (lk, view))
        self._index = index
        self._generation = self.state.generation
