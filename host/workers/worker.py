"""One worker process: loads components and serves their invocations from NATS.

The asyncio loop (NATS, RPC servers) runs in the main thread; Wasm runs in a
small thread pool so a call blocked in an import (a call to another component
or provider) does not stall the others. Commands from the host arrive as JSON
lines on stdin and are answered as JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.runtime import (
    CompileCache,
    EngineSettings,
    InvocationError,
    Invoker,
    Limits,
    Preopen,
    ReusePolicy,
    WasiGrants,
    load_component,
    make_engine,
)
from interfaces.connection import NatsSettings, connect
from interfaces.envelope import Invocation
from interfaces.errors import ErrorCode
from interfaces.rpc_client import RpcClient, RpcError
from interfaces.rpc_server import RpcServer
from interfaces import tracing
from interfaces.tracing import setup_tracing

from .imports import ImportRouter
from .local import LocalImports

log = logging.getLogger("trellis.worker")

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
    local: LocalImports | None = None
    config_names: tuple[str, ...] = ()
    config: dict[str, str] | None = None
    non_retryable: tuple[str, ...] = ()


class Worker:
    def __init__(self, boot: dict[str, Any]) -> None:
        self.boot = boot
        self.lattice: str = boot["lattice"]
        self.host_id: str = boot["host_id"]
        self.index: int = boot["worker_index"]
        self.threads: int = boot.get("threads", 8)
        # fuel metering costs every call: only components with a fuel budget run metered
        self.engine = make_engine(EngineSettings(consume_fuel=False))
        self.metered_engine: Any = None
        self.cache = CompileCache(boot.get("cache_dir"))
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="wasm")
        self.executor_size = self.threads
        # Instances are created and dropped one at a time: mapping and unmapping instance memory
        # from several threads of one process contends on its address space (TLB shootdowns).
        # Calls themselves run side by side, so a slow or hostile call does not hold up its
        # neighbours; processes (workers) are how a host uses more cores.
        self.lifecycle_lock = threading.Lock()
        self.served: dict[str, Served] = {}
        self.nc: Any = None
        self.rpc: RpcClient | None = None
        self.imports: ImportRouter | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        setup_tracing("trellis-worker")
        nats = NatsSettings(**self.boot["nats"])
        self.nc = await connect(nats, name=f"trellis-worker-{self.host_id[:8]}-{self.index}")
        self.rpc = RpcClient(self.nc, self.lattice, source=self.host_id)
        self.imports = ImportRouter(self.nc, self.lattice, self.rpc, self.loop)
        await self.imports.start()
        self._config_watch = asyncio.create_task(self._follow_config())
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
            return await self._load(cmd)
        if op == "unload":
            await self._unload(cmd["component_id"], cmd.get("grace_s", 10.0))
            return None
        if op == "scale":
            return await self._scale(cmd["component_id"], cmd["share"])
        if op == "stats":
            return {cid: {"share": s.share, **(s.server.stats if s.server else {})} for cid, s in self.served.items()}
        if op == "shutdown":
            self.boot["grace_s"] = cmd.get("grace_s", 10.0)
            stop.set()
            return None
        raise ValueError(f"unknown worker op {op!r}")

    async def _load(self, cmd: dict[str, Any]) -> dict[str, Any]:
        cid = cmd["component_id"]
        wasm = await asyncio.to_thread(Path(cmd["path"]).read_bytes)
        limits = Limits(**cmd.get("limits", {}))
        engine = self.engine
        if limits.fuel is not None:
            if self.metered_engine is None:
                self.metered_engine = make_engine()
            engine = self.metered_engine
        loaded = await asyncio.to_thread(load_component, engine, wasm, self.cache)
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
        served = Served(cid, loaded.digest, invoker, None, share, config_names=tuple(cmd.get("config", [])),
                        non_retryable=tuple(cmd.get("non_retryable", [])))
        served.config = await self._resolve_config(served.config_names)
        served.local = LocalImports(cid, lambda: served.config or {})
        if share > 0:
            served.server = self._server(cid, invoker, share, cmd.get("queue"), cmd.get("non_retryable", []))
            await served.server.start()
        self.served[cid] = served
        self._ensure_threads()
        if old is not None:  # an update: the new version already serves, the old one drains
            await self._retire(old, cmd.get("grace_s", 10.0))
        return {"digest": loaded.digest, "exports": loaded.describe()["exports"]}

    async def _resolve_config(self, names: tuple[str, ...]) -> dict[str, str]:
        if not names or self.imports is None:
            return {}
        return await self.imports.store.resolve_config(names)

    async def _follow_config(self) -> None:
        """Named configs change at run time: re-resolve what each component reads."""
        assert self.imports is not None
        from interfaces.store import ConfigChange

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

    def _server(self, cid: str, invoker: Invoker, share: int, queue: int | None,
                non_retryable: list[str] | tuple[str, ...] = ()) -> RpcServer:
        async def handle(inv: Invocation) -> Any:
            return await self._invoke(cid, invoker, inv)

        return RpcServer(self.nc, self.lattice, cid, handle, served_by=f"{self.host_id}/{self.index}",
                         max_concurrent=share, max_queue=queue if queue is not None else max(16, 4 * share),
                         non_retryable=frozenset(non_retryable))

    async def _invoke(self, cid: str, invoker: Invoker, inv: Invocation) -> Any:
        assert self.imports is not None
        served = self.served.get(cid)
        # calls this invocation makes are children of its server span (the current context here)
        handler = self.imports.handler_for(cid, inv, invoker.loaded, served.local if served else None,
                                           trace=tracing.inject())
        operation = inv.operation
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, invoker.invoke, operation, inv.args, handler)
        except InvocationError as exc:
            kind = exc.kind.value
            code = _CODES.get(kind, ErrorCode.INVOCATION_FAILED)
            raise RpcError(f"{cid}: {exc.message}", code, kind) from None
        except LookupError as exc:  # unknown function
            raise RpcError(f"{cid}: {exc}", ErrorCode.NOT_FOUND, "no_such_function") from None
        except (ValueError, TypeError) as exc:  # arguments that do not fit the WIT types
            raise RpcError(f"{cid}: bad arguments for {operation}: {exc}", ErrorCode.BAD_REQUEST, "bad_arguments") from None

    async def _scale(self, cid: str, share: int) -> None:
        served = self.served.get(cid)
        if served is None:
            raise ValueError(f"component {cid} is not loaded")
        if share == served.share:
            return
        old_server = served.server
        served.share = share
        self._ensure_threads()
        served.server = (self._server(cid, served.invoker, share, None, served.non_retryable)
                         if share > 0 else None)
        if served.server:
            await served.server.start()
        if old_server:
            await old_server.stop(10.0)

    async def _unload(self, cid: str, grace_s: float) -> None:
        served = self.served.pop(cid, None)
        if served is not None:
            await self._retire(served, grace_s)

    async def _retire(self, served: Served, grace_s: float) -> None:
        if served.server:
            await served.server.stop(grace_s)
        served.invoker.close()

    async def _shutdown(self, grace_s: float) -> None:
        await asyncio.gather(*(self._retire(s, grace_s) for s in self.served.values()), return_exceptions=True)
        self.served.clear()
        if self.imports:
            self._config_watch.cancel()
            await self.imports.stop()
        if self.rpc:
            await self.rpc.close()
        try:
            await asyncio.wait_for(self.nc.drain(), 5)
        except Exception:
            pass
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.engine.close()
        if self.metered_engine is not None:
            self.metered_engine.close()


def _send(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def main() -> None:
    logging.basicConfig(level=os.environ.get("TRELLIS_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s worker %(name)s: %(message)s")
    boot = json.loads(sys.stdin.readline())
    worker = Worker(boot)
    try:
        import uvloop
        uvloop.run(worker.run())
    except ImportError:  # pragma: no cover
        asyncio.run(worker.run())


if __name__ == "__main__":
    main()
