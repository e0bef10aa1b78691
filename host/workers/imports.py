"""Satisfying a component's imports: links name the target, RPC carries the call.

Runs the network part on the worker's event loop while the Wasm thread waits:
host functions are synchronous, so the import handler submits the call to the
loop and blocks on its result, bounded by the invocation's own deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from host.runtime import ImportFailed, MissingLink
from interfaces.envelope import Invocation
from interfaces.rpc_client import RpcClient, RpcError

log = logging.getLogger(__name__)


def split_interface(interface: str) -> tuple[str, str, str]:
    """``ns:pkg/iface@1.0`` → (ns, pkg, iface)."""
    name = interface.split("@", 1)[0]
    ns, _, rest = name.partition(":")
    pkg, _, iface = rest.partition("/")
    return ns, pkg, iface


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

    async def start(self) -> None:
        try:
            from interfaces.store import LatticeStore  # links live in JetStream KV
        except ImportError:  # pragma: no cover - during bring-up
            return
        self.store = LatticeStore(self.nc, self.lattice)
        await self._reload()
        self._watch = asyncio.get_running_loop().create_task(self._follow(), name="links-watch")

    async def _reload(self) -> None:
        links = await self.store.list_links()
        table = {}
        for link in links:
            table[(link.source_id, link.wit_namespace, link.wit_package, link.name)] = (
                link.target, frozenset(link.interfaces))
        self.links = table

    async def _follow(self) -> None:
        while True:
            try:
                async for _ in self.store.watch_links():
                    await self._reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnects etc.: reload and watch again
                log.warning("link watch interrupted: %r", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._watch:
            self._watch.cancel()

    def resolve(self, source: str, interface: str, link_name: str = "default") -> str | None:
        ns, pkg, iface = split_interface(interface)
        hit = self.links.get((source, ns, pkg, link_name))
        if hit is None or (hit[1] and iface not in hit[1]):
            return None
        return hit[0]

    def handler_for(self, component_id: str, inv: Invocation) -> Any:
        def handler(interface: str, function: str, args: list[Any]) -> Any:
            if function.startswith("[resource-drop]"):
                return None
            target = self.resolve(component_id, interface, "default")
            if target is None:
                raise MissingLink(interface, function)
            op = f"{interface.split('@', 1)[0]}.{function}"
            fut = asyncio.run_coroutine_threadsafe(
                self.rpc.call(target, op, args, deadline_ms=inv.deadline_ms, trace=inv.trace), self.loop)
            try:
                return fut.result(timeout=max(inv.remaining_s(), 0.001) + 1.0)
            except RpcError as exc:
                raise ImportFailed(interface, function, f"{target}: {exc.message}") from None
            except TimeoutError:
                fut.cancel()
                raise ImportFailed(interface, function, f"{target}: deadline passed") from None

        return handler
