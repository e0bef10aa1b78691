"""The provider runtime: one running instance of a provider on a lattice.

Start: connect → fetch configs the bootstrap lacks → ``on_start`` → ``on_link_put``
for the bootstrap's links → answer health/ping → watch links and config (firing
callbacks as they change; the first read completes before serving) → serve
invocations in the provider id's queue group (instances on several hosts share
load and fail over).

Close (SIGTERM): stop watching → stop taking calls and let those in flight
finish for up to the grace period → ``on_shutdown`` → drain the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from types import MappingProxyType
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from trellis.interfaces.connection import connect, goodbye
from trellis.interfaces.control import CtlReply
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcClient, RpcError
from trellis.interfaces.rpc_server import RpcServer
from trellis.interfaces.store import ConfigChange, LatticeStore, LinkChange, StoreSettings, Synced
from trellis.kit.meters import Telemetry
from trellis.kit.service import Service
from trellis.samehost import handoff
from trellis.samehost.local_rpc import LocalComponentCaller, LocalRpcDoor, provider_address

from . import subjects as psubjects
from .bootstrap import Bootstrap
from .context import ProviderInfo, new_context
from .definition import Provider
from .dispatch import Deadlines, health_result, invoke_export, run_callback
from .errors import ProviderError
from .metrics import ProviderTally
from .state import Action, CallLinks, ConfigUpdated, LinkDeleted, LinkPut, LinkState, wit_key

log = logging.getLogger("trellis.providers.sdk")

HEALTH_TIMEOUT_S = 5.0
LINK_CALLBACK_TIMEOUT_S = 60.0
#: first connection attempts (0.5 s apart) before start fails
CONNECT_ATTEMPTS = 10
#: how long start waits for the first read of links and config before serving anyway
SYNC_TIMEOUT_S = 5.0


class ProviderStartError(RuntimeError):
    """The provider could not start (its on_start failed, or NATS is unreachable)."""


class ProviderRuntime(Service):
    """Runs ``provider`` as described by ``bootstrap``: ``async with ProviderRuntime(p, b): ...``."""

    name = "provider"

    def __init__(self, provider: Provider, bootstrap: Bootstrap, *, nc: Client | None = None,
                 store_settings: StoreSettings | None = None) -> None:
        super().__init__()
        self.provider = provider
        self.bootstrap = bootstrap
        self.id = bootstrap.provider_id
        self.host_id = bootstrap.host_id
        self.lattice = bootstrap.lattice
        self.state = LinkState(self.id, tuple(bootstrap.config_names), dict(bootstrap.config))
        self._call_links = CallLinks(self.state)
        self._deadlines = Deadlines()
        self._info: ProviderInfo | None = None
        self._info_generation = -1
        self.nc: Client | None = nc
        self._own_nc = nc is None
        self._store_settings = store_settings
        self.store: LatticeStore | None = None
        self.rpc: RpcClient | None = None
        self.server: RpcServer | None = None
        self.door: LocalRpcDoor | None = None
        self._subs: list[Any] = []
        self._callbacks = asyncio.Lock()  # lifecycle callbacks run one at a time, in order
        self._started_callbacks = False  # on_start ran: on_shutdown is owed
        self.synced = asyncio.Event()  # the watch has caught up with the store at least once
        self.stats = {"callbacks_failed": 0, "watch_restarts": 0}
        self._secrets = MappingProxyType(bootstrap.secret_values())
        self.tally = ProviderTally(self.id, self.host_id)
        self.telemetry: Telemetry | None = None  # made on start (it reads OTEL_* then)

    @property
    def info(self) -> ProviderInfo:
        """Built again only when links or config changed (callbacks and tasks read it often)."""
        if self._info is None or self._info_generation != self.state.generation:
            self._info = ProviderInfo(
                provider_id=self.id, host_id=self.host_id, lattice=self.lattice,
                instance_id=self.bootstrap.instance_id, config=MappingProxyType(self.state.own_config()),
                links=tuple(a.link for _, a in sorted(self.state.applied.items())), nats=self.bootstrap.nats,
                state_dir=self.bootstrap.state_dir, local_workers=tuple(self.bootstrap.local_workers),
                secrets=self._secrets,
            )
            self._info_generation = self.state.generation
        return self._info

    @property
    def connection(self) -> Client | None:
        return self.nc

    # --- lifecycle ---------------------------------------------------------------------

    async def _start(self) -> None:
        b = self.bootstrap
        if self.nc is None:
            try:
                self.nc = await connect(
                    b.nats.settings(f"trellis-provider-{self.id}"), name=f"trellis-provider-{self.id}",
                    max_reconnect_attempts=CONNECT_ATTEMPTS, error_cb=self._on_nats_error,
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                    **b.nats.connect_extra(),
                )
            except Exception as exc:
                raise ProviderStartError(f"cannot connect to NATS at {b.nats.url}: {exc}") from exc
            # bounded attempts for the first connection only; once in, reconnect for ever
            self.nc.options["max_reconnect_attempts"] = -1
        nc = self.nc
        self.store = LatticeStore(nc, self.lattice, source=self.id, settings=self._store_settings)
        self.rpc = RpcClient(nc, self.lattice, source=self.id)
        if b.local_workers and handoff.available():  # calls to components of this host skip NATS
            self.rpc.local = LocalComponentCaller(self.lattice, self.host_id, len(b.local_workers))
        configs = dict(b.configs)
        await self._fetch_missing_configs(configs)
        actions = self.state.seed_applied(b.links, configs)
        ok, err = await run_callback(self.provider, "on_start", info=self.info, instance=self)
        if not ok:
            raise ProviderStartError(f"provider {self.id}: on_start failed: {err!r}")
        self._started_callbacks = True
        await self._fire(actions)
        self._subs.append(await nc.subscribe(psubjects.provider_health(self.lattice, self.id, self.host_id),
                                             cb=self._on_health))
        self._subs.append(await nc.subscribe(psubjects.provider_ping(self.lattice, self.id), cb=self._on_health))
        self.telemetry = Telemetry(f"trellis-provider-{self.id}",
                                   {"trellis.host_id": self.host_id, "trellis.provider_id": self.id})
        self.telemetry.producers.append(self.tally.series)
        self._subs.append(await nc.subscribe(psubjects.provider_metrics(self.lattice, self.id, self.host_id),
                                             cb=self._on_metrics))
        self.tasks.spawn(self._watch_loop(), "watch")
        try:  # serve knowing the current links, not only the bootstrap's
            await asyncio.wait_for(self.synced.wait(), SYNC_TIMEOUT_S)
        except TimeoutError:
            log.warning("provider %s: links and config not read within %.0fs; serving with the bootstrap's",
                        self.id, SYNC_TIMEOUT_S)
        self.server = RpcServer(nc, self.lattice, self.id, self._handle, served_by=self.host_id,
                                max_concurrent=b.max_concurrent or self.provider.max_concurrent)
        await self.server.start()
        if b.local_workers:  # started by a host: its workers may call here without NATS
            door = LocalRpcDoor(self.server, provider_address(self.lattice, self.host_id, self.id))
            if await door.start():
                self.door = door
        await nc.flush()
        log.info("provider %s (%s) serving on lattice %s for host %s", self.id, self.provider.name,
                 self.lattice, self.host_id)

    async def _close(self) -> None:
        await self.tasks.close()  # stop watching first: no callbacks during shutdown
        grace = self.bootstrap.shutdown_grace_s
        began = time.monotonic()
        if self.server is not None:  # calls under way are answered, at the door too; then workers use NATS
            stopping = self.server.stop(drain_timeout_s=grace)
            await (self.door.close(stopping) if self.door is not None else stopping)
        self._deadlines.close()
        if self._started_callbacks:
            left = max(0.5, grace - (time.monotonic() - began))
            await run_callback(self.provider, "on_shutdown", left, info=self.info, instance=self, timeout_s=left)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self.rpc is not None:
            await self.rpc.close()
            if self.rpc.local is not None:
                self.rpc.local.close()
        if self._own_nc and self.nc is not None and not self.nc.is_closed:
            await goodbye(self.nc)
        if self.telemetry is not None:
            self.telemetry.shutdown()
        log.info("provider %s stopped: %s", self.id, self.close_reason)

    async def _on_nats_error(self, exc: Exception) -> None:
        log.warning("provider %s: NATS: %s", self.id, exc or exc.__class__.__name__)

    async def _on_disconnected(self) -> None:
        if self.status.value == "running":  # not our own close
            log.warning("provider %s: disconnected from NATS, reconnecting", self.id)

    async def _on_reconnected(self) -> None:
        log.info("provider %s: reconnected to NATS", self.id)

    # --- invocations -------------------------------------------------------------------

    async def _handle(self, inv: Invocation) -> Any:
        """One invocation, the per-call path: every lookup is a dict hit, the deadline a shared timer."""
        defn = self.provider.find(inv.interface, inv.function)
        if defn is None:
            known = ", ".join(sorted(self.provider.exports)) or "nothing"
            raise RpcError(f"provider {self.id} does not export {inv.operation} (it exports {known})",
                           ErrorCode.UNKNOWN_OPERATION)
        link, config = self._call_links.find(inv.source, inv.link, inv.interface)
        ctx = new_context(self.id, self.host_id, self.lattice, inv.source, inv.link, link, config, inv.interface,
                          inv.function, inv.id, MappingProxyType(inv.trace), inv.deadline_ms / 1000.0, inv.attempt,
                          self)
        began = time.perf_counter()
        ok = False
        try:
            result = await invoke_export(defn, inv.args, ctx, self, self._deadlines)
            ok = True
            return result
        except ProviderError as exc:
            raise exc.to_rpc_error() from None
        finally:
            self.tally.add(inv.operation, inv.source, time.perf_counter() - began, ok)

    async def call(self, target: str | Link, operation: str, args: list[Any], *,
                   timeout_s: float | None = None, link_name: str | None = None,
                   deadline_ms: int | None = None, trace: dict[str, str] | None = None) -> Any:
        """Call a linked component (see :meth:`Provider.call`)."""
        if self.rpc is None:
            raise RuntimeError(f"provider {self.id} is not running")
        interface, _ = self.provider.check_import(operation)
        if isinstance(target, Link):
            target_id, link_name = target.target, link_name or target.name
        else:
            target_id = target
            if link_name is None:
                key = wit_key(interface)
                link_name = next((a.link.name for a in self.state.applied.values()
                                  if key is not None and a.link.source_id == self.id and a.link.target == target_id
                                  and a.link.covers(*key)), "default")
        return await self.rpc.call(target_id, operation, args, timeout_s=timeout_s or 30.0, link=link_name,
                                   deadline_ms=deadline_ms, trace=trace)

    # --- health ------------------------------------------------------------------------

    async def check_health(self) -> tuple[bool, str]:
        ok, result = await run_callback(self.provider, "health", info=self.info, instance=self,
                                        timeout_s=HEALTH_TIMEOUT_S)
        return health_result(ok, result)

    def describe(self, healthy: bool, message: str) -> dict[str, Any]:
        return {
            "provider_id": self.id, "name": self.provider.name, "version": self.provider.version,
            "host_id": self.host_id, "instance_id": self.bootstrap.instance_id, "healthy": healthy,
            "message": message, "status": self.status.value, "local_state": self.provider.local_state,
            "exports": sorted(self.provider.exports),
            "imports": list(self.provider.declared_imports), "links": len(self.state.applied),
            "applying": self._callbacks.locked(),  # link/config callbacks under way: health may change
            "inflight": self.server.inflight if self.server else 0,
            "stats": dict(self.server.stats) if self.server else {},
        }

    async def _on_metrics(self, msg: Msg) -> None:
        if msg.reply and self.telemetry is not None:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(self.telemetry.snapshot()).encode())

    async def _on_health(self, msg: Msg) -> None:
        if msg.reply:
            try:
                self.tasks.spawn(self._answer_health(msg), "health")
            except RuntimeError:  # closing
                pass

    async def _answer_health(self, msg: Msg) -> None:
        healthy, message = await self.check_health()
        with contextlib.suppress(Exception):
            await msg.respond(CtlReply.ok(self.describe(healthy, message)).encode())

    # --- links and config --------------------------------------------------------------

    async def _fetch_missing_configs(self, configs: dict[str, dict[str, str]]) -> None:
        assert self.store is not None
        wanted = list(self.bootstrap.config_names)
        for lk in self.bootstrap.links:
            wanted += lk.config_for(self.id)
        for name in dict.fromkeys(wanted):
            if name in configs:
                continue
            try:
                found = await self.store.find_config(name)
            except Exception as exc:
                log.warning("provider %s: could not read config %r: %s", self.id, name, exc)
                continue
            if found is not None:
                configs[name] = found

    async def _watch_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("provider %s: watching links and config failed (%s); retrying in %.1fs",
                            self.id, exc, backoff)
            self.stats["watch_restarts"] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _watch_once(self) -> None:
        assert self.store is not None
        links: dict[tuple[str, ...], Link] = {}
        configs: dict[str, dict[str, str]] = {}
        synced: set[str] = set()
        live = False
        async with contextlib.aclosing(self.store.watch()) as changes:
            async for ch in changes:
                if isinstance(ch, Synced):
                    synced.add(ch.bucket)
                    if not live and len(synced) == 2:
                        live = True
                        self.state.replace(links.values(), configs)
                        await self._reconcile()
                        self.synced.set()
                    continue
                if live:
                    self._observe(ch)
                    await self._reconcile()
                elif isinstance(ch, LinkChange):
                    if ch.kind == "put":
                        links[ch.link.identity] = ch.link
                    else:
                        links.pop(ch.link.identity, None)
                elif isinstance(ch, ConfigChange):
                    if ch.kind == "put":
                        configs[ch.name] = ch.values
                    else:
                        configs.pop(ch.name, None)

    def _observe(self, ch: LinkChange | ConfigChange) -> None:
        if isinstance(ch, LinkChange):
            (self.state.link_put if ch.kind == "put" else self.state.link_deleted)(ch.link)
        elif ch.kind == "put":
            self.state.config_put(ch.name, ch.values)
        else:
            self.state.config_deleted(ch.name)

    async def _reconcile(self) -> None:
        await self._fire(self.state.plan())

    async def _fire(self, actions: list[Action]) -> None:
        async with self._callbacks:
            for action in actions:
                if isinstance(action, LinkPut):
                    args: tuple[Any, ...] = ("on_link_put", action.link, dict(action.config))
                elif isinstance(action, LinkDeleted):
                    args = ("on_link_deleted", action.link)
                else:
                    assert isinstance(action, ConfigUpdated)
                    args = ("on_config_updated", action.name, dict(action.values))
                log.debug("provider %s: %s %s", self.id, args[0], args[1])
                ok, _ = await run_callback(self.provider, *args, info=self.info, instance=self,
                                           timeout_s=LINK_CALLBACK_TIMEOUT_S)
                if not ok:
                    self.stats["callbacks_failed"] += 1
