"""One worker process: loads components and serves their invocations from NATS.

The asyncio loop (NATS, RPC servers) runs in the main thread. Where each call
runs — on the loop, on a Wasm thread, nested in a calling component of this
worker, or over NATS — is :mod:`.dispatch`'s decision and :mod:`.calls` runs it.
What the worker serves is its :class:`~.registry.Registry`. The host commands it
over stdin/stdout (:mod:`.channel`, typed :mod:`.messages`); its boot message
carries everything it is configured with, its tuning included.

:class:`Worker` is a :class:`~trellis.kit.service.Service`: every background task
(config watch, idle reaper, handed connections, the command channel) belongs to
its task group and ends when it closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from trellis.host.runtime import (
    CompileCache,
    Invoker,
    Limits,
    Preopen,
    ReusePolicy,
    WasiGrants,
    make_engine,
    wasmtime_patches,
)
from trellis.host.runtime.engine import engine_settings
from trellis.host.runtime.parking import Parking, load_parkable, park_all
from trellis.host.runtime.wasi_http.outgoing import use_hub as use_stream_hub
from trellis.interfaces.connection import NatsSettings, connect, goodbye
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.logs import setup_logging
from trellis.interfaces.policy import PolicyClient, PolicySettings
from trellis.interfaces.rpc_client import RpcClient
from trellis.interfaces.rpc_server import RpcServer
from trellis.interfaces.secrets import SecretValue
from trellis.interfaces.tracing import setup_tracing
from trellis.kit import gc_tuning
from trellis.kit.freemem import give_back_freed_memory
from trellis.kit.meters import Telemetry
from trellis.kit.natsstream import StreamHub
from trellis.kit.service import Service
from trellis.samehost import local_rpc
from trellis.samehost.handoff import available as handoff_available
from trellis.samehost.local_rpc import LocalRpcClient, LocalRpcDoor

from . import channel, inline, natshttp
from .calls import Calls
from .colocated import Colocated
from .handoff import HandoffServer
from .imports import ImportRouter
from .local import LocalImports
from .messages import DEFAULT_GRACE_S, Boot, Command, Load, Metrics, Ready, Scale, Shutdown, Stats, Unload, Usage
from .metrics import worker_series
from .records import Observers
from .registry import Registry, Served, import_needs
from .slots import Slots
from .tally import CallTally
from .taps import Taps

log = logging.getLogger("trellis.worker")
#: how often warm instances past their max_idle_s are looked for and dropped (while there are any)
IDLE_SWEEP_S = 1.0
#: sweeps the idle sweep goes on making after its last call or load before it may sleep
SWEEP_GRACE = 2
#: after a failed config watch, the wait before watching again
CONFIG_RETRY_S = 0.5


class Worker(Service):
    name = "worker"

    def __init__(self, boot: Boot) -> None:
        super().__init__()
        self.boot = boot
        self.tuning = tuning = boot.tuning
        self.lattice = boot.lattice
        self.host_id = boot.host_id
        self.index = boot.worker_index
        self.served_by = f"{self.host_id}/{self.index}"
        # fuel metering costs every call: only components with a fuel budget run metered
        self.engine_settings = engine_settings(boot.instance_allocator, consume_fuel=False,
                                               profiler=tuning.wasm.profiler)
        self.engine = make_engine(self.engine_settings)
        self.metered_engine: Any = None
        self.cache = CompileCache(boot.cache_dir)
        #: idle components give their compiled code back (host/runtime/parking.py); only with a cache on disk
        self.parking = Parking(tuning.process.park_idle_s if self.cache.directory is not None else None)
        # Instances are created and dropped one at a time: mapping and unmapping instance memory
        # from several threads of one process contends on its address space (TLB shootdowns).
        # Calls themselves run side by side, so a slow or hostile call does not hold up its
        # neighbours; processes (workers) are how a host uses more cores. Re-entrant: an import
        # called while instantiating may run another component's instantiation nested (colocated).
        self.lifecycle_lock = threading.RLock()
        self.served = Registry()
        #: called with an InvocationRecord for every invocation this worker finishes (records.py)
        self.observers = Observers()
        #: what each component's calls cost here (tally.py), for metrics and ``trellis app usage``;
        #: tuning.process.metrics off (TRELLIS_METRICS=0): nothing is measured (no observer, no probe)
        self.tally = CallTally()
        if tuning.process.metrics:
            self.observers.add(self.tally)
        self.calls = Calls(self.host_id, self.index, boot.threads, inline.budget_s(tuning.calls),
                           tuning.process.metrics, self.observers)
        self.colocated: Colocated | None = (
            Colocated(self.served, self.calls, self.served_by, tuning.calls.local_calls_max_depth)
            if tuning.calls.local_calls else None)
        #: tuning.calls.http_active_max: the line handed HTTP requests wait in (handoff.py); None: no line
        self.http_gate = asyncio.Semaphore(tuning.calls.http_active_max) if tuning.calls.http_active_max else None
        self.nc: Any = None
        self.rpc: RpcClient | None = None
        self.streams: StreamHub | None = None
        self.imports: ImportRouter | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: HTTP connections handed here by the host's http-server (None: off)
        self.handoff: HandoffServer | None = None
        #: component id -> where this host's providers call it (local_rpc); None: switched off
        self.doors: dict[str, LocalRpcDoor] | None = None
        self.telemetry = Telemetry("trellis-worker", {"trellis.host_id": self.host_id,
                                                      "trellis.worker": str(self.index)})
        self.telemetry.producers.append(lambda: worker_series(self))
        #: spy records and traffic summaries, sent while someone watches (taps.py)
        self.taps: Taps | None = None
        #: how long calls may finish when the worker stops (the host's shutdown command says)
        self.grace_s = DEFAULT_GRACE_S
        self._background: list[asyncio.Task[None]] = []
        #: the idle sweep sleeps on this while nothing can become due; a call or a load wakes it
        self._sweep_wake = asyncio.Event()
        self._sweep_asleep = False
        self.observers.add(self._activity)
        self._stop = asyncio.Event()
        self._stop_reason = ""

    # --- lifecycle -------------------------------------------------------------------

    async def _start(self) -> None:
        self.loop = asyncio.get_running_loop()
        setup_tracing("trellis-worker")
        nats = NatsSettings(**self.boot.nats)
        self.nc = await connect(nats, name=f"trellis-worker-{self.host_id[:8]}-{self.index}")
        self.rpc = RpcClient(self.nc, self.lattice, source=self.host_id)
        # wasi:http bodies too large or too slow for one call travel on byte streams (docs/http.md)
        self.streams = await StreamHub(self.nc, self.lattice).start()
        use_stream_hub(self.streams)
        self.taps = self.calls.taps = Taps(self.nc, self.lattice, self.host_id, self.index, self.loop)
        await self.taps.start()
        self.observers.add(self.taps)
        self.imports = self.calls.imports = ImportRouter(self.nc, self.lattice, self.rpc, self.loop)
        policy = PolicySettings.from_dict(self.boot.policy)
        if policy.enabled:
            self.imports.policy = PolicyClient(self.nc, policy, self.boot.policy_requester)
        if self.colocated is not None:
            self.imports.colocated = self._colocated_call
        if self.tuning.calls.local_providers and handoff_available():
            self.imports.direct = LocalRpcClient(self.lattice, self.host_id)
            self.doors = {}  # and providers of this host call the components here without NATS
        await self.imports.start()
        self._background = [self.tasks.spawn(self._follow_config(), "config-watch"),
                            self.tasks.spawn(self._drop_idle_instances(), "idle-reaper")]
        if self.boot.handoff:
            self.handoff = HandoffServer(self)
            self.handoff.start()

    async def _close(self) -> None:
        for task in self._background:  # nothing new starts while the components drain
            task.cancel()
        if self.handoff is not None:  # answers in progress are written first: they need the components
            await self.handoff.close(self.grace_s)
        doors = self.doors or {}
        await asyncio.gather(*(self._retire(s, self.grace_s, doors.get(cid)) for cid, s in self.served.items()),
                             return_exceptions=True)
        self.served.clear()
        if self.taps is not None:
            await self.taps.close()
        if self.imports:
            await self.imports.stop()
        if self.rpc:
            await self.rpc.close()
        if self.streams is not None:
            use_stream_hub(None)
            await self.streams.close("the worker is stopping")
        if self.nc is not None:
            await goodbye(self.nc)
        self.calls.close()
        self.telemetry.shutdown()
        self.engine.close()
        if self.metered_engine is not None:
            self.metered_engine.close()

    def stop(self, reason: str) -> None:
        """Ask :func:`run` to close the worker (from a command, a signal or the channel's end)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    async def stopped(self) -> str:
        """Wait until the worker is asked to stop; why."""
        await self._stop.wait()
        return self._stop_reason

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """A background task of this worker (its task group's), unless the worker is closing."""
        try:
            self.tasks.spawn(coro, name)
        except RuntimeError:  # closed: the coroutine was closed unstarted
            log.debug("worker closing: %s not started", name)

    # --- commands from the host ------------------------------------------------------

    async def handle(self, cmd: Command) -> Any:
        """One command from the host (``messages.py``); its result is the answer's."""
        result: Any = None
        if isinstance(cmd, Load):
            result = await self.load(cmd)
        elif isinstance(cmd, Unload):
            await self.unload(cmd.component_id, cmd.grace_s)
        elif isinstance(cmd, Scale):
            await self.scale(cmd.component_id, cmd.share)
        elif isinstance(cmd, Stats):
            stats = self.served.stats(self.doors)
            for per_component in stats.values():
                per_component["sweep_asleep"] = self._sweep_asleep  # the worker's idle sweep waits for a call
            return stats
        elif isinstance(cmd, Usage):
            return self.served.usage(self.tally)
        elif isinstance(cmd, Metrics):
            return self.telemetry.snapshot()
        else:
            assert isinstance(cmd, Shutdown)
            self.grace_s = cmd.grace_s
            self.stop("the host asked")
            return None
        if self.handoff is not None:  # what it serves changed: providers learn what they may hand here
            self.handoff.changed()
        return result

    async def load(self, cmd: Load) -> dict[str, Any]:
        cid = cmd.component_id
        limits = Limits(**cmd.limits.model_dump())
        engine = self.engine
        if limits.fuel is not None:
            if self.metered_engine is None:
                self.metered_engine = make_engine(replace(self.engine_settings, consume_fuel=True))
            engine = self.metered_engine
        current = self.served.get(cid)
        if current is not None and current.invoker.engine is engine and cmd.digest \
                and current.digest == cmd.digest.removeprefix("sha256:"):
            loaded = current.invoker.loaded  # the same code (a start again, new config): its tables too
        else:  # from the compiled artifact when there is one (the .wasm is then never read); parkable
            loaded = await asyncio.to_thread(load_parkable, engine, Path(cmd.path), self.cache, cmd.digest or None,
                                             self.parking.after_s is not None)
        wasi = cmd.wasi
        grants = WasiGrants(env=wasi.env, preopens=tuple(Preopen(**p) for p in wasi.preopens),
                            inherit_stdout=wasi.inherit_stdio, inherit_stderr=wasi.inherit_stdio)
        invoker = Invoker(loaded, limits=limits, grants=grants, reuse=ReusePolicy(**cmd.reuse.model_dump()),
                          lifecycle_lock=self.lifecycle_lock)
        served = Served(cid, loaded.digest, invoker, None, cmd.share, app=cmd.app, config_names=tuple(cmd.config),
                        non_retryable=tuple(cmd.non_retryable))
        served.config = await self._resolve_config(served.config_names)
        secrets = {name: SecretValue.from_wire(v) for name, v in (cmd.secrets or {}).items()}
        served.local = LocalImports(cid, lambda: served.config or {}, secrets)
        served.needs_handler, served.lattice_imports = import_needs(loaded)
        served.inline = self.calls.inline_budget_s is not None and inline.eligible(grants)
        if cmd.share > 0:
            served.server, served.slots = self._server(served, cmd.share, cmd.queue)
            await served.server.start()
        old = self.served.put(served)
        self._sweep_wake.set()  # a new component: its parking clock starts
        await self._door_to(served)
        self.calls.ensure_threads(self.served.total_share())
        if old is not None:  # an update: the new version already serves, the old one drains
            await self._retire(old, cmd.grace_s)
        if self.parking.after_s is not None:  # its code is loaded here by its first call here
            await asyncio.to_thread(invoker.park)
        give_back_freed_memory()
        return {"digest": loaded.digest, "exports": loaded.describe()["exports"]}

    async def scale(self, cid: str, share: int) -> None:
        served = self.served.get(cid)
        if served is None:
            raise ValueError(f"component {cid} is not loaded")
        if share == served.share:
            return
        old_server = served.server
        served.share = share
        self.calls.ensure_threads(self.served.total_share())
        served.server, served.slots = self._server(served, share, None) if share > 0 else (None, None)
        if served.server:
            await served.server.start()
            await self._door_to(served)
        if old_server:
            await old_server.stop(DEFAULT_GRACE_S)

    async def unload(self, cid: str, grace_s: float) -> None:
        served = self.served.pop(cid)
        door = self.doors.pop(cid, None) if self.doors else None
        if served is not None:
            await self._retire(served, grace_s, door)

    # --- serving ---------------------------------------------------------------------

    def _server(self, served: Served, share: int, queue: int | None) -> tuple[RpcServer, Slots]:
        calls = self.calls

        async def handle(inv: Invocation) -> Any:
            if self.streams is not None and served.invoker.serves_wasi_http and natshttp.streams_in(inv):
                return await natshttp.serve(calls, self.streams, served, inv)  # bodies on byte streams
            return await calls.invoke(served, inv)

        assert self.loop is not None
        slots = Slots(share, self.loop)  # shared with co-located calls and handed HTTP requests
        server = RpcServer(self.nc, self.lattice, served.component_id, handle, served_by=self.served_by,
                           max_concurrent=share, max_queue=queue if queue is not None else max(16, 4 * share),
                           non_retryable=frozenset(served.non_retryable), admission=slots)
        return server, slots

    def _colocated_call(self, call: Invocation) -> Any:
        """For the import router, on a Wasm thread: run ``call`` here if its target is served here."""
        assert self.colocated is not None
        return self.colocated.call(call, self.nc.max_payload)

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

    async def _retire(self, served: Served, grace_s: float, door: LocalRpcDoor | None = None) -> None:
        """Stop ``served``'s server (its calls drain) and close it; ``door``, when it is its last,
        closes around the drain."""
        stopping = served.server.stop(grace_s) if served.server else asyncio.sleep(0)
        await (door.close(stopping) if door is not None else stopping)
        served.invoker.close()
        current = self.served.get(served.component_id)
        if current is None or current.invoker.loaded is not served.invoker.loaded:
            # its code goes now, not when the last reference to it does (a task, a closure)
            await asyncio.to_thread(served.invoker.loaded.park)
        give_back_freed_memory(collect_cycles=True)

    # --- upkeep ----------------------------------------------------------------------

    def _activity(self, record: Any) -> None:
        """Invocation observer (any thread): wake the idle sweep if it sleeps. One test per call."""
        if self._sweep_asleep:
            self._sweep_asleep = False
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._sweep_wake.set)

    def _sweep_pending(self) -> bool:
        """Whether the sweep has something that can become due: a warm instance it drops after
        ``max_idle_s`` (or one an inline call left), or a component not parked yet."""
        parking = self.parking.after_s is not None
        for served in self.served.values():
            inv = served.invoker
            if inv.closed:
                continue
            if inv.has_warm_instance and (inv.reuse.max_idle_s is not None or inv.has_orphans):
                return True
            if parking and inv.parkable and not inv.parked and not inv.live_instances:
                return True
        return False

    async def _drop_idle_instances(self) -> None:
        """Every second while there is something to do: warm instances idle past their component's
        ``max_idle_s`` are dropped, and components idle past ``tuning.process.park_idle_s`` give their
        compiled code back (``parking.py``). When nothing can become due (every component parked, no
        warm instance with a deadline) it sleeps until a call or a load wakes it: an idle worker is
        not woken every second for nothing."""
        assert self.loop is not None
        grace = SWEEP_GRACE
        while True:
            if grace <= 0 and not self._sweep_pending():
                self._sweep_wake.clear()
                self._sweep_asleep = True
                if not self._sweep_pending():  # (a call that ended meanwhile finds the flag set)
                    await self._sweep_wake.wait()
                self._sweep_asleep = False
                grace = SWEEP_GRACE
            if self._sweep_wake.is_set():
                self._sweep_wake.clear()
                grace = SWEEP_GRACE
            await asyncio.sleep(IDLE_SWEEP_S)
            grace -= 1
            await self._sweep()

    async def _sweep(self) -> None:
        assert self.loop is not None
        due = self.parking.due((cid, s.invoker) for cid, s in self.served.items())
        if due:
            try:
                self.parking.parked += len(await self.loop.run_in_executor(self.calls.executor, park_all, due))
            except RuntimeError:  # the executor is being replaced or shut down
                pass
        for served in self.served.values():
            inv = served.invoker
            # warm instances past max_idle_s, and instances an inline call could not drop at once
            # (fresh components too: else one lingers until the next call, and blocks parking)
            if inv.has_warm_instance and not inv.closed and (inv.reuse.max_idle_s is not None
                                                             or inv.has_orphans):
                try:
                    await self.loop.run_in_executor(self.calls.executor, inv.drop_idle)
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
                    for served in self.served.reading_config(change.name):
                        served.config = await self._resolve_config(served.config_names)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("config watch interrupted: %r", exc)
                await asyncio.sleep(CONFIG_RETRY_S)


async def run(boot: Boot) -> None:
    """Serve until the host says stop (a shutdown command, SIGTERM, or its end of the channel closing)."""
    worker = Worker(boot)
    gc_tuning.tune(boot.tuning.process.gc_threshold)  # what was built so far (modules, engine) is frozen
    await worker.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the host decides when we stop
    reader = await channel.stdin_reader()
    channel.send(Ready(pid=os.getpid()))

    async def commands() -> None:
        await channel.serve(reader, worker.handle)
        worker.stop("the host went away")

    worker.spawn(commands(), "commands")
    await worker.close(reason=await worker.stopped())


def main() -> None:
    # Unbuffered, a byte at a time: a buffered readline could take the host's first command with
    # the boot line, and the command channel (which reads the pipe itself) would never see it
    boot = Boot.model_validate_json(channel.read_boot_line())
    # stdout is the host's channel: "stdout" logging goes to our stderr, which is the host's stdout
    setup_logging(f"worker-{boot.worker_index}", level=os.environ.get("TRELLIS_LOG_LEVEL", "INFO"),
                  log_dir=Path(boot.log_dir) if boot.log_dir else None, stream=sys.stderr)
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()  # with its stdin closing, it does not outlive the host
    if boot.tuning.process.worker_nice:  # before any thread starts: each inherits it (niceness is per thread)
        try:
            os.nice(boot.tuning.process.worker_nice)
        except OSError as exc:  # pragma: no cover - raising it is always allowed
            log.warning("worker niceness not raised: %s", exc)
    wasm = boot.tuning.wasm
    wasmtime_patches.switch(hold_gil_on=wasm.hold_gil, lower_in_place_on=wasm.lower_in_place,
                            wasi_http_fast_on=wasm.wasi_http_fast, wasi_http_native_on=wasm.wasi_http_native,
                            wasi_http_native_state_on=wasm.wasi_http_native_state,
                            native_values_on=wasm.native_values, native_ticker_on=wasm.native_ticker,
                            wasm_hold_gil_on=wasm.wasm_hold_gil, lower_plain_on=wasm.lower_plain,
                            wasm_hold_gil_slice_ms=wasm.wasm_hold_gil_slice_ms)
    try:
        import uvloop
        uvloop.run(run(boot))
    except ImportError:  # pragma: no cover
        asyncio.run(run(boot))


if __name__ == "__main__":
    main()
