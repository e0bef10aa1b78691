"""``python -m bench [NAME ...] [--quick]``: run benchmarks, print and record ratios."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._context import Context
from ._machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (module, one-line description); run in this order.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "invoke": ("bench.invoke", "instantiate + call: Invoker vs raw wasmtime-py, in one process"),
    "rpc": ("bench.rpc", "one cross-host call: LatticeClient.call vs a raw nats-py echo"),
    "coldstart": ("bench.coldstart", "start component -> first call, compile cache cold vs warm"),
    "workers": ("bench.workers", "throughput at concurrency 20 with 1 vs N worker processes"),
    "profile": ("bench.profile", "py-spy profile of the cross-host call path (needs py-spy)"),
    "pieces": ("bench.pieces", "per-call cost of each RPC-layer step vs a leaner form, in process"),
    "values": ("bench.values",
               "a query result of 12,000 rows across the host-guest boundary: lowering in place, GC settings"),
    "hop": ("bench.hop", "CPU per component-to-component hop (a WAT pair): same worker, same host, across hosts"),
    "http": ("bench.http", "HTTP POST /orders, wrk c=20: Trellis vs wasmCloud 2.x, wasmtime serve, uvicorn"),
    "density": ("bench.density", "idle, density (N apps), load and cold start: Trellis vs always-on services"),
}
DEFAULT = ["invoke", "rpc", "coldstart", "workers", "pieces", "values", "profile"]
DEFAULT_QUICK = [n for n in DEFAULT if n != "profile"]  # keeps --quick near 2 minutes


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}" if abs(x) < 10 else f"{x:,.1f}"
    return "-" if x is None else str(x)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of result rows (also readable in a terminal)."""
    out = ["| measure | unit | Trellis | baseline | Trellis/baseline | baseline is |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        out.append(f"| {r['measure']} | {r['unit']} | {_fmt(r['trellis'])} | {_fmt(r.get('baseline'))} "
                   f"| {_fmt(r.get('ratio'))} | {r['baseline_is']} |")
    return "\n".join(out)


def wait_quiet(max_wait_s: float) -> list[float]:
    """Wait (bounded) for the 1-minute load average to fall below the core count.

    On a shared machine other people's work distorts every figure; this
    starts each benchmark in a quieter moment when one comes soon.
    """
    import os

    cores = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait_s
    said = False
    while os.getloadavg()[0] >= cores and time.monotonic() < deadline:
        if not said:
            print(f"   waiting up to {max_wait_s:.0f} s for load {os.getloadavg()[0]:.1f} < {cores} …", flush=True)
            said = True
        time.sleep(2)
    return [round(x, 2) for x in os.getloadavg()]


def run_one(name: str, quick: bool, keep: bool) -> dict[str, Any]:
    module = importlib.import_module(BENCHMARKS[name][0])
    workdir = Path(tempfile.mkdtemp(prefix=f"trellis-bench-{name}-"))
    ctx = Context(quick=quick, workdir=workdir)
    load_before = wait_quiet(5 if quick else 20)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    t = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(module.run):
            import uvloop

            uvloop.run(module.run(ctx))  # the host and its workers run on uvloop too
        else:
            module.run(ctx)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "bench": name, "description": BENCHMARKS[name][1], "quick": quick, "started_at": started,
        "duration_s": round(time.perf_counter() - t, 1), "machine": machine_info(),
        "command": f"python -m bench {name}" + (" --quick" if quick else ""),
        "load_before": load_before, "rows": ctx.rows, "details": ctx.details,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"any of {', '.join(BENCHMARKS)} (default: all; --quick leaves out profile)")
    p.add_argument("--quick", action="store_true", help="fewer calls, shorter windows (< ~2 min in all)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where result JSON goes (default: bench/results)")
    p.add_argument("--keep", action="store_true", help="keep scratch directories (logs) for inspection")
    p.add_argument("--report", action="store_true", help="print the tables of saved results, run nothing")
    args = p.parse_args(argv)
    names = args.names or (DEFAULT_QUICK if args.quick else DEFAULT)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    suffix = "-quick" if args.quick else ""
    if args.report:
        for name in names:
            path = args.out / f"{name}{suffix}.json"
            if path.exists():
                res = json.loads(path.read_text())
                print(f"\n## {name} ({res['started_at']}, {res['machine']['cores']} cores)\n")
                print(table(res["rows"]))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    all_rows = []
    for name in names:
        print(f"== {name}: {BENCHMARKS[name][1]}", flush=True)
        res = run_one(name, args.quick, args.keep)
        path = args.out / f"{name}{suffix}.json"
        path.write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(table(res["rows"]))
        print(f"   ({res['duration_s']} s; "
              f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})\n",
              flush=True)
        all_rows += res["rows"]
    if len(names) > 1:
        print("== all\n" + table(all_rows))
    print(f"total {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
