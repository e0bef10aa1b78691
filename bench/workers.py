"""4. Throughput with 1 vs N worker processes, fresh and reuse, at concurrency 20.

For W in (1, cores): a `trellis host --workers W` serving, each with
``max_instances=20`` (split across the workers):

* ``adder`` / ``greeter``: a fresh instance per call (the default);
* ``adder-reuse`` / ``greeter-reuse``: ``reuse.max_invocations = 1e6``;
* ``greeter-1`` / ``greeter-reuse-1`` (full run only, diagnostic):
  ``max_instances = W``, one call at a time per worker;
* (full run only, diagnostic) the main configurations on one worker started
  with ``--worker-threads 1``: Wasm on one thread instead of a pool of 8.

Quick runs leave out ``adder-reuse`` and the diagnostics.

Baseline for each: W **minimal workers** (bench/_responder.py ``invoke``:
nats-py + inline ``Invoker``, the same reuse policy) in the component's queue
group, called by the same client. All hosts and baselines run at once (idle
ones cost nothing) and are measured in alternating windows, so background
load on a shared machine falls on all of them alike. Also recorded: the in-process ceiling (raw
wasmtime-py calls/s × W, from ``invoke``'s kind of measurement) and the
prototype's figures from the issue (greeter: ~640 req/s fresh with one worker,
~1,100 with two, ~5,400 with reuse).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from trellis.host.runtime import CompileCache, load_component, make_engine, wasmtime_patches
from trellis.interfaces.client import LatticeClient

from ._context import BENCH_CACHE, CALLS, Context, component_path
from ._load import alternate
from ._procs import Processes, new_lattice
from ._stats import per_call_us

CONCURRENCY = 20
REUSE = 1_000_000
PROTOTYPE = {("greeter", 1, "fresh"): 640, ("greeter", 2, "fresh"): 1100, ("greeter", 1, "reuse"): 5400}


def _in_process_rates(quick: bool) -> dict[str, float]:
    """Raw wasmtime-py calls/s on one thread, fresh and reused, for each component."""
    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine()
    cache = CompileCache(BENCH_CACHE)
    ticks = engine.deadline_ticks(10.0)
    out: dict[str, float] = {}
    for comp, (fn, args) in CALLS.items():
        loaded = load_component(engine, Path(component_path(comp)).read_bytes(), cache)
        linker = wc.Linker(engine.engine)
        linker.add_wasip2()
        idx = loaded.component.get_export_index(fn)
        assert idx is not None

        def new() -> tuple[wasmtime.Store, Any]:
            store = wasmtime.Store(engine.engine)
            store.set_wasi(wasmtime.WasiConfig())
            store.set_fuel(2**63 - 1)
            store.set_epoch_deadline(ticks)
            return store, linker.instantiate(store, loaded.component).get_func(store, idx)

        def fresh() -> object:
            store, f = new()
            return f(store, *args)

        store, f = new()

        def warm() -> object:
            store.set_fuel(2**63 - 1)
            store.set_epoch_deadline(ticks)
            return f(store, *args)

        n_fresh = 300 if comp == "adder" else 20
        out[f"{comp}/fresh"] = 1e6 / per_call_us(fresh, n_fresh, 4 if quick else 8,
                                                 0.5 if quick else 2.0)["us_per_call"]
        out[f"{comp}/reuse"] = 1e6 / per_call_us(warm, 300, 4 if quick else 8, 0.5 if quick else 2.0)["us_per_call"]
    engine.close()
    return {k: round(v) for k, v in out.items()}


def _serving_cpu(res: dict[str, Any]) -> float:
    """CPU µs per call of the serving processes (host + workers, or the minimal workers)."""
    per = res.get("cpu", {}).get("cpu_us_per_call", {})
    return round(sum(v for k, v in per.items() if k.startswith(("worker", "host", "minimal"))), 1)


def _plural(w: int) -> str:
    return f"{w} worker{'s' if w > 1 else ''}"


async def run(ctx: Context) -> None:
    cores = os.cpu_count() or 1
    counts = sorted({1, cores})
    window = ctx.pick(1.0, 4.0)
    rounds = ctx.pick(2, 3)
    main = [("adder", "adder", "fresh"), ("greeter", "greeter", "fresh"), ("greeter-reuse", "greeter", "reuse")]
    if not ctx.quick:
        main.insert(1, ("adder-reuse", "adder", "reuse"))
    diag = [] if ctx.quick else [("greeter-1", "greeter", "fresh"), ("greeter-reuse-1", "greeter", "reuse")]
    ceiling = _in_process_rates(ctx.quick)
    ctx.details["in_process_calls_per_s_one_thread"] = ceiling
    procs = Processes(ctx.workdir)
    results: dict[str, Any] = {}
    try:
        nats = procs.nats()
        assert nats.proc is not None
        lattice = new_lattice()
        me = {"client": os.getpid(), "nats-server": nats.proc.pid}
        # hosts: label -> (host, workers, max_instances for the diagnostics)
        hosts: dict[str, tuple[Any, int]] = {}
        for w in counts:
            hosts[f"w{w}"] = (procs.host(nats.url, lattice, workers=w, label=f"host-w{w}"), w)
        if not ctx.quick:
            hosts["w1-threads1"] = (procs.host(nats.url, lattice, workers=1, label="host-w1-t1", threads=1), 1)
        roles: dict[str, dict[str, int]] = {}
        for label, (h, _w) in hosts.items():
            roles[f"trellis-{label}"] = me | {"host": h.proc.pid} | {
                f"worker-{i}": p for i, p in enumerate(h.wait_workers())}
        wanted = [(cid, comp, mode, w) for cid, comp, mode in main for w in counts for _ in range(w)]
        started = procs.responders(*(
            ["invoke", nats.url, lattice, f"{cid}-min{w}", str(component_path(comp)), str(BENCH_CACHE),
             str(REUSE if mode == "reuse" else 1)] for cid, comp, mode, w in wanted))
        minimal_pids: dict[str, list[int]] = {}
        for (cid, _, _, w), proc in zip(wanted, started, strict=True):
            minimal_pids.setdefault(f"{cid}-min{w}", []).append(proc.pid)
        async with LatticeClient(nats.url, lattice) as c:
            for label, (h, w) in hosts.items():
                for cid, comp, mode in main + (diag if label in (f"w{n}" for n in counts) else []):
                    spec: dict[str, Any] = {"reuse": {"max_invocations": REUSE}} if mode == "reuse" else {}
                    await c.start_component(str(component_path(comp)), f"{cid}-{label}", host_id=h.id,
                                            max_instances=w if (cid, comp, mode) in diag else CONCURRENCY,
                                            timeout_s=180, **spec)
            for cid, comp, mode in main + diag:
                fn, args = CALLS[comp]

                def one(target: str, fn: str = fn, args: list[Any] = args) -> Any:
                    return lambda: c.call(target, fn, *args, timeout_s=30)

                targets = {}
                for label in hosts:
                    if (cid, comp, mode) in diag and label not in (f"w{n}" for n in counts):
                        continue
                    targets[f"trellis-{label}"] = (one(f"{cid}-{label}"), roles[f"trellis-{label}"])
                    if (cid, comp, mode) in main and label in (f"w{n}" for n in counts):
                        w = hosts[label][1]
                        targets[f"minimal-w{w}"] = (one(f"{cid}-min{w}"), me | {
                            f"minimal-{i}": p for i, p in enumerate(minimal_pids[f"{cid}-min{w}"])})
                for call, _ in targets.values():
                    await call()
                res = await alternate(targets, CONCURRENCY, window, rounds=rounds, warmup_s=0.3)
                results[cid] = {"component": comp, "mode": mode, **res}
                print(f"   {cid:16s} " + "  ".join(f"{k} {v['rps']:7.0f}/s" for k, v in res.items()), flush=True)
        ctx.details["runs"] = results
    finally:
        procs.close()

    min_is = "W minimal workers (nats-py + inline Invoker), same client"
    for cid, comp, mode in main:
        r = results[cid]
        for w in counts:
            t, m = r[f"trellis-w{w}"], r[f"minimal-w{w}"]
            ctx.row(f"{comp}, {mode}, {_plural(w)}, concurrency {CONCURRENCY}", "calls/s", t["rps"], m["rps"], min_is,
                    in_process_ceiling=ceiling[f"{comp}/{mode}"] * w, prototype=PROTOTYPE.get((comp, w, mode)),
                    p50_us=t["latency"].get("p50_us"), mean_rps=t["rps_mean"], baseline_mean_rps=m["rps_mean"],
                    other_cores=t.get("cpu", {}).get("cores_used", {}).get("other"))
        for w in counts:
            ctx.row(f"{comp}, {mode}, {_plural(w)}: serving-side CPU per call", "CPU µs",
                    _serving_cpu(r[f"trellis-w{w}"]), _serving_cpu(r[f"minimal-w{w}"]), "minimal workers' CPU per call")
        if len(counts) > 1:
            lo, hi = f"w{counts[0]}", f"w{counts[-1]}"
            ctx.row(f"{comp}, {mode}: scaling {counts[-1]} vs 1 worker", "×",
                    round(r[f"trellis-{hi}"]["rps"] / r[f"trellis-{lo}"]["rps"], 2),
                    round(r[f"minimal-{hi}"]["rps"] / r[f"minimal-{lo}"]["rps"], 2), "minimal workers' scaling")
        if "trellis-w1-threads1" in r:
            t1, t8 = r["trellis-w1-threads1"], r["trellis-w1"]
            ctx.row(f"{comp}, {mode}, 1 worker, --worker-threads 1 (Wasm on one thread)", "calls/s",
                    t1["rps"], t8["rps"], "the same with the default 8 threads",
                    serving_cpu_us=_serving_cpu(t1), baseline_serving_cpu_us=_serving_cpu(t8))
    for cid, _comp, mode in diag:
        full = results["greeter" if mode == "fresh" else "greeter-reuse"]
        for w in counts:
            ctx.row(f"greeter, {mode}, {_plural(w)}, max_instances={w} (one call at a time per worker)", "calls/s",
                    results[cid][f"trellis-w{w}"]["rps"], full[f"trellis-w{w}"]["rps"],
                    f"the same with max_instances={CONCURRENCY}")
