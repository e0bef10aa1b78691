"""1. Instantiate + call overhead: ``Invoker.invoke`` against raw wasmtime-py, in one process.

For each test component (the tiny WAT ``adder`` and the componentize-py
``greeter``), on the engine Trellis builds (``make_engine``: epoch
interruption and fuel on):

* raw fresh: ``Store`` + ``set_wasi`` + fuel and epoch deadline (the engine
  requires both) + ``linker.instantiate`` + call, by hand;
* Trellis fresh: ``Invoker.invoke`` with the default policy (a fresh instance per call);
* raw warm: one store and instance, re-armed (fuel, deadline) and called;
* Trellis warm: ``Invoker.invoke`` with ``ReusePolicy(max_invocations=2**62)``.

A second baseline runs raw fresh/warm on a plain engine (no fuel, no epoch
interruption), to show what the engine configuration itself costs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from trellis.host.runtime import CompileCache, Invoker, ReusePolicy, load_component, make_engine, wasmtime_patches
from trellis.host.runtime.engine import WASMTIME_VERSION

from ._context import BENCH_CACHE, CALLS, Context, component_path
from ._stats import per_call_us

_FUEL = 2**63 - 1


def _plain_component(engine: wasmtime.Engine, wasm: bytes, digest: str) -> wc.Component:
    """Compile for a plain engine once, cached beside the Trellis artifacts."""
    path = BENCH_CACHE / "plain" / f"{digest}-wasmtime-{WASMTIME_VERSION}.cwasm"
    if path.exists():
        try:
            return wc.Component.deserialize_file(engine, str(path))
        except wasmtime.WasmtimeError:
            path.unlink()
    comp = wc.Component(engine, wasm)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(comp.serialize()))
    tmp.replace(path)
    return comp


def _raw(engine: wasmtime.Engine, component: wc.Component, fn: str, args: list[Any],
         arm: Callable[[wasmtime.Store], None]) -> tuple[Callable[[], object], Callable[[], object]]:
    """(fresh, warm) closures doing by hand what the runtime does per call."""
    linker = wc.Linker(engine)
    linker.add_wasip2()
    index = component.get_export_index(fn)
    assert index is not None

    def fresh() -> object:
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        arm(store)
        instance = linker.instantiate(store, component)
        func = instance.get_func(store, index)
        assert func is not None
        return func(store, *args)

    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    arm(store)
    func = linker.instantiate(store, component).get_func(store, index)
    assert func is not None

    def warm() -> object:
        arm(store)
        return func(store, *args)

    return fresh, warm


def run(ctx: Context) -> None:
    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine()
    cache = CompileCache(BENCH_CACHE)
    ticks = engine.deadline_ticks(10.0)

    def arm(store: wasmtime.Store) -> None:
        store.set_fuel(_FUEL)
        store.set_epoch_deadline(ticks)

    plain_cfg = wasmtime.Config()
    plain_cfg.wasm_component_model = True
    plain = wasmtime.Engine(plain_cfg)

    counts = {  # (fresh calls per batch, warm calls per batch)
        "adder": ctx.pick((500, 2000), (2000, 5000)),
        "greeter": ctx.pick((30, 1000), (100, 3000)),
    }
    repeats = ctx.pick(6, 10)
    budget = ctx.pick(4.0, 15.0)
    for name, (fn, args) in CALLS.items():
        wasm = Path(component_path(name)).read_bytes()
        t = time.perf_counter()
        loaded = load_component(engine, wasm, cache)
        load_s = time.perf_counter() - t
        raw_fresh, raw_warm = _raw(engine.engine, loaded.component, fn, args, arm)
        plain_fresh, plain_warm = _raw(plain, _plain_component(plain, wasm, loaded.digest), fn, args, lambda s: None)
        inv_fresh = Invoker(loaded)
        inv_warm = Invoker(loaded, reuse=ReusePolicy(max_invocations=2**62))
        expected = raw_fresh()
        for f in (raw_warm, plain_fresh, plain_warm, lambda: inv_fresh.invoke(fn, args),
                  lambda: inv_warm.invoke(fn, args)):
            got = f()
            assert got == expected, (name, got, expected)
        n_fresh, n_warm = counts[name]
        m: dict[str, dict[str, float]] = {}
        # interleave Trellis and raw so drifting background load hits both alike
        for _ in range(2):
            for label, f, n in (
                ("raw_fresh", raw_fresh, n_fresh),
                ("trellis_fresh", lambda: inv_fresh.invoke(fn, args), n_fresh),
                ("raw_warm", raw_warm, n_warm),
                ("trellis_warm", lambda: inv_warm.invoke(fn, args), n_warm),
                ("plain_fresh", plain_fresh, n_fresh),
                ("plain_warm", plain_warm, n_warm),
            ):
                r = per_call_us(f, n, (repeats + 1) // 2, budget / 2)
                prev = m.get(label)
                if prev is None or r["us_per_call"] < prev["us_per_call"]:
                    m[label] = r
        inv_fresh.close()
        inv_warm.close()
        ctx.details[name] = {"load_s": round(load_s, 4), "cache": vars(cache.stats).copy(), **m,
                             "instantiations": {"trellis_fresh": inv_fresh.stats.instantiations,
                                                "trellis_warm": inv_warm.stats.instantiations}}
        us = {k: v["us_per_call"] for k, v in m.items()}
        ctx.row(f"{name}: instantiate + call (fresh instance)", "µs/call", us["trellis_fresh"], us["raw_fresh"],
                "raw wasmtime-py, same engine", overhead_us=round(us["trellis_fresh"] - us["raw_fresh"], 1),
                plain_engine_us=us["plain_fresh"])
        ctx.row(f"{name}: call on a reused instance", "µs/call", us["trellis_warm"], us["raw_warm"],
                "raw wasmtime-py, same engine", overhead_us=round(us["trellis_warm"] - us["raw_warm"], 1),
                plain_engine_us=us["plain_warm"])
    _reuse_under_threads(ctx, engine, cache)
    engine.close()


def _reuse_under_threads(ctx: Context, engine: Any, cache: CompileCache) -> None:
    """A reusing ``Invoker`` called from 8 threads at once, as a worker's pool calls it.

    ``Invoker`` keeps one warm instance; a call that finds it busy instantiates
    a fresh one. Counts how many calls paid for an instantiation.
    """
    from concurrent.futures import ThreadPoolExecutor

    fn, args = CALLS["greeter"]
    loaded = load_component(engine, Path(component_path("greeter")).read_bytes(), cache)
    out: dict[str, Any] = {}
    calls = ctx.pick(400, 2000)
    for label, threads, invokers in (("1 thread", 1, 1), ("8 threads", 8, 1), ("8 threads, 8 invokers", 8, 8)):
        # "8 invokers": each thread has its own warm instance, as a pool of warm instances would give
        invs = [Invoker(loaded, reuse=ReusePolicy(max_invocations=2**62)) for _ in range(invokers)]
        local = threading.local()
        handed = iter(invs)
        lock = threading.Lock()

        def call(_: int) -> object:
            inv = getattr(local, "inv", None)
            if inv is None:
                with lock:
                    inv = local.inv = next(handed, invs[0])
            return inv.invoke(fn, args)

        with ThreadPoolExecutor(threads) as pool:
            t = time.perf_counter()
            list(pool.map(call, range(calls)))
            elapsed = time.perf_counter() - t
        out[label] = {"calls": calls, "instantiations": sum(i.stats.instantiations for i in invs),
                      "calls_per_s": round(calls / elapsed)}
        for i in invs:
            i.close()
    ctx.details["greeter_reuse_under_threads"] = out
    one, many, pooled = out["1 thread"], out["8 threads"], out["8 threads, 8 invokers"]
    ctx.row("greeter, reuse policy, one Invoker called from 8 threads: calls that instantiate", "%",
            round(100 * many["instantiations"] / many["calls"], 1),
            round(100 * one["instantiations"] / one["calls"], 1), "the same Invoker from 1 thread")
    ctx.row("greeter, reuse policy, 8 threads: calls/s with one Invoker (one warm slot)", "calls/s",
            many["calls_per_s"], pooled["calls_per_s"], "one warm instance per thread (what a pool gives)",
            one_thread_calls_per_s=one["calls_per_s"])
