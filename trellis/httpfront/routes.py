"""Routing: which component answers a request, and which listeners should exist.

Decisions without I/O. The front feeds in every link it serves (with its parsed
config) and gets back the listeners it should have, each with its route table,
plus the links it must refuse and why. Level-triggered: the same input always
gives the same plan, so a reconcile after a missed change catches up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import RouteConfig

#: (source, namespace, package, link name, target): a link's identity
LinkKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """One link as served: requests matching ``config`` go to ``target`` over link ``link_name``."""

    key: LinkKey
    target: str
    link_name: str
    config: RouteConfig

    def describe(self) -> str:
        where = (self.config.host or "*") + self.config.path
        return f"{where} -> {self.target} (link {self.link_name!r})"

    def to_wire(self) -> dict[str, Any]:
        """Plain values, for the worker a connection is handed to (:mod:`.handoff`)."""
        return {"key": list(self.key), "target": self.target, "link_name": self.link_name,
                "config": {**dataclasses.asdict(self.config), "address": list(self.config.address)}}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Route:
        config = {**m["config"], "address": tuple(m["config"]["address"])}
        return cls(tuple(m["key"]), m["target"], m["link_name"], RouteConfig(**config))


class RouteTable:
    """The routes of one listener; :meth:`match` picks the route for a Host and path.

    A route naming the host beats one for any host; among those, the longest
    path prefix wins. An exact host beats a ``*.`` pattern.
    """

    __slots__ = ("routes", "targets", "_only", "_ordered")

    def __init__(self, routes: Iterable[Route]) -> None:
        # most specific first: exact host, wildcard host, any host; then longer paths
        self.routes: tuple[Route, ...] = tuple(sorted(routes, key=_specificity))
        #: the components this table routes to
        self.targets: frozenset[str] = frozenset(r.target for r in self.routes)
        only = self.routes[0] if len(self.routes) == 1 else None
        # the common case: one link on its own port, no host or path: no matching at all
        self._only = only if only is not None and only.config.host is None and only.config.path == "/" else None
        self._ordered = tuple((r, r.config.host, r.config.path) for r in self.routes)

    def match(self, host: bytes | None, path: str) -> Route | None:
        """``host``: the Host header as received (port and case are ignored); ``path`` without the query."""
        if self._only is not None:
            return self._only
        name = normalize_host(host)
        for route, want_host, prefix in self._ordered:
            if want_host is not None and not host_matches(want_host, name):
                continue
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return route
        return None

    def __len__(self) -> int:
        return len(self.routes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RouteTable) and self.routes == other.routes

    def __hash__(self) -> int:
        return hash(self.routes)


def _specificity(route: Route) -> tuple[int, int, str, LinkKey]:
    host = route.config.host
    rank = 2 if host is None else 1 if host.startswith("*.") else 0
    return (rank, -len(route.config.path), host or "", route.key)


def normalize_host(host: bytes | None) -> str:
    """``Example.COM:8080`` → ``example.com``; ``[::1]:80`` → ``::1``."""
    if not host:
        return ""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if ":" in text else text


def host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True)
class Plan:
    """What the front should look like: listeners by address, and the links it refuses."""

    listeners: dict[tuple[str, int], RouteTable] = field(default_factory=dict)
    #: link key -> why it is not served
    refused: dict[LinkKey, str] = field(default_factory=dict)


def plan(routes: Iterable[Route], invalid: dict[LinkKey, str] | None = None) -> Plan:
    """Group routes by address; of two routes with the same address, host and path, the one
    whose link sorts first is served and the other refused (the same choice every time)."""
    refused = dict(invalid or {})
    by_address: dict[tuple[str, int], dict[tuple[str | None, str], Route]] = {}
    for route in sorted(routes, key=lambda r: r.key):
        slot = (route.config.host, route.config.path)
        taken = by_address.setdefault(route.config.address, {})
        if slot in taken:
            other = taken[slot]
            refused[route.key] = (f"{route.config.address_text} {(slot[0] or '*')}{slot[1]} is already served "
                                  f"by the link to {other.target} (link {other.link_name!r}); give one of them "
                                  "another address, host or path")
            continue
        taken[slot] = route
    listeners = {addr: RouteTable(slots.values()) for addr, slots in by_address.items()}
    return Plan(listeners=listeners, refused=refused)
