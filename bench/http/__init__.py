"""HTTP: Trellis vs wasmCloud 2.x, ``wasmtime serve`` and uvicorn, under the same wrk load, in one sitting.

``python -m bench http`` (or ``python -m bench.http`` for options). Every
system serves ``POST /orders`` with the body
``[{"sku": "ENG-V8-500", "price": 1000, "quantity": 1}]`` on 127.0.0.1:

* Trellis, the single component (``bench/components/order-trellis``) behind
  ``builtin:http-server``: fresh and reused instances, 1 and N worker
  processes; and the full orders app of ``examples/platform-poc`` once it is
  committed;
* ``wasmtime serve`` with the same logic as a ``wasi:http`` component
  (``bench/components/order-wasi-http``), fresh and reused;
* wasmCloud 2.x: ``wash dev``, and ``wash host`` driven over NATS with the
  component pulled from a local OCI registry, fresh and with ``poolSize``
  (a warm pool only for the ``wasi:http@0.3.0`` variant,
  ``bench/components/order-wasi-http-p3``: ``wash-host-pool-p3``);
* the same handler in JavaScript (componentize-js) on Trellis, as a ``trellis:http`` component
  (``bench/components/order-js-trellis``: ``trellis-js-fresh``, ``trellis-js-reuse``) and as a
  ``wasi:http`` one (``order-js-wasi-http``, StarlingMonkey's ``fetch`` event:
  ``trellis-js-wasi-fresh``; fresh only, as its engine serves one request per instance);
* uvicorn running the logic as plain Python: the ceiling.

All systems are started first, then measured in alternating windows (rounds
of one window each), so drifting background load on a shared machine falls
on all of them alike. Per system: req/s (best window, and the mean over all),
p50/p99 of the best window, success over all windows, CPU ms per request of
its processes (all windows) and the peak of their summed RSS. The rows
compare Trellis with each peer and with the issue's goals.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from .._context import Context
from . import peers, tools
from .load import CONNECTIONS, lua_script, pss_now, rss_now, run_wrk

#: the issue's goals and the figures measured earlier on this machine (2 cores)
REFERENCE = {"wash-host-fresh": 117, "wasmtime-serve-fresh": 229, "wash-host-pool": 7200,
             "wasmtime-serve-reuse": 5100, "uvicorn": 26000, "prototype-fresh-w1": 640,
             "prototype-fresh-w2": 1100, "prototype-reuse": 5400}
GOAL_FULL_APP_RPS = 2316
GOAL_FULL_APP_P99_MS = 50.0
REUSE = 1_000_000


def plan(workdir: Path, quick: bool, only: set[str] | None = None,
         ab: dict[str, str] | None = None) -> tuple[list[peers.System], dict[str, str]]:
    """The systems to run, and those that cannot run here with the reason. With ``ab``, each Trellis
    system also runs a twin whose host has those environment variables set, measured beside it."""
    cores = os.cpu_count() or 1
    worker_counts = sorted({1, cores})
    skipped: dict[str, str] = {}
    systems: list[peers.System] = []
    trellis_wasm = tools.build_trellis_component()
    for w in worker_counts:
        systems.append(peers.TrellisSingle(workdir, trellis_wasm, w, 1))
    for w in worker_counts if not quick else [cores]:
        systems.append(peers.TrellisSingle(workdir, trellis_wasm, w, REUSE))
    if peers.platform_poc_landed():
        systems.append(peers.TrellisFullApp(workdir, cores))
        for w in worker_counts if not quick else [cores]:
            systems.append(peers.TrellisFullApp(workdir, w, REUSE))
    else:
        skipped["trellis-full-app"] = "examples/platform-poc is not committed yet (git log -- examples/platform-poc)"
    try:
        wasi = tools.build_wasi_component()
        cwasm = tools.precompile(wasi)
        systems += [peers.WasmtimeServe(workdir, 1, cwasm), peers.WasmtimeServe(workdir, REUSE, cwasm)]
        # the same handler as a wasi:http component on Trellis, beside the trellis:http one (issue 14)
        systems += [peers.TrellisSingle(workdir, wasi, w, r, wasi_http=True) for w in [cores] for r in (1, REUSE)]
        systems.append(peers.WashHost(workdir, wasi, label="fresh"))
        systems.append(peers.WashHost(workdir, wasi, pool_size=CONNECTIONS, label="pool-p2"))
        if not quick:
            systems.append(peers.WashDev(workdir, wasi))
        wasi_p3 = tools.build_wasi_component("order-wasi-http-p3", tools.WASI_HTTP_P3_WORLD)
        systems.append(peers.WashHost(workdir, wasi_p3, pool_size=CONNECTIONS, http_version="0.3.0",
                                      label="pool-p3"))
    except tools.ToolMissing as exc:
        skipped["wasmtime/wasmCloud"] = str(exc)
    try:  # the same handler in JavaScript (componentize-js), trellis:http and wasi:http (issue 14)
        js = tools.build_js_component("order-js-trellis")
        js_wasi = tools.build_js_component("order-js-wasi-http")
        systems += [peers.TrellisSingle(workdir, js, cores, r, lang="js") for r in (1, REUSE)]
        # StarlingMonkey's fetch event serves one request per instance (StarlingMonkey#247): fresh only
        systems.append(peers.TrellisSingle(workdir, js_wasi, cores, 1, wasi_http=True, lang="js"))
    except Exception as exc:  # noqa: BLE001 - no node/npm, or the build failed: reported, not fatal
        skipped["trellis-js"] = f"the JavaScript pair did not build: {str(exc)[:600]}"
    systems.append(peers.Uvicorn(workdir, 1))
    if only:
        systems = [s for s in systems if any(o in s.name for o in only)]
    if ab:
        systems = [t for s in systems for t in (s, peers.twin(s, ab)) if t is not None]
    return systems, skipped


def _merge(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's windows: best-window req/s and its latency; success, CPU and RSS over all."""
    best = max(windows, key=lambda w: w["rps"])
    requests = sum(w["requests"] for w in windows)
    failed = sum(min(w["requests"], w["non_2xx"] + w["socket_errors"]) for w in windows)
    wall = sum(w["wall_s"] for w in windows)
    cpu = sum(w["cpu_s"] for w in windows)
    return {
        "rps": best["rps"], "rps_mean": round(requests / wall, 1) if wall else 0.0,
        "rps_median": round(statistics.median(w["rps"] for w in windows), 1),
        "windows": [w["rps"] for w in windows], "p50_ms": best["p50_ms"], "p99_ms": best["p99_ms"],
        "p99_ms_worst_window": max(w["p99_ms"] for w in windows),
        "requests": requests, "failed": failed,
        "success_pct": round(100.0 * (requests - failed) / requests, 3) if requests else 0.0,
        "cpu_ms_per_request": round(cpu / max(1, requests) * 1e3, 3),
        "cores_used": round(cpu / wall, 2) if wall else 0.0,
        "peak_rss_mib": max(w["peak_rss_mib"] for w in windows),
        "peak_pss_mib": max(w.get("peak_pss_mib", 0.0) for w in windows),
        "errors": [w["wrk_error"] for w in windows if "wrk_error" in w][:1],
    }


def measure(systems: list[peers.System], workdir: Path, window_s: float, rounds: int,
            warmup_s: float) -> dict[str, dict[str, Any]]:
    """Alternating windows: each system in turn, ``rounds`` times; merged per system."""
    scripts = {s.name: lua_script(workdir / f"{s.name}.lua", s.host_header) for s in systems}
    windows: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    for r in range(rounds):
        for s in systems:
            if warmup_s > 0:
                run_wrk(s.url, scripts[s.name], warmup_s if r == 0 else 1.0, s.roots)
            w = run_wrk(s.url, scripts[s.name], window_s, s.roots)
            w["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            windows[s.name].append(w)
            print(f"   round {r + 1}/{rounds} {s.name:24s} {w['rps']:8.0f} req/s  p50 {w['p50_ms']:7.1f} ms  "
                  f"p99 {w['p99_ms']:7.1f} ms  ok {w['success_pct']:.1f}%  {w['cpu_ms_per_request']:.2f} CPU-ms/req  "
                  f"{w['peak_rss_mib']:.0f} MiB RSS  {w['peak_pss_mib']:.0f} MiB PSS", flush=True)
    return {name: {**_merge(ws), "raw_windows": ws} for name, ws in windows.items()}


def _best(results: dict[str, dict[str, Any]], prefix: str) -> tuple[str, dict[str, Any]] | None:
    found = [(k, v) for k, v in results.items() if k.startswith(prefix) and "@" not in k]  # not --ab twins
    return max(found, key=lambda kv: kv[1]["rps"]) if found else None


def add_rows(ctx: Context, results: dict[str, dict[str, Any]]) -> None:
    """Trellis/peer ratios, and each goal of the issue as a row."""
    def row(measure: str, t: tuple[str, dict[str, Any]] | None, b: tuple[str, dict[str, Any]] | None,
            goal: float | None) -> None:
        if t is None or b is None:
            return
        r = ctx.row(f"{measure}: {t[0]} vs {b[0]}", "req/s", t[1]["rps"], b[1]["rps"], b[0],
                    goal_ratio=goal, trellis_p99_ms=t[1]["p99_ms"], baseline_p99_ms=b[1]["p99_ms"])
        if goal is not None and "ratio" in r:
            r["meets_goal"] = r["ratio"] >= goal

    fresh, reuse = _best(results, "trellis-fresh"), _best(results, "trellis-reuse")
    row("fresh", fresh, _best(results, "wash-host-fresh"), 4.0)
    row("fresh", fresh, _best(results, "wasmtime-serve-fresh"), 2.0)
    row("fresh", fresh, _best(results, "wash-dev"), None)
    row("reuse", reuse, _best(results, "wash-host-pool-p3"), 1.0)
    row("reuse (p2 poolSize: no warm instances)", reuse, _best(results, "wash-host-pool-p2"), None)
    row("reuse", reuse, _best(results, "wasmtime-serve-reuse"), None)
    row("reuse", reuse, _best(results, "uvicorn"), None)
    # against the figures measured earlier on this machine (the issue's)
    if fresh:
        ctx.row(f"fresh: {fresh[0]} vs the issue's wasmCloud 2.x fresh (~117 req/s)", "req/s", fresh[1]["rps"],
                REFERENCE["wash-host-fresh"], "reference figure", goal_ratio=4.0)
        ctx.row(f"fresh: {fresh[0]} vs the issue's wasmtime serve fresh (~229 req/s)", "req/s", fresh[1]["rps"],
                REFERENCE["wasmtime-serve-fresh"], "reference figure", goal_ratio=2.0)
    if reuse:
        ctx.row(f"reuse: {reuse[0]} vs the issue's wasmCloud 2.x p3 pool (~7,200 req/s)", "req/s", reuse[1]["rps"],
                REFERENCE["wash-host-pool"], "reference figure", goal_ratio=1.0)
    for lang, mode in (("", "fresh"), ("", "reuse"), ("js-", "fresh")):  # wasi:http vs trellis:http: CPU-ms/req
        w, t = _best(results, f"trellis-{lang}wasi-{mode}"), _best(results, f"trellis-{lang}{mode}")
        if w and t:
            r = ctx.row(f"{mode}: {w[0]} vs {t[0]} (CPU-ms/req, lower is better)", "CPU-ms/req",
                        w[1]["cpu_ms_per_request"], t[1]["cpu_ms_per_request"], t[0],
                        trellis_rps=w[1]["rps"], baseline_rps=t[1]["rps"])
            if "ratio" in r:
                r["goal"] = "wasi:http within 1.25x of trellis:http"
                r["meets_goal"] = r["ratio"] <= 1.25
        ws = _best(results, "wasmtime-serve-fresh")
        if mode == "fresh" and not lang and w and ws:
            row("fresh", w, ws, 1.0)
    full = _best(results, "trellis-full-app")
    if full:
        ctx.row(f"full app POST /orders: {full[0]} vs the talk's wasmCloud 1.x figure", "req/s", full[1]["rps"],
                GOAL_FULL_APP_RPS, "2,316 req/s (oha, c=20, the talk)", goal_ratio=1.0,
                trellis_p99_ms=full[1]["p99_ms"], p99_goal_ms=GOAL_FULL_APP_P99_MS,
                meets_goal=full[1]["rps"] >= GOAL_FULL_APP_RPS and full[1]["p99_ms"] <= GOAL_FULL_APP_P99_MS)
    for name, res in results.items():  # --ab: each twin beside the system it varies
        base = name.split("@", 1)[0]
        if base != name and base in results:
            ctx.row(f"A/B: {name} vs {base}", "req/s", res["rps"], results[base]["rps"], base,
                    trellis_p99_ms=res["p99_ms"], baseline_p99_ms=results[base]["p99_ms"],
                    trellis_cpu_ms=res.get("cpu_ms_per_request"),
                    baseline_cpu_ms=results[base].get("cpu_ms_per_request"))
    for r in ctx.rows:
        if "meets_goal" not in r and r.get("goal_ratio") and "ratio" in r:
            r["meets_goal"] = r["ratio"] >= r["goal_ratio"]


def systems_table(results: dict[str, dict[str, Any]], info: dict[str, dict[str, Any]]) -> str:
    out = ["| system | mode | processes | req/s (best) | req/s (mean) | p50 ms | p99 ms | success | CPU-ms/req "
           "| peak RSS MiB | peak PSS MiB | idle PSS MiB |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        i = info.get(name, {})
        out.append(f"| {name} | {i.get('mode', '')} | {i.get('processes', '')} | {r['rps']:,.0f} | "
                   f"{r['rps_mean']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['success_pct']:.2f}% | "
                   f"{r['cpu_ms_per_request']:.2f} | {r['peak_rss_mib']:,.0f} | {r.get('peak_pss_mib', 0):,.0f} | "
                   f"{i.get('idle_pss_mib', 0):,.0f} |")
    return "\n".join(out)


def run(ctx: Context, only: set[str] | None = None, window_s: float | None = None,
        rounds: int | None = None, ab: dict[str, str] | None = None) -> None:
    """Build, start every system, measure in alternating windows, stop everything by pid."""
    window = window_s or ctx.pick(3.0, 8.0)
    rounds = rounds or ctx.pick(1, 3)
    systems, skipped = plan(ctx.workdir, ctx.quick, only, ab)
    started: list[peers.System] = []
    info: dict[str, dict[str, Any]] = {}
    try:
        for s in systems:
            print(f"   starting {s.name} …", flush=True)
            try:
                s.start()
            except Exception as exc:  # a peer that cannot run here is reported, not fatal
                skipped[s.name] = f"{type(exc).__name__}: {str(exc)[:1500]}"
                print(f"   {s.name} did not start: {str(exc)[:300]}", flush=True)
                s.stop()
                continue
            started.append(s)
            info[s.name] = {**s.info, "family": s.family, "startup_s": s.startup_s,
                            "idle_rss_mib": round(rss_now(s.roots) / 2**20, 1),
                            "idle_pss_mib": round(pss_now(s.roots) / 2**20, 1)}
        time.sleep(1.0)
        results = measure(started, ctx.workdir, window, rounds, warmup_s=ctx.pick(1.0, 3.0))
    finally:
        for s in reversed(started):
            s.stop()
    ctx.details.update(systems=info, results=results, skipped=skipped, window_s=window, rounds=rounds,
                       connections=CONNECTIONS, wrk=_wrk_version(), loadavg_end=[round(x, 2) for x in os.getloadavg()],
                       table=systems_table(results, info))
    add_rows(ctx, results)
    print(systems_table(results, info))
    for name, why in skipped.items():
        print(f"   not run: {name}: {why[:300]}")


def _wrk_version() -> str:
    import subprocess

    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "?"
