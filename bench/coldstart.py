"""3. Cold start from zero: `trellis start component` to the first successful call.

For the componentize-py greeter, on a `trellis host` with a fresh state
directory (compile cache cold), then on a host restarted with the same state
directory (compile cache warm; it must not recompile): the time from
``LatticeClient.start_component`` (which waits for the ``component_scaled``
event) to the first successful ``greet`` call, split into start→event and
event→first answer. Run with 1 and N workers (full) or N workers (quick): each
worker loads the component itself.

Baseline: raw wasmtime-py in a fresh process (bench/_raw_cold.py): compile
(cold) or deserialize the artifact (warm), instantiate, call; timed inside
the process, imports excluded. ``--quick`` takes the cold baseline (a
compile of tens of seconds) from the last full run's results instead of
compiling again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError

from ._context import CALLS, Context, component_path, ensure_compiled
from ._machine import CpuMeter
from ._procs import BENCH_ENV, Processes, new_lattice


def _artifacts(state: Path) -> dict[str, int]:
    """Compiled artifacts in a host's state directory: name -> mtime (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in sorted((state / "compiled").glob("*.cwasm"))}


def _raw(wasm: Path, cwasm: Path, mode: str) -> dict[str, float]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bench._raw_cold", str(wasm), str(cwasm), mode],
                         capture_output=True, text=True, timeout=300, env={**os.environ, **BENCH_ENV})
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"raw cold start failed: {out.stderr[-1000:]}")
    return {**{k: round(v, 4) for k, v in json.loads(out.stdout).items()}, "process_wall_s": round(wall, 3)}


def _previous_raw_cold() -> dict[str, Any] | None:
    """The raw compile baseline of the last full run, if any (``--quick`` reuses it)."""
    path = Path(__file__).resolve().parent / "results" / "coldstart.json"
    try:
        prev = json.loads(path.read_text())["details"]["raw"]["cold"]
    except (OSError, ValueError, KeyError):
        return None
    return {**prev, "source": "bench/results/coldstart.json (last full run)"}


def _raw_warm_from_bench_cache(wasm: Path, workdir: Path) -> dict[str, float]:
    """Warm raw baseline without compiling: serialize the bench cache's artifact for a plain process."""
    from trellis.host.runtime import CompileCache, load_component, make_engine, wasmtime_patches

    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine()
    comp = load_component(engine, wasm.read_bytes(), CompileCache(ensure_compiled())).component
    cwasm = workdir / "raw.cwasm"
    cwasm.write_bytes(bytes(comp.serialize()))
    engine.close()
    return _raw(wasm, cwasm, "warm")


async def _start_and_call(nats_url: str, lattice: str, host_id: str, wasm: Path,
                          roles: dict[str, int]) -> dict[str, Any]:
    fn, args = CALLS["greeter"]
    async with LatticeClient(nats_url, lattice) as c:
        with CpuMeter(roles) as meter:
            t0 = time.perf_counter()
            await c.start_component(str(wasm), "greeter", host_id=host_id, timeout_s=300)
            t1 = time.perf_counter()
            failures = 0
            while True:
                try:
                    result = await c.call("greeter", fn, *args, timeout_s=30)
                    break
                except RpcError:
                    failures += 1
                    if time.perf_counter() - t1 > 60:
                        raise
            t2 = time.perf_counter()
        assert result == "Hello, world!", result
        return {"start_to_event_s": round(t1 - t0, 4), "event_to_first_call_s": round(t2 - t1, 4),
                "start_to_first_call_s": round(t2 - t0, 4), "failed_first_calls": failures,
                "rpc_stats": dict(c.rpc.stats),
                "cpu_s": {k: round(v, 2) for k, v in meter.used_s.items()}}


async def run(ctx: Context) -> None:
    wasm = Path(component_path("greeter"))
    cores = os.cpu_count() or 1
    counts = ctx.pick([cores], sorted({1, cores}))
    raw_cold = _previous_raw_cold() if ctx.quick else None
    if raw_cold is None:
        raw_cold = _raw(wasm, ctx.workdir / "raw.cwasm", "cold")
        raw_warm = _raw(wasm, ctx.workdir / "raw.cwasm", "warm")
    else:  # --quick: the baseline compile (tens of seconds) comes from the last full run
        raw_warm = _raw_warm_from_bench_cache(wasm, ctx.workdir)
    ctx.details["raw"] = {"cold": raw_cold, "warm": raw_warm}
    procs = Processes(ctx.workdir)
    runs: dict[str, Any] = {}
    try:
        nats = procs.nats()
        for w in counts:
            state = ctx.workdir / f"state-w{w}"
            lattice = new_lattice()
            for phase in ("cold", "warm"):
                before = _artifacts(state)
                host = procs.host(nats.url, lattice, workers=w, state_dir=state, label=f"host-w{w}-{phase}",
                                  warm_cache=False)
                pids = host.wait_workers()
                roles = {f"worker-{i}": p for i, p in enumerate(pids)} | {"host": host.proc.pid}
                r = await _start_and_call(nats.url, lattice, host.id, wasm, roles)
                procs.stop(host)
                after = _artifacts(state)
                r.update(host_boot_s=round(host.boot_s, 3), artifacts_before=len(before), artifacts_after=len(after),
                         recompiled=any(after.get(k) != v for k,
                                        v in before.items()) or (bool(before) and after != before))
                runs[f"w{w}/{phase}"] = r
                print(f"   workers={w} {phase}: start→first call {r['start_to_first_call_s']:.2f} s "
                      f"(host boot {r['host_boot_s']:.2f} s, recompiled={r['recompiled']})", flush=True)
    finally:
        procs.close()
    ctx.details["runs"] = runs
    raw_is = {"cold": "raw wasmtime-py in a new process: compile + instantiate + call",
              "warm": "raw wasmtime-py in a new process: deserialize + instantiate + call"}
    if "source" in raw_cold:
        raw_is["cold"] += " (from the last full run)"
    for w in counts:
        for phase, raw in (("cold", raw_cold), ("warm", raw_warm)):
            r = runs[f"w{w}/{phase}"]
            ctx.row(f"greeter cold start, compile cache {phase}, {w} worker{'s' if w > 1 else ''}: start → first call",
                    "s", r["start_to_first_call_s"], raw["total_s"], raw_is[phase],
                    start_to_event_s=r["start_to_event_s"], event_to_first_call_s=r["event_to_first_call_s"],
                    host_boot_s=r["host_boot_s"], worker_cpu_s=sum(v for k, v in r["cpu_s"].items() if k != "host"),
                    baseline_cpu_s=raw.get("cpu_s"), recompiled=r["recompiled"])
