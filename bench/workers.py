"""4. Throughput with 1 vs N worker processes, fresh and reuse, at concurrency 20.

For W in (1, cores): one `trellis host --workers W` serving, each with
``max_instances=20`` (split across the workers):

* ``adder`` / ``greeter``: a fresh instance per call (the default);
* ``adder-reuse`` / ``greeter-reuse``: ``reuse.max_invocations = 1e6``;
* ``greeter-1`` / ``greeter-reuse-1`` (full run only, diagnostic):
  ``max_instances = W``, one call at a time per worker.

Quick runs leave out ``adder-reuse`` and the diagnostics.

Baseline for each: W **minimal workers** (bench/_responder.py ``invoke``:
nats-py + inline ``Invoker``, the same reuse policy) in the component's queue
group, called by the same client. Also recorded: the in-process ceiling (raw
wasmtime-py calls/s × W, from ``invoke``'s kind of measurement) and the
prototype's figures from the issue (greeter: ~640 req/s fresh with one worker,
~1,100 with two, ~5,400 with reuse).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from host.runtime import CompileCache, load_component, make_engine
from interfaces.client import LatticeClient

from ._context import BENCH_CACHE, CALLS, Context, component_path
from ._load import alternate
from ._procs import Processes, new_lattice
from ._stats import per_call_us

CONCURRENCY = 20
REUSE = 1_000_000
PROTOTYPE = {("greeter", 1, "fresh"): 640, ("greeter", 2, "fresh"): 1100, ("greeter", 1, "reuse"): 5400}


def _in_process_rates(quick: bool) -> dict[str, float]:
    """Raw wasmtime-py calls/s on one thread, fresh and reused, for each component."""
    engine = make_engine()
    cache = CompileCache(BENCH_CACHE)
    ticks = engine.deadline_ticks(10.0)
    out: dict[str, float] = {}
    for comp, (fn, args) in CALLS.items():
        loaded = load_component(engine, Path(component_path(comp)).read_bytes(), cache)
        linker = wc.Linker(engine.engine)
        linker.add_wasip2()
        idx = loaded.component.get_export_index(fn)

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
        out[f"{comp}/fresh"] = 1e6 / per_call_us(fresh, n_fresh, 4 if quick else 8, 0.5 if quick else 2.0)["us_per_call"]
        out[f"{comp}/reuse"] = 1e6 / per_call_us(warm, 300, 4 if quick else 8, 0.5 if quick else 2.0)["us_per_call"]
    engine.close()
    return {k: round(v) for k, v in out.items()}


async def run(ctx: Context) -> None:
    cores = os.cpu_count() or 1
    counts = sorted({1, cores})
    window = ctx.pick(1.0, 4.0)
    # (component id, test component, mode, max_instances per host, with a minimal-worker baseline)
    main = [("adder", "adder", "fresh"), ("greeter", "greeter", "fresh"), ("greeter-reuse", "greeter", "reuse")]
    if not ctx.quick:
        main.insert(1, ("adder-reuse", "adder", "reuse"))
    ceiling = _in_process_rates(ctx.quick)
    ctx.details["in_process_calls_per_s_one_thread"] = ceiling
    procs = Processes(ctx.workdir)
    results: dict[str, Any] = {}
    try:
        nats = procs.nats()
        assert nats.proc is not None
        for w in counts:
            lattice = new_lattice()
            t_setup = time.perf_counter()
            host = procs.host(nats.url, lattice, workers=w, label=f"host-w{w}")
            worker_pids = host.wait_workers()
            configs = [(cid, comp, mode, CONCURRENCY, True) for cid, comp, mode in main]
            if not ctx.quick:  # one call at a time per worker: the single warm slot always free
                configs += [("greeter-1", "greeter", "fresh", w, False), ("greeter-reuse-1", "greeter", "reuse", w, False)]
            started = procs.responders(*(
                ["invoke", nats.url, lattice, f"{cid}-min", str(component_path(comp)), str(BENCH_CACHE),
                 str(REUSE if mode == "reuse" else 1)]
                for cid, comp, mode, _, base in configs if base for _ in range(w)))
            async with LatticeClient(nats.url, lattice) as c:
                for cid, comp, mode, max_inst, _ in configs:
                    spec: dict[str, Any] = {"reuse": {"max_invocations": REUSE}} if mode == "reuse" else {}
                    await c.start_component(str(component_path(comp)), cid, max_instances=max_inst,
                                            host_id=host.id, timeout_s=180, **spec)
                ctx.details[f"setup_s_w{w}"] = round(time.perf_counter() - t_setup, 1)
                roles_base = {"client": os.getpid(), "nats-server": nats.proc.pid}
                trellis_roles = roles_base | {"host": host.proc.pid} | {f"worker-{i}": p for i, p in enumerate(worker_pids)}
                for cid, comp, mode, max_inst, base in configs:
                    fn, args = CALLS[comp]

                    def one(target: str) -> Any:
                        return lambda: c.call(target, fn, *args, timeout_s=30)

                    targets = {"trellis": (one(cid), trellis_roles)}
                    if base:
                        targets["minimal"] = (one(f"{cid}-min"), roles_base)
                    for t, _ in targets.values():
                        await t()
                    res = await alternate(targets, CONCURRENCY, window, rounds=2, warmup_s=0.3)
                    res.update(workers=w, component=comp, mode=mode, max_instances=max_inst)
                    results[f"{cid}/w{w}"] = res
                    print(f"   w={w} {cid:16s} trellis {res['trellis']['rps']:8.0f}/s"
                          + (f"   minimal {res['minimal']['rps']:8.0f}/s" if base else ""), flush=True)
            for p in started:
                procs.stop(p)
            procs.stop(host)
        ctx.details["runs"] = results
    finally:
        procs.close()

    min_is = "W minimal workers (nats-py + inline Invoker), same client"
    for cid, comp, mode in main:
        for w in counts:
            r = results[f"{cid}/w{w}"]
            ctx.row(f"{comp}, {mode}, {w} worker{'s' if w > 1 else ''}, concurrency {CONCURRENCY}", "calls/s",
                    r["trellis"]["rps"], r["minimal"]["rps"], min_is,
                    in_process_ceiling=ceiling[f"{comp}/{mode}"] * w, prototype=PROTOTYPE.get((comp, w, mode)),
                    p50_us=r["trellis"]["latency"].get("p50_us"),
                    cpu_us_per_call=r["trellis"].get("cpu", {}).get("cpu_us_per_call_total"),
                    other_cores=r["trellis"].get("cpu", {}).get("cores_used", {}).get("other"))
        if len(counts) > 1:
            one, many = results[f"{cid}/w{counts[0]}"], results[f"{cid}/w{counts[-1]}"]
            ctx.row(f"{comp}, {mode}: scaling {counts[-1]} vs 1 worker", "×",
                    round(many["trellis"]["rps"] / one["trellis"]["rps"], 2),
                    round(many["minimal"]["rps"] / one["minimal"]["rps"], 2), "minimal workers' scaling")
    if not ctx.quick:
        for w in counts:
            for cid, mode in (("greeter-1", "fresh"), ("greeter-reuse-1", "reuse")):
                r = results[f"{cid}/w{w}"]
                full = results[f"{'greeter' if mode == 'fresh' else 'greeter-reuse'}/w{w}"]
                ctx.row(f"greeter, {mode}, {w} worker{'s' if w > 1 else ''}, max_instances={w} (one call at a "
                        "time per worker)", "calls/s", r["trellis"]["rps"], full["trellis"]["rps"],
                        f"Trellis with max_instances={CONCURRENCY}")
