"""The components a worker serves: one :class:`Served` each, kept in a :class:`Registry`.

A ``Served`` is everything the worker holds for one component: its ``Invoker``,
its RPC server and admission slots (its share of ``max_instances``), what its
calls may need (an import handler, the lattice), what the inline path learnt
about its functions, and the counters the ``stats`` command reports. The
registry is a dict by component id with the few questions the worker, its
co-located calls and its handoff ask of all of them together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trellis.host.runtime import Invoker, LoadedComponent
from trellis.host.runtime.imports import is_wasip2_interface
from trellis.interfaces.rpc_server import RpcServer

from .local import SERVED_HERE, LocalImports
from .slots import Slots

if TYPE_CHECKING:
    from trellis.samehost.local_rpc import LocalRpcDoor

    from .tally import CallTally


@dataclass
class Served:
    component_id: str
    digest: str
    invoker: Invoker
    server: RpcServer | None
    share: int
    #: the app it belongs to (its ``trellis.app`` annotation), "" for one started by hand
    app: str = ""
    local: LocalImports | None = None
    config_names: tuple[str, ...] = ()
    config: dict[str, str] | None = None
    non_retryable: tuple[str, ...] = ()
    #: the admission slots of ``server``, shared with co-located calls (None: no share here)
    slots: Slots | None = None
    #: imports other than WASI p2: calls need an import handler
    needs_handler: bool = True
    #: imports answered over the lattice (not logging/config): calls need a trace context
    lattice_imports: bool = True
    #: co-located calls to this component: run here, failed, sent remote for want of a slot / depth
    colocated: dict[str, int] = field(default_factory=lambda: {"served": 0, "failed": 0, "no_slot": 0,
                                                               "too_deep": 0})
    #: calls may run on the event loop (inline.py); functions seen to need a Wasm thread
    inline: bool = False
    needs_thread: set[str] = field(default_factory=set)
    #: function -> runs past the inline budget in a row (inline.OVERRUNS_TO_STICK)
    overruns: dict[str, int] = field(default_factory=dict)
    #: calls run inline, and cut short to run on a Wasm thread
    inline_stats: dict[str, int] = field(default_factory=lambda: {"served": 0, "rerouted": 0})
    #: its link calls by the way they went: run in this worker (colocated), answered by a provider of
    #: this host over the provider's socket (direct, local_rpc), over NATS (imports.py)
    link_calls: dict[str, int] = field(default_factory=lambda: {"colocated": 0, "direct": 0, "nats": 0})
    #: HTTP requests on connections handed to this worker (handoff.py): answered here, failed, sent over NATS
    handoff: dict[str, int] = field(default_factory=lambda: {"served": 0, "failed": 0, "remote": 0})

    @property
    def taking_calls(self) -> bool:
        """It has slots here (a share) and has not been closed: calls may run in this worker."""
        return self.slots is not None and not self.invoker.closed

    def stats(self, from_local_providers: int = 0) -> dict[str, Any]:
        """What the ``stats`` command reports for it."""
        server = self.server
        return {"share": self.share, **(server.stats if server else {}),
                "inflight": server.inflight if server else 0,
                "slots_in_use": self.slots.in_use if self.slots else 0, "colocated": dict(self.colocated),
                "inline": {**self.inline_stats, "enabled": self.inline, "needs_thread": sorted(self.needs_thread)},
                "handoff": dict(self.handoff), "provider_calls": {"direct": self.link_calls["direct"]},
                "parked": self.invoker.parked, "reloads": self.invoker.loaded.reloads,
                "reload_ms": round(self.invoker.loaded.reload_s * 1e3, 2),
                "last_reload_ms": round(self.invoker.loaded.last_reload_s * 1e3, 2),
                "link_calls": dict(self.link_calls), "from_local_providers": from_local_providers}


def import_needs(loaded: LoadedComponent) -> tuple[bool, bool]:
    """(needs an import handler, makes calls over the lattice), read once from the import table."""
    imports = loaded.imports
    names = [n for n in imports.interfaces if not is_wasip2_interface(n)]
    world_level = bool(imports.functions or imports.resources)
    lattice = world_level or any(n.split("@", 1)[0] not in SERVED_HERE for n in names)
    return bool(names) or world_level, lattice


class Registry:
    """The components this worker serves, by id."""

    def __init__(self) -> None:
        self._by_id: dict[str, Served] = {}

    def get(self, component_id: str) -> Served | None:
        return self._by_id.get(component_id)

    def __contains__(self, component_id: object) -> bool:
        return component_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def items(self) -> list[tuple[str, Served]]:
        """A copy: callers await between items, while loads and unloads change the registry."""
        return list(self._by_id.items())

    def values(self) -> list[Served]:
        return list(self._by_id.values())

    def put(self, served: Served) -> Served | None:
        """Serve ``served``; the version it replaces, if any (the caller retires it)."""
        old = self._by_id.get(served.component_id)
        self._by_id[served.component_id] = served
        return old

    def pop(self, component_id: str) -> Served | None:
        return self._by_id.pop(component_id, None)

    def clear(self) -> None:
        self._by_id.clear()

    def total_share(self) -> int:
        """Slots of every component here: calls that may run at once."""
        return sum(s.share for s in self._by_id.values())

    def taking_calls(self) -> list[str]:
        """Components with a share here, sorted: those a provider may hand connections for."""
        return sorted(cid for cid, s in self._by_id.items() if s.slots is not None)

    def reading_config(self, name: str) -> list[Served]:
        """Components that read named config ``name``."""
        return [s for s in self._by_id.values() if name in s.config_names]

    def stats(self, doors: dict[str, LocalRpcDoor] | None) -> dict[str, Any]:
        return {cid: s.stats(doors[cid].taken if doors and cid in doors else 0) for cid, s in self._by_id.items()}

    def usage(self, tally: CallTally) -> dict[str, Any]:
        """The tally's usage per component, with the instances each keeps now."""
        usage = tally.usage()
        for cid, served in self._by_id.items():
            usage.setdefault(cid, {"app": served.app})["instances"] = served.invoker.live_instances
        return usage
