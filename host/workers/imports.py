"""Satisfying a component's imports: links name the target, RPC carries the call.

Runs the network part on the worker's event loop while the Wasm thread waits:
host functions are synchronous, so the import handler submits the call to the
loop and blocks on its result, bounded by the invocation's own deadline. A call
to a component this worker serves itself runs nested on the calling thread
instead (``colocated.py``), when the target has a free slot here; a call to a
provider of this host is written to the provider's socket by the Wasm thread
itself, which blocks reading the reply (``trellis/samehost/local_rpc.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trellis.host.runtime import ImportFailed, MissingLink
from trellis.interfaces.envelope import EnvelopeError, Invocation, new_id
from trellis.interfaces.policy import PolicyClient, PolicyDecision, changed_subject, link_body
from trellis.interfaces.resources import unversioned, wire_function
from trellis.interfaces.rpc_client import RpcClient, RpcError
from trellis.samehost import local_rpc
from trellis.samehost.local_rpc import LocalRpcClient

from .colocated import REMOTE
from .local import LocalImports
from .resources import RemoteResource, mentions_own, tokens_in, wrap_owned

if TYPE_CHECKING:
    from .taps import Taps

log = logging.getLogger(__name__)



def split_interface(interface: str) -> tuple[str, str, str]:
    """``ns:pkg/iface@1.0`` → (ns, pkg, iface)."""
    found = _SPLIT.get(interface)
    if found is None:
        name = interface.split("@", 1)[0]
        ns, _, rest = name.partition(":")
        pkg, _, iface = rest.partition("/")
        found = (ns, pkg, iface)
        if len(_SPLIT) < _NAMES_KEPT:
            _SPLIT[interface] = found
    return found


#: names worked out once per import (interfaces and functions are few): (interface, function) ->
#: (the wire's interface and function); interface -> (namespace, package, interface)
_NAMES_KEPT = 4096
_WIRE_NAMES: dict[tuple[str, str], tuple[str, str]] = {}
_SPLIT: dict[str, tuple[str, str, str]] = {}
#: per loaded component: (interface, function) -> the import's result type when it holds an ``own``
_OWNED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Any]] = weakref.WeakKeyDictionary()


def wire_names(interface: str, function: str) -> tuple[str, str]:
    """The wire's interface and function names of an import call (kept once worked out)."""
    key = (interface, function)
    found = _WIRE_NAMES.get(key)
    if found is None:
        found = (unversioned(interface), wire_function(function))
        if len(_WIRE_NAMES) < _NAMES_KEPT:
            _WIRE_NAMES[key] = found
    return found


def owned_result(loaded: Any, interface: str, function: str) -> Any:
    """The import's result type when it holds an ``own<R>`` (the reply's tokens become host
    resources), else None; kept per component."""
    if loaded is None:
        return None
    kept = _OWNED.get(loaded)
    if kept is None:
        kept = _OWNED[loaded] = {}
    key = (interface, function)
    try:
        return kept[key]
    except KeyError:
        info = _import_info(loaded, interface, function)
        found = kept[key] = info.result if info is not None and mentions_own(info.result) else None
        return found


class ImportRouter:
    """Finds the link for each import call and forwards it over the lattice."""

    def __init__(self, nc: Any, lattice: str, rpc: RpcClient, loop: asyncio.AbstractEventLoop) -> None:
        self.nc = nc
        self.lattice = lattice
        self.rpc = rpc
        self.loop = loop
        # (source, namespace, package, link name) -> (target, interfaces)
        self.links: dict[tuple[str, str, str, str], tuple[str, frozenset[str]]] = {}
        self._watch: asyncio.Task[None] | None = None
        #: runs a call in this process when its target is served here (the worker sets it), or
        #: returns ``colocated.REMOTE``; None sends every call over the lattice
        self.colocated: Callable[[Invocation], Any] | None = None
        #: calls providers of this host over their sockets (``trellis/samehost/local_rpc.py``); None: never
        self.direct: LocalRpcClient | None = None
        #: asked before a link is used (``putLink``); None: no policy hook
        self.policy: PolicyClient | None = None
        #: link decisions by (identity, target, interfaces); fallbacks (no answer) are not kept
        self._decisions: dict[tuple[Any, ...], PolicyDecision] = {}
        #: (source, namespace, package, link name) -> why the policy refused that link
        self.denied: dict[tuple[str, str, str, str], str] = {}
        self._policy_sub: Any = None

    async def start(self, sync_timeout_s: float = 10.0) -> None:
        from trellis.interfaces.store import LatticeStore, LinkChange  # links live in JetStream KV

        self.store = LatticeStore(self.nc, self.lattice)
        self._LinkChange = LinkChange
        self._synced = asyncio.Event()
        self._watch = asyncio.get_running_loop().create_task(self._follow(), name="links-watch")
        if self.policy is not None:
            # the service says its policy changed: forget the decisions and ask again for every link
            self._policy_sub = await self.nc.subscribe(changed_subject(self.policy.settings),
                                                       cb=self._on_policy_changed)
        try:
            await asyncio.wait_for(self._synced.wait(), sync_timeout_s)
        except TimeoutError:
            log.warning("links not synced within %ss; resolving on demand", sync_timeout_s)

    async def _put(self, link: Any) -> None:
        """Apply a link that was put, once the policy (when there is one) permits it."""
        if self.policy is not None:
            key = (link.identity, link.target, tuple(link.interfaces))
            decision = self._decisions.get(key)
            if decision is None:
                decision = await self.policy.evaluate("putLink", link_body(link))
                if not decision.defaulted:
                    self._decisions[key] = decision
            where = (link.source_id, link.wit_namespace, link.wit_package, link.name)
            if not decision.permitted:
                self.denied[where] = decision.message or "no reason given"
                self._apply(link, False)
                return
            self.denied.pop(where, None)
        self._apply(link, True)

    def _apply(self, link: Any, present: bool) -> None:
        key = (link.source_id, link.wit_namespace, link.wit_package, link.name)
        if present:
            self.links[key] = (link.target, frozenset(link.interfaces))
        else:
            self.links.pop(key, None)

    async def _follow(self) -> None:
        while True:
            try:
                async for change in self.store.watch_links():
                    if isinstance(change, self._LinkChange):
                        if change.kind == "put":
                            await self._put(change.link)
                        else:
                            self._apply(change.link, False)
                    else:
                        self._synced.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnects etc.: watch again from the current state
                log.warning("link watch interrupted: %r", exc)
                self.links.clear()
                await asyncio.sleep(0.5)

    async def _on_policy_changed(self, _msg: Any) -> None:
        try:
            links = await self.store.list_links()
        except Exception as exc:  # the store is unavailable: keep the decisions (asked again on next change)
            log.warning("policy changed but the links could not be read again: %r", exc)
            return
        self._decisions.clear()
        for link in links:
            await self._put(link)
        log.info("policy changed: %d links asked about again (%d refused)", len(links), len(self.denied))

    async def refresh(self, source: str) -> None:
        """Read a source's links straight from the store (a link put a moment ago)."""
        for link in await self.store.list_links(source=source):
            await self._put(link)

    async def stop(self) -> None:
        if self._watch:
            self._watch.cancel()
        if self._policy_sub is not None:
            try:
                await self._policy_sub.unsubscribe()
            except Exception:  # the connection may be gone already
                pass

    def resolve(self, source: str, interface: str, link_name: str = "default") -> str | None:
        ns, pkg, iface = split_interface(interface)
        hit = self.links.get((source, ns, pkg, link_name))
        if hit is None or (hit[1] and iface not in hit[1]):
            return None
        return hit[0]

    def resolve_fresh(self, source: str, interface: str, link_name: str, timeout_s: float) -> str | None:
        """From the Wasm thread: resolve, and on a miss re-read the store once before giving up."""
        target = self.resolve(source, interface, link_name)
        if target is None:
            fut = asyncio.run_coroutine_threadsafe(self.refresh(source), self.loop)
            try:
                fut.result(timeout=max(0.05, min(timeout_s, 2.0)))
            except Exception:
                fut.cancel()
            target = self.resolve(source, interface, link_name)
        return target

    def _direct(self, call: Invocation) -> Any:
        """``call`` to a provider of this host over its socket, or ``REMOTE`` (see local_rpc)."""
        assert self.direct is not None
        try:
            frame = call.encode()
        except EnvelopeError:
            return REMOTE  # fails over NATS the same way
        limit = getattr(self.nc, "max_payload", 0)
        if limit and len(frame) > limit:
            return REMOTE
        result = self.direct.call(call, frame)
        return REMOTE if result is local_rpc.REMOTE else result

    def handler_for(self, component_id: str, inv: Invocation, loaded: Any = None,
                    local: LocalImports | None = None, link_name: str = "default",
                    trace: dict[str, str] | None = None, counts: dict[str, int] | None = None,
                    spy: Taps | None = None, app: str = "") -> Any:
        """The import handler for one invocation of ``component_id``; ``counts`` counts its link
        calls by the way they went: ``colocated`` (run in this worker), ``direct`` (answered by a
        provider of this host over its socket), ``nats``. With ``spy`` (the component is spied on),
        each call it makes is reported (``taps.py``)."""

        def handler(interface: str, function: str, args: list[Any]) -> Any:
            if function.startswith("[resource-drop]"):
                return None  # handles are plain tokens: nothing to release remotely
            if local is not None:
                served, value = local.serve(interface, function, args)
                if served:
                    return value
            target: str | None
            if args and isinstance(args[0], RemoteResource):
                target = args[0].target  # a method goes where its resource lives
            else:
                target = self.resolve_fresh(component_id, interface, link_name, inv.remaining_s())
            if target is None:
                ns, pkg, iface = split_interface(interface)
                refused = self.denied.get((component_id, ns, pkg, link_name))
                if refused is not None:
                    raise MissingLink(interface, function, f"the link from {component_id} for {ns}:{pkg}/{iface} "
                                                           f"(link name '{link_name}') is denied by policy: {refused}")
                raise MissingLink(interface, function,
                                  f"no link from {component_id} for {ns}:{pkg}/{iface} (link name "
                                  f"'{link_name}'); add one with 'trellis link put {component_id} TARGET {ns} {pkg} "
                                  f"--interface {iface}'")
            wire_interface, wire_fn = wire_names(interface, function)
            call = Invocation(
                target=target, interface=wire_interface, function=wire_fn,
                args=tokens_in(args), source=component_id, id=new_id(),
                deadline_ms=inv.deadline_ms, link=link_name, trace=trace if trace else inv.trace,
            )
            colocated = self.colocated
            via = "local"
            if spy is not None:
                start, t0 = time.time(), time.perf_counter()
            try:
                result = REMOTE if colocated is None else colocated(call)
                way = "colocated"
                if result is REMOTE and self.direct is not None:
                    result = self._direct(call)
                    way = "direct"
                if result is REMOTE:
                    via = "lattice"
                    way = "nats"
                    fut = asyncio.run_coroutine_threadsafe(self.rpc.invoke(call), self.loop)
                    try:
                        result = fut.result(timeout=max(inv.remaining_s(), 0.001) + 1.0)
                    except TimeoutError:
                        fut.cancel()
                        raise ImportFailed(interface, function, f"{target}: deadline passed") from None
                if counts is not None:
                    counts[way] = counts.get(way, 0) + 1
            except (RpcError, ImportFailed) as exc:
                if spy is not None:
                    spy.outgoing(component_id, app, call, via, start, time.perf_counter() - t0, None, exc)
                if isinstance(exc, ImportFailed):
                    raise
                raise ImportFailed(interface, function, f"{target}: {exc.message}") from None
            if spy is not None:
                spy.outgoing(component_id, app, call, via, start, time.perf_counter() - t0, result, None)
            owned = owned_result(loaded, interface, function)
            if owned is not None:
                return wrap_owned(owned, result, target)
            return result

        return handler


def _import_info(loaded: Any, interface: str, function: str) -> Any:
    if loaded is None:
        return None
    iface = loaded.imports.interfaces.get(interface)
    return iface.functions.get(function) if iface is not None else None
