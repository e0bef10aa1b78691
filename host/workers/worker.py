"""One worker process: loads components and serves their invocations from NATS.

The asyncio loop (NATS, RPC servers) runs in the main thread. A short call that
needs nothing from the loop runs right there (``inline.py``); the others run in
a thread pool, so a call blocked in an import (a call to another component or
provider) does not stall the rest. A call to a component this worker also
serves runs nested on the calling thread instead of over NATS (``colocated.py``).
Commands from the host arrive as JSON lines on stdin and are answered as JSON
lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trellis.host.runtime import (
    CallProbe,
    CompileCache,
    ImportHandler,
    InvocationError,
    Invoker,
    Limits,
    LoadedComponent,
    Preopen,
    Reroute,
    ReusePolicy,
    WasiGrants,
    deny_all,
    make_engine,
)
from trellis.host.runtime.engine import engine_settings
from trellis.host.runtime.memory import give_back_freed_memory
from trellis.host.runtime.parking import Parking, load_parkable, park_after_s, park_all
from trellis.host.runtime.imports import is_wasip2_interface
from trellis.interfaces.policy import PolicyClient, PolicySettings
from trellis.interfaces.connection import NatsSettings, connect, goodbye
from trellis.samehost import local_rpc
from trellis.interfaces.envelope import Invocation
from trellis.samehost.local_rpc import LocalRpcClient, LocalRpcDoor
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcClient, RpcError
from trellis.interfaces.rpc_server import RpcServer
from trellis.interfaces.secrets import SecretValue
from trellis.interfaces.serving import error_of
from trellis.interfaces import tracing
from trellis.kit import gc_tuning
from trellis.interfaces.logs import setup_logging
from trellis.kit.meters import Telemetry, per_call_enabled
from trellis.interfaces.tracing import setup_tracing

from . import colocated, inline
from .colocated import Colocated, Slots
from .handoff import HandoffServer
from .imports import ImportRouter
from .local import SERVED_HERE, LocalImports
from .records import VIA_RPC, Observers, build
from .metrics import worker_series
from .tally import CallTally
from .taps import Taps

log = logging.getLogger("trellis.worker")
#: how often warm instances past their max_idle_s are looked for and dropped
IDLE_SWEEP_S = 1.0

_CODES = {
    "missing_link": ErrorCode.MISSING_LINK,
    "bad_argument": ErrorCode.BAD_REQUEST,
    "not_found": ErrorCode.NOT_FOUND,
}


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


def import_needs(loaded: LoadedComponent) -> tuple[bool, bool]:
    """(needs an import handler, makes calls over the lattice), read once from the import table."""
    imports = loaded.imports
    names = [n for n in imports.interfaces if not is_wasip2_interface(n)]
    world_level = bool(imports.functions or imports.resources)
    lattice = world_level or any(n.split("@", 1)[0] not in SERVED_HERE for n in names)
    return bool(names) or world_level, lattice


class _Server(RpcServer):
    """A component's RPC server whose admission slots co-located calls share (``Slots``)."""

    def __init__(self, *args: Any, slots: Slots, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(getattr(self, "_slots", None), asyncio.Semaphore):  # pragma: no cover
            raise RuntimeError("RpcServer no longer admits calls through self._slots; "
                               "host/workers/colocated.Slots must follow it")
        self._slots = slots  # type: ignore[assignment]


class Worker:
    def __init__(self, boot: dict[str, Any]) -> None:
        self.boot = boot
        self.lattice: str = boot["lattice"]
        self.host_id: str = boot["host_id"]
        self.index: int = boot["worker_index"]
        self.threads: int = boot.get("threads", 8)
        # fuel metering costs every call: only components with a fuel budget run metered
        self.engine_settings = engine_settings(boot.get("instance_allocator", "on-demand"))
        self.engine = make_engine(replace(self.engine_settings, consume_fuel=False))
        self.metered_engine: Any = None
        self.cache = CompileCache(boot.get("cache_dir"))
        # nested co-located calls stack one store's Wasm (up to 512 KiB each) per level on a thread
        threading.stack_size(colocated.WASM_THREAD_STACK)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="wasm")
        self.executor_size = self.threads
        # Instances are created and dropped one at a time: mapping and unmapping instance memory
        # from several threads of one process contends on its address space (TLB shootdowns).
        # Calls themselves run side by side, so a slow or hostile call does not hold up its
        # neighbours; processes (workers) are how a host uses more cores. Re-entrant: an import
        # called while instantiating may run another component's instantiation nested (colocated).
        self.lifecycle_lock = threading.RLock()
        #: idle components give their compiled code back (host/runtime/parking.py)
        self.parking = Parking(park_after_s() if self.cache.directory is not None else None)
        self.served: dict[str, Served] = {}
        self.nc: Any = None
        self.rpc: RpcClient | None = None
        self.imports: ImportRouter | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.served_by = f"{self.host_id}/{self.index}"
        self.colocated: Colocated | None = (
            Colocated(self, colocated.max_depth(boot)) if colocated.enabled(boot) else None)
        #: how long a call may hold the event loop (None: never run calls there)
        self.inline_budget_s = inline.budget_s(boot)
        #: HTTP connections handed here by the host's http-server (None: off)
        self.handoff: HandoffServer | None = None
        #: component id -> where this host's providers call it (local_rpc); None: switched off
        self.doors: dict[str, LocalRpcDoor] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: called with an InvocationRecord for every invocation this worker finishes (records.py)
        self.observers = Observers()
        #: what each component's calls cost here (tally.py), for metrics and ``trellis app usage``;
        #: TRELLIS_METRICS=0: nothing is measured (no observer, no probe)
        self.tally = CallTally()
        self.tally_on = per_call_enabled()
        if self.tally_on:
            self.observers.add(self.tally)
        self.telemetry = Telemetry("trellis-worker", {"trellis.host_id": self.host_id,
                                                      "trellis.worker": str(self.index)})
        self.telemetry.producers.append(lambda: worker_series(self))
        #: spy records and traffic summaries, sent while someone watches (taps.py)
        self.taps: Taps | None = None

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        setup_tracing("trellis-worker")
        nats = NatsSettings(**self.boot["nats"])
        self.nc = await connect(nats, name=f"trellis-worker-{self.host_id[:8]}-{self.index}")
        self.rpc = RpcClient(self.nc, self.lattice, source=self.host_id)
        self.taps = Taps(self.nc, self.lattice, self.host_id, self.index, self.loop)
        await self.taps.start()
        self.observers.add(self.taps)
        self.imports = ImportRouter(self.nc, self.lattice, self.rpc, self.loop)
        policy = PolicySettings.from_dict(self.boot.get("policy"))
        if policy.enabled:
            self.imports.policy = PolicyClient(self.nc, policy, self.boot.get("policy_requester") or {})
        if self.colocated is not None:
            self.imports.colocated = self._colocated_call
        if local_rpc.enabled():
            self.imports.direct = LocalRpcClient(self.lattice, self.host_id)
            self.doors = {}  # and providers of this host call the components here without NATS
        await self.imports.start()
        self._config_watch = asyncio.create_task(self._follow_config())
        self._reaper = asyncio.create_task(self._drop_idle_instances())
        if self.boot.get("handoff"):
            self.handoff = HandoffServer(self)
            self.handoff.start()
        stop = asyncio.Event()
        self.loop.add_signal_handler(signal.SIGTERM, stop.set)
        self.loop.add_signal_handler(signal.SIGINT, lambda: None)  # the host decides when we stop
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        _send({"event": "ready", "pid": os.getpid()})
        commands = asyncio.create_task(self._commands(reader, stop))
        await stop.wait()
        commands.cancel()
        await self._shutdown(self.boot.get("grace_s", 10.0))

    async def _commands(self, reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
        while True:
            line = await reader.readline()
            if not line:  # the host went away
                stop.set()
                return
            try:
                cmd = json.loads(line)
            except ValueError:
                continue
            try:
                result = await self._handle(cmd, stop)
                _send({"id": cmd.get("id"), "ok": True, "result": result})
            except Exception as exc:
                _send({"id": cmd.get("id"), "ok": False, "error": f"{exc.__class__.__name__}: {exc}"})

    async def _handle(self, cmd: dict[str, Any], stop: asyncio.Event) -> Any:
        op = cmd["op"]
        if op == "load":
            result = await self._load(cmd)
            self._served_changed()
            return result
        if op == "unload":
            await self._unload(cmd["component_id"], cmd.get("grace_s", 10.0))
            self._served_changed()
            return None
        if op == "scale":
            await self._scale(cmd["component_id"], cmd["share"])
            self._served_changed()
            return None
        if op == "stats":
            return {cid: {"share": s.share, **(s.server.stats if s.server else {}),
                          "inflight": s.server.inflight if s.server else 0,
                          "slots_in_use": s.slots.in_use if s.slots else 0, "colocated": dict(s.colocated),
                          "inline": {**s.inline_stats, "enabled": s.inline,
                                     "needs_thread": sorted(s.needs_thread)},
                          "handoff": dict(s.handoff), "provider_calls": {"direct": s.link_calls["direct"]},
                          "parked": s.invoker.parked, "reloads": s.invoker.loaded.reloads,
                          "link_calls": dict(s.link_calls),
                          "from_local_providers": self.doors[cid].taken if self.doors and cid in self.doors else 0}
                    for cid, s in self.served.items()}
        if op == "usage":
            usage = self.tally.usage()
            for cid, served in self.served.items():
                usage.setdefault(cid, {"app": served.app})["instances"] = served.invoker.live_instances
            return usage
        if op == "metrics":
            return self.telemetry.snapshot()
        if op == "shutdown":
            self.boot["grace_s"] = cmd.get("grace_s", 10.0)
            stop.set()
            return None
        raise ValueError(f"unknown worker op {op!r}")

    async def _load(self, cmd: dict[str, Any]) -> dict[str, Any]:
        cid = cmd["component_id"]
        limits = Limits(**cmd.get("limits", {}))
        engine = self.engine
        if limits.fuel is not None:
            if self.metered_engine is None:
                self.metered_engine = make_engine(self.engine_settings)
            engine = self.metered_engine
        # from the compiled artifact when there is one (the .wasm is then never read); parkable
        loaded = await asyncio.to_thread(load_parkable, engine, Path(cmd["path"]), self.cache, cmd.get("digest"),
                                         self.parking.after_s is not None)
        reuse = ReusePolicy(**cmd.get("reuse", {}))
        wasi = cmd.get("wasi", {})
        grants = WasiGrants(
            env=wasi.get("env", {}),
            preopens=tuple(Preopen(**p) for p in wasi.get("preopens", [])),
            inherit_stdout=wasi.get("inherit_stdio", False), inherit_stderr=wasi.get("inherit_stdio", False),
        )
        invoker = Invoker(loaded, limits=limits, grants=grants, reuse=reuse, lifecycle_lock=self.lifecycle_lock)
        old = self.served.get(cid)
        share = int(cmd["share"])
        served = Served(cid, loaded.digest, invoker, None, share, app=str(cmd.get("app") or ""),
                        config_names=tuple(cmd.get("config", [])),
                        non_retryable=tuple(cmd.get("non_retryable", [])))
        served.config = await self._resolve_config(served.config_names)
        secrets = {name: SecretValue.from_wire(v) for name, v in (cmd.get("secrets") or {}).items()}
        served.local = LocalImports(cid, lambda: served.config or {}, secrets)
        served.needs_handler, served.lattice_imports = import_needs(loaded)
        served.inline = self.inline_budget_s is not None and inline.eligible(grants)
        if share > 0:
            served.server, served.slots = self._server(served, share, cmd.get("queue"),
                                                       cmd.get("non_retryable", []))
            await served.server.start()
        self.served[cid] = served
        await self._door_to(served)
        self._ensure_threads()
        if old is not None:  # an update: the new version already serves, the old one drains
            await self._retire(old, cmd.get("grace_s", 10.0))
        give_back_freed_memory()
        return {"digest": loaded.digest, "exports": loaded.describe()["exports"]}

    def _served_changed(self) -> None:
        if self.handoff is not None:
            self.handoff.changed()

    def spawn(self, coro: Any, name: str) -> None:
        """A background task of this worker, kept until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_idle_instances(self) -> None:
        """Every second: warm instances idle past their component's ``max_idle_s`` are dropped, and
        components idle past ``TRELLIS_PARK_IDLE_S`` give their compiled code back (``parking.py``)."""
        assert self.loop is not None
        while True:
            await asyncio.sleep(IDLE_SWEEP_S)
            due = self.parking.due((cid, s.invoker) for cid, s in self.served.items())
            if due:
                try:
                    self.parking.parked += len(await self.loop.run_in_executor(self.executor, park_all, due))
                except RuntimeError:  # the executor is being replaced or shut down
                    pass
            for served in list(self.served.values()):
                inv = served.invoker
                if inv.reuse.max_idle_s is not None and inv.has_warm_instance and not inv.closed:
                    try:
                        await self.loop.run_in_executor(self.executor, inv.drop_idle)
                    except RuntimeError:  # the executor is being replaced or shut down
                        pass
                    except Exception:  # never let one component stop the sweep for all
                        log.exception("dropping idle instances of %s failed", served.component_id)

    async def _resolve_config(self, names: tuple[str, ...]) -> dict[str, str]:
        if not names or self.imports is None:
            return {}
        return await self.imports.store.resolve_config(names)

    async def _follow_config(self) -> None:
        """Named configs change at run time: re-resolve what each component reads."""
        assert self.imports is not None
        from trellis.interfaces.store import ConfigChange

        while True:
            try:
                async for change in self.imports.store.watch_config(include_existing=False):
                    if not isinstance(change, ConfigChange):
                        continue
                    for served in list(self.served.values()):
                        if change.name in served.config_names:
                            served.config = await self._resolve_config(served.config_names)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("config watch interrupted: %r", exc)
                await asyncio.sleep(0.5)

    def _ensure_threads(self) -> None:
        """Enough threads for every admitted call at once: a call waiting in an import (on another
        component, maybe on this worker) holds its thread, so fewer threads than admitted calls
        could starve the very calls it waits for. Idle threads cost nothing; they start lazily."""
        needed = max(self.threads, sum(s.share for s in self.served.values()) + 1)
        if needed > self.executor_size:
            old, self.executor = self.executor, ThreadPoolExecutor(needed, thread_name_prefix="wasm")
            self.executor_size = needed
            old.shutdown(wait=False)  # calls already running there finish

    def _server(self, served: Served, share: int, queue: int | None,
                non_retryable: list[str] | tuple[str, ...] = ()) -> tuple[RpcServer, Slots]:
        async def handle(inv: Invocation) -> Any:
            return await self.invoke(served, inv)

        assert self.loop is not None
        slots = Slots(share, self.loop)
        server = _Server(self.nc, self.lattice, served.component_id, handle, served_by=self.served_by,
                         max_concurrent=share, max_queue=queue if queue is not None else max(16, 4 * share),
                         non_retryable=frozenset(non_retryable), slots=slots)
        return server, slots

    def handler(self, served: Served, inv: Invocation, trace: dict[str, str] | None = None) -> ImportHandler:
        """The import handler for one call of ``served``; its lattice calls carry ``trace``, by
        default the current span's (the call's server span, on the loop or on a Wasm thread)."""
        if not served.needs_handler:
            return deny_all
        assert self.imports is not None
        if trace is None and served.lattice_imports:
            trace = tracing.inject()
        taps = self.taps
        spy = taps if taps is not None and taps.spying and taps.spied(served.component_id) else None
        return self.imports.handler_for(served.component_id, inv, served.invoker.loaded, served.local,
                                        trace=trace, counts=served.link_calls, spy=spy, app=served.app)

    @staticmethod
    def execute(served: Served, inv: Invocation, handler: ImportHandler, timeout_s: float | None = None,
                probe: CallProbe | None = None) -> Any:
        """Run one call on this thread; failures as the ``RpcError`` its caller gets."""
        try:
            return served.invoker.invoke(inv.operation, inv.args, handler, timeout_s=timeout_s, probe=probe)
        except Exception as exc:
            raise _as_rpc_error(served, inv, exc, timeout_s) from None

    def probe(self) -> CallProbe | None:
        """A probe for one call when anybody wants its record: the call tally (unless
        TRELLIS_METRICS=0), or a spy or the dashboard while they watch; else None: nothing is
        measured and no record is made."""
        if self.tally_on:
            return CallProbe()
        taps = self.taps
        if taps is not None and (taps.spying or taps.traffic_until):
            return CallProbe()
        return None

    def record(self, served: Served, inv: Invocation, via: str, ran_inline: bool, probe: CallProbe | None,
               start: float, t0: float, exc: BaseException | None = None, result: Any = None) -> None:
        """Hand the record of a finished call to the observers (``records.py``), and with its
        arguments and ``result`` to the spy tap when the component is spied on (``taps.py``)."""
        if probe is not None:
            record = build(served, inv, self.host_id, self.index, via, ran_inline, probe, start, t0, exc)
            self.observers.emit(record)
            taps = self.taps
            if taps is not None and taps.spying:
                taps.served(record, inv.args, result, exc)

    def _run_inline(self, served: Served, inv: Invocation, probe: CallProbe | None = None) -> Any:
        """Run one call on the event loop (``inline.py``); ``Reroute`` when it needs a thread."""
        assert self.inline_budget_s is not None
        overruns = served.overruns
        try:
            result = inline.run(served, inv, self.inline_budget_s, probe)
        except Reroute as why:
            served.inline_stats["rerouted"] += 1
            sticky = why.sticky
            if isinstance(why, inline.BudgetOverrun):
                overruns[inv.operation] = n = overruns.get(inv.operation, 0) + 1
                sticky = n >= inline.OVERRUNS_TO_STICK
            if sticky:
                served.needs_thread.add(inv.operation)
                log.debug("%s %s runs on a Wasm thread from now on: %s", served.component_id,
                          inv.operation, why.reason)
            raise
        except Exception as exc:
            if overruns:
                overruns.pop(inv.operation, None)
            raise _as_rpc_error(served, inv, exc, inv.remaining_s()) from None
        if overruns:
            overruns.pop(inv.operation, None)
        served.inline_stats["served"] += 1
        return result

    async def invoke(self, served: Served, inv: Invocation, timeout_s: float | None = None,
                     via: str = VIA_RPC) -> Any:
        """Run one call of ``served`` (its slot already taken): inline when it can, else on a Wasm
        thread, cut short after ``timeout_s``; failures as the ``RpcError`` its caller gets.
        ``via`` says how it came in, for its record (``records.py``)."""
        probe = self.probe()
        start, t0 = time.time(), time.perf_counter()
        ran_inline = False
        try:
            if served.inline and inv.operation not in served.needs_thread:
                ran_inline = True
                try:
                    result = self._run_inline(served, inv, probe)
                except Reroute:
                    ran_inline = False  # cut short before anything left the instance: run it again on a thread
                else:
                    self.record(served, inv, via, True, probe, start, t0, result=result)
                    return result
            # calls this invocation makes are children of its server span (the current context here)
            handler = self.handler(served, inv)
            # the Wasm thread runs in this context: its log lines carry the call's trace and span ids
            result = await asyncio.get_running_loop().run_in_executor(
                self.executor, contextvars.copy_context().run, self.execute, served, inv, handler, timeout_s, probe)
        except BaseException as exc:
            self.record(served, inv, via, ran_inline, probe, start, t0, exc)
            raise
        self.record(served, inv, via, False, probe, start, t0, result=result)
        return result

    def _colocated_call(self, call: Invocation) -> Any:
        """For the import router, on a Wasm thread: run ``call`` here if its target is served here."""
        assert self.colocated is not None
        return self.colocated.call(call, self.nc.max_payload)

    async def _scale(self, cid: str, share: int) -> None:
        served = self.served.get(cid)
        if served is None:
            raise ValueError(f"component {cid} is not loaded")
        if share == served.share:
            return
        old_server = served.server
        served.share = share
        self._ensure_threads()
        served.server, served.slots = (self._server(served, share, None, served.non_retryable)
                                       if share > 0 else (None, None))
        if served.server:
            await served.server.start()
            await self._door_to(served)
        if old_server:
            await old_server.stop(10.0)

    async def _door_to(self, served: Served) -> None:
        """Point the component's door (where this host's providers call it) at its current
        server, opening the door on first use; calls the old server has are answered there."""
        if self.doors is None or served.server is None:
            return  # a component scaled to 0 here: its stopped server refuses, callers use NATS
        cid = served.component_id
        door = self.doors.get(cid)
        if door is not None:
            door.switch(served.server)
            return
        door = LocalRpcDoor(served.server, local_rpc.component_address(self.lattice, self.host_id, self.index, cid))
        if await door.start():
            self.doors[cid] = door

    async def _unload(self, cid: str, grace_s: float) -> None:
        served = self.served.pop(cid, None)
        door = self.doors.pop(cid, None) if self.doors else None
        if served is not None:
            await self._retire(served, grace_s, door)

    async def _retire(self, served: Served, grace_s: float, door: LocalRpcDoor | None = None) -> None:
        """Stop ``served``'s server (its calls drain) and close it; ``door``, when it is its last,
        closes around the drain."""
        stopping = served.server.stop(grace_s) if served.server else asyncio.sleep(0)
        await (door.close(stopping) if door is not None else stopping)
        served.invoker.close()
        give_back_freed_memory()

    async def _shutdown(self, grace_s: float) -> None:
        if self.handoff is not None:  # answers in progress are written first: they need the components
            await self.handoff.close(grace_s)
        doors = self.doors or {}
        await asyncio.gather(*(self._retire(s, grace_s, doors.get(cid)) for cid, s in self.served.items()),
                             return_exceptions=True)
        self.served.clear()
        if self.taps is not None:
            await self.taps.close()
        if self.imports:
            self._config_watch.cancel()
            await self.imports.stop()
        if self.rpc:
            await self.rpc.close()
        await goodbye(self.nc)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.telemetry.shutdown()
        self.engine.close()
        if self.metered_engine is not None:
            self.metered_engine.close()


def _as_rpc_error(served: Served, inv: Invocation, exc: Exception, timeout_s: float | None) -> RpcError:
    """A failed call as the ``RpcError`` its caller gets: the Wasm runtime's errors here, the
    rest as every way of serving a call maps them (``serving.error_of``)."""
    cid, operation = served.component_id, inv.operation
    if isinstance(exc, InvocationError):
        kind = exc.kind.value
        if kind == "timeout" and timeout_s is not None and inv.remaining_s() <= 0:
            # the caller's deadline, not the component's timeout: as the RPC client reports it
            return RpcError(f"call to {inv.target} {operation} timed out", ErrorCode.TIMEOUT, "timeout")
        return RpcError(f"{cid}: {exc.message}", _CODES.get(kind, ErrorCode.INVOCATION_FAILED), kind)
    if isinstance(exc, LookupError):  # unknown function
        return RpcError(f"{cid}: {exc}", ErrorCode.NOT_FOUND, "no_such_function")
    if isinstance(exc, (ValueError, TypeError)):  # arguments that do not fit the WIT types
        return RpcError(f"{cid}: bad arguments for {operation}: {exc}", ErrorCode.BAD_REQUEST, "bad_arguments")
    return error_of(exc, inv)


def _send(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def main() -> None:
    boot = json.loads(sys.stdin.readline())
    log_dir = boot.get("log_dir")
    # stdout is the host's channel: "stdout" logging goes to our stderr, which is the host's stdout
    setup_logging(f"worker-{boot.get('worker_index', 0)}", level=os.environ.get("TRELLIS_LOG_LEVEL", "INFO"),
                  log_dir=Path(log_dir) if log_dir else None, stream=sys.stderr)
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()  # with its stdin closing, it does not outlive the host
    worker = Worker(boot)
    gc_tuning.tune()
    try:
        import uvloop
        uvloop.run(worker.run())
    except ImportError:  # pragma: no cover
        asyncio.run(worker.run())


if __name__ == "__main__":
    main()
