"""A reused request's CPU in one process: the handoff path of a worker, without sockets.

``python -m bench.http.inproc [--n N] [--rounds R] [--fresh] [--profile OUT]``

Wires what a worker does with a request on a connection the http-server handed it
(``HttpConnection`` → ``Listener`` → ``LocalCaller`` → ``Calls`` → ``Invoker``, with the
worker's observers: the call tally and an activity observer) around the benchmark's
component (``bench/components/order-trellis``), feeds ``POST /orders`` as wrk sends it to a
transport that keeps what is written, and prints the CPU per request (``process_time``),
median of ``R`` rounds of ``N`` requests. What it leaves out: the socket's ``recv``/``send``
and the event loop's ``select`` (each request is read on a loop turn of its own, as from a
socket). ``BENCH_INPROC_AB=PYTHONPATH=DIR`` is run by the caller as
two processes alternately (see the docs); ``--profile OUT`` writes a cProfile of one round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from typing import Any

from trellis.host.runtime import CompileCache, Invoker, ReusePolicy, load_component, make_engine, wasmtime_patches
from trellis.host.runtime.engine import engine_settings
from trellis.host.workers import inline
from trellis.host.workers.calls import Calls
from trellis.host.workers.handoff import LocalCaller
from trellis.host.workers.local import LocalImports
from trellis.host.workers.records import Observers
from trellis.host.workers.registry import Registry, Served, import_needs
from trellis.host.workers.slots import Slots
from trellis.host.workers.tally import CallTally
from trellis.httpfront.config import RouteConfig, ServerConfig
from trellis.httpfront.listener import Listener
from trellis.httpfront.protocol import HttpConnection
from trellis.httpfront.routes import Route, RouteTable
from trellis.kit import gc_tuning

from .._context import BENCH_CACHE
from .load import BODY
from .tools import build_trellis_component

REQUEST = (b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY.encode()))


class _Transport:
    """Keeps nothing; wakes the waiting request loop when a response is written."""

    def __init__(self) -> None:
        self.writes = 0
        self.done: asyncio.Future[None] | None = None
        self.last = b""

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: return False
    def get_extra_info(self, *_: Any) -> None: return None
    def can_write_eof(self) -> bool: return False


class _Worker:
    """What ``LocalCaller`` reads of a worker."""

    def __init__(self, served: Registry, calls: Calls) -> None:
        self.served = served
        self.calls = calls
        self.nc = None
        self.lattice = "default"
        self.http_gate = None  # TRELLIS_HTTP_ACTIVE_MAX unset: no line before the instance


async def _setup(fresh: bool) -> tuple[HttpConnection, _Transport]:
    wasmtime_patches.apply()
    wasm = _tuning_wasm()  # the switches a worker sets from its environment (TRELLIS_NATIVE_VALUES=0, ...)
    wasmtime_patches.switch(hold_gil_on=wasm.hold_gil, lower_in_place_on=wasm.lower_in_place,
                            wasi_http_fast_on=wasm.wasi_http_fast, wasi_http_native_on=wasm.wasi_http_native,
                            wasi_http_native_state_on=wasm.wasi_http_native_state, native_values_on=wasm.native_values,
                            native_ticker_on=wasm.native_ticker, wasm_hold_gil_on=wasm.wasm_hold_gil,
                            lower_plain_on=wasm.lower_plain,
                            wasm_hold_gil_slice_ms=wasm.wasm_hold_gil_slice_ms)
    engine = make_engine(engine_settings(consume_fuel=False))  # as a worker's, for components without fuel
    wasm = build_trellis_component().read_bytes()
    loaded = load_component(engine, wasm, CompileCache(BENCH_CACHE))
    reuse = ReusePolicy() if fresh else ReusePolicy(max_invocations=2**62, max_warm=20)
    invoker = Invoker(loaded, reuse=reuse, lifecycle_lock=threading.RLock())
    cid = "order"
    served = Served(cid, loaded.digest, invoker, None, 20, app="bench")
    served.local = LocalImports(cid, lambda: {}, {})
    served.needs_handler, served.lattice_imports = import_needs(loaded)
    served.needs_handler = False  # no import router here: a call rerouted to a thread (a first call past
    # the inline budget on a loaded machine) gets deny_all; this component imports nothing it would call
    served.inline = True
    served.slots = Slots(20, asyncio.get_running_loop())
    registry = Registry()
    registry.put(served)
    observers = Observers()
    metrics = os.environ.get("TRELLIS_METRICS", "1") != "0"
    if metrics:
        observers.add(CallTally())
    last: list[float] = [0.0]
    observers.add(lambda record: last.__setitem__(0, time.monotonic()))  # the worker's _activity
    calls = Calls("host", 0, 2, inline.budget_s(_tuning()), metrics, observers)
    caller = LocalCaller(_Worker(registry, calls), "provider")  # type: ignore[arg-type]  # the fields it reads
    route = Route(("bench", cid, "default"), cid, "default", RouteConfig(address=("127.0.0.1", 8080)))
    listener = Listener(("127.0.0.1", 8080), RouteTable([route]), caller, ServerConfig())
    conn = HttpConnection(listener)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]  # what the connection uses of one
    gc_tuning.tune(gc_tuning.threshold_from_env())  # as a worker does once started
    return conn, transport


def _tuning() -> Any:
    from trellis.host.tuning import Tuning

    return Tuning.from_env().calls


def _tuning_wasm() -> Any:
    from trellis.host.tuning import Tuning

    return Tuning.from_env().wasm


async def _round(conn: HttpConnection, transport: _Transport, n: int) -> float:
    loop = asyncio.get_running_loop()
    c0 = time.process_time()
    for _ in range(n):
        transport.done = loop.create_future()
        loop.call_soon(conn.data_received, REQUEST)  # as the socket's reader callback does, on a loop turn
        await transport.done
    return (time.process_time() - c0) / n * 1e6


class _Canned:
    """A caller that answers at once: the front's own cost (``--layer front``)."""

    new_id = None

    async def call(self, *_: Any, **__: Any) -> Any:
        return {"status": 201, "headers": [("content-type", b"application/json")], "body": b"{}" * 60}


async def _invoke_round(invoker: Invoker, n: int) -> float:
    record = {"method": "POST", "path-with-query": "/orders", "headers": [["host", b"127.0.0.1:8080"],
              ["content-type", b"application/json"], ["content-length", str(len(BODY)).encode()]],
              "body": BODY.encode()}
    c0 = time.process_time()
    for _ in range(n):
        invoker.invoke("trellis:http/incoming-handler@0.1.0.handle", [record])
    return (time.process_time() - c0) / n * 1e6


async def main(n: int, rounds: int, fresh: bool, profile: str | None, layer: str) -> None:
    conn, transport = await _setup(fresh)
    if layer == "front":
        conn.listener.caller = _Canned()
    if layer == "invoke":
        served = conn.listener.caller.worker.served.get("order")  # type: ignore[attr-defined]  # LocalCaller
        figures = [await _invoke_round(served.invoker, n) for _ in range(rounds)]
        print(f"{statistics.median(figures):.1f} CPU-us/call (invoke, median of {rounds}x{n}): "
              + " ".join(f"{f:.0f}" for f in figures), flush=True)
        return
    await _round(conn, transport, 200)  # warm: the instance, the caches
    assert transport.last.startswith(b"HTTP/1.1 201"), transport.last[:200]
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        await _round(conn, transport, n)
        prof.disable()
        prof.dump_stats(profile)
    figures = [await _round(conn, transport, n) for _ in range(rounds)]
    print(f"{statistics.median(figures):.1f} CPU-us/request (median of {rounds}x{n}): "
          + " ".join(f"{f:.0f}" for f in figures), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--profile")
    parser.add_argument("--layer", choices=("full", "front", "invoke"), default="full",
                        help="full: the whole path; front: the HTTP front with a caller that answers at once; "
                             "invoke: Invoker.invoke alone with the request's record")
    args = parser.parse_args()
    try:  # the loop a worker runs (host/workers/worker.py)
        import uvloop
    except ImportError:
        asyncio.run(main(args.n, args.rounds, args.fresh, args.profile, args.layer))
    else:
        uvloop.run(main(args.n, args.rounds, args.fresh, args.profile, args.layer))
