"""Density and scale-to-zero: Trellis against always-on services, in one sitting (issue 16).

``python -m bench density [--quick]``. Memory is PSS summed over every process
of a system (``/proc/PID/smaps_rollup``), CPU is read from /proc (``meter.py``).
Four stages, each Trellis beside its baseline (``baseline.py``):

1. **Idle**: the orders app (``examples/platform-poc``) on Trellis, fresh and
   with instance reuse (``max_idle_s``), and as six always-on services; 100
   requests each, then a window without traffic: CPU % of one core and PSS;
   for Trellis the live instances (every host's ``usage``, the figure
   ``trellis app usage`` shows) and how long after the last request they reach 0.
2. **Density**: N copies of the small app (``bench/components/small-app``,
   ``apps.py``) for N = 1, 10, 50: PSS and idle CPU per extra app, and the
   latency of each copy's first request after the idle window (p50/p99).
3. **Load**: ``POST /orders`` at c=20 with wrk (``bench/http``'s windows,
   alternating systems): req/s, p50/p99, CPU-ms per request, peak PSS; success
   must be 100 %.
4. **Cold start**: nothing running → first answer, per app (the orders app, the
   small app with its lattice) and per component (one more copy deployed on a
   running lattice → its first answer).

``--quick`` shortens every wait (idle windows of 10 s, N = 1, 5, one load
window) for a smoke run. ``BENCH_DENSITY_STAGES=density,load`` runs some
stages only; ``BENCH_DENSITY_ENV=NAME=VALUE,...`` sets variables for every
Trellis host; ``BENCH_DENSITY_AB=NAME=VALUE,...`` adds a second Trellis lattice
to the density stage with those variables, measured in the same windows (an
A/B in one sitting; ``PYTHONPATH=DIR`` runs another checkout's platform, e.g.
the commit before a change, for a before/after). ``BENCH_DENSITY_N=1,10,50`` and
``BENCH_DENSITY_IDLE_S=60`` override the copies and the idle window. In the load stage,
``BENCH_DENSITY_AB`` adds a reuse twin with those variables to the same alternating
windows, and ``BENCH_DENSITY_FRESH=0`` leaves out the fresh lattice.
``BENCH_DENSITY_STAGES=compile`` (with ``BENCH_DENSITY_N``) compiles the copies once per
machine ahead of a sitting, so that the sitting itself compiles nothing.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from .._context import Context
from .._stats import percentile
from . import apps, baseline, meter
from .lattice import TrellisLattice, get

#: the issue's goals
GOAL_IDLE_CPU_PCT = 1.0
GOAL_PSS_PER_APP_RATIO = 0.1
GOAL_FIRST_REQUEST_P99_MS = 50.0
REUSE = 1_000_000


def _stages() -> set[str]:
    raw = os.environ.get("BENCH_DENSITY_STAGES", "")
    return {s.strip() for s in raw.split(",") if s.strip()} or {"idle", "density", "load", "coldstart"}


def _env_pairs(name: str) -> dict[str, str]:
    raw = os.environ.get(name, "")
    pairs = [p.partition("=") for p in raw.split(",") if p.strip()]
    return {k.strip(): v for k, _, v in pairs}


def _host_env() -> dict[str, str]:
    """``BENCH_DENSITY_ENV``: variables for every Trellis host of the run."""
    return _env_pairs("BENCH_DENSITY_ENV")


def _ab_env() -> dict[str, str]:
    """``BENCH_DENSITY_AB``: a second Trellis lattice in the density stage with these variables,
    measured in the same windows (``PYTHONPATH=DIR`` runs another checkout's platform: a before/after)."""
    return _env_pairs("BENCH_DENSITY_AB")


def _free_port() -> int:
    from ..http.peers import free_port

    return free_port()


# ---------------------------------------------------------------------------------------- density


class SmallAppsTrellis:
    """Copies of the small app on one Trellis lattice, deployed one after another."""

    def __init__(self, workdir: Path, workers: int, max_idle_s: float | None, env: dict[str, str] | None = None,
                 label: str = "trellis") -> None:
        self.name = label
        self.slug = re.sub(r"[^A-Za-z0-9@=._-]", "_", label)  # for file names
        self.lattice = TrellisLattice(workdir, workers, env={**_host_env(), **(env or {})}, label=f"{self.slug}-small")
        self.port = _free_port()
        self.max_idle_s = max_idle_s
        self.deployed = 0
        self.workdir = workdir
        #: copy -> seconds from `trellis app deploy` to its first 200
        self.deploy_to_answer_s: dict[int, float] = {}

    def start(self, n_max: int) -> dict[str, float]:
        wasms = apps.copies(n_max)
        apps.compile_into(wasms, self.lattice.state / "compiled")
        self.wasms = wasms
        t = time.perf_counter()
        self.lattice.start()
        t_lattice = time.perf_counter() - t
        shared = self.workdir / f"{self.slug}-density-shared.yaml"
        shared.write_text(apps.shared_manifest())
        self.lattice.deploy(shared, wait=True)
        t_shared = time.perf_counter() - t
        self.grow(1)
        return {"lattice_s": round(t_lattice, 2), "shared_app_s": round(t_shared - t_lattice, 2),
                "first_app_s": round(self.deploy_to_answer_s[1], 2),
                "nothing_to_first_answer_s": round(time.perf_counter() - t, 2)}

    def grow(self, n: int) -> None:
        for k in range(self.deployed + 1, n + 1):
            m = self.workdir / f"{self.slug}-{apps.app_name(k)}.yaml"
            m.write_text(apps.app_manifest(k, self.wasms[k - 1], self.port, max_idle_s=self.max_idle_s))
            t = time.perf_counter()
            self.lattice.deploy(m)
            self.lattice.wait_answer(self.port, apps.host_header(k), timeout_s=300)
            self.deploy_to_answer_s[k] = time.perf_counter() - t
            self.deployed = k

    def request(self, k: int) -> tuple[int, bytes]:
        return get(self.port, apps.host_header(k))

    @property
    def roots(self) -> list[int]:
        return self.lattice.roots

    def stop(self) -> None:
        self.lattice.stop()


class SmallAppsBaseline:
    """N always-on copies of the small app (``start_small_app_services``), restarted for each N."""

    def __init__(self, workdir: Path, nats_url: str, nats_pid: int | None) -> None:
        self.workdir = workdir
        self.nats_url = nats_url
        self.nats_pid = nats_pid
        self.current: baseline.Running | None = None
        self.start_s = float("nan")

    def start(self, n: int) -> None:
        self.stop()
        t = time.perf_counter()
        names = [apps.app_name(k) for k in range(1, n + 1)]
        self.current = baseline.start_small_apps(names, self.nats_url, self.workdir / f"baseline-small-{n}",
                                                 self.nats_pid)
        for k in range(1, n + 1):
            _wait_200(lambda k=k: self.request(k))
        self.start_s = time.perf_counter() - t

    def request(self, k: int) -> tuple[int, bytes]:
        assert self.current is not None
        return baseline.small_app_get(self.current, apps.app_name(k))

    @property
    def roots(self) -> list[int]:
        return self.current.roots if self.current else []

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


def _wait_200(call: Any, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    why = ""
    while time.monotonic() < deadline:
        try:
            status, body = call()
            if status == 200:
                return
            why = f"{status} {body[:200]!r}"
        except OSError as exc:
            why = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"no 200 within {timeout_s:.0f} s: {why}")


def _first_requests(system: Any, n: int) -> dict[str, Any]:
    """Each copy's first request after the idle window: ms, all answered 200 with the app's count; and
    a second request right after it (``then_*``: the same request with nothing parked, on the same
    machine at the same moment: what the idle window itself adds is the difference)."""
    ms, then, bad = [], [], []
    for k in range(1, n + 1):
        t = time.perf_counter()
        status, body = system.request(k)
        ms.append((time.perf_counter() - t) * 1e3)
        if status != 200 or apps.app_name(k).encode() not in body:
            bad.append(f"copy {k}: {status} {body[:120]!r}")
        t = time.perf_counter()
        system.request(k)
        then.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2), "all_ms": [round(x, 2) for x in ms], "failed": bad,
            "then_p50_ms": round(percentile(then, 50), 2), "then_p99_ms": round(percentile(then, 99), 2)}


def _slope(points: dict[int, float]) -> float:
    """Per extra app: from the smallest N to the largest."""
    lo, hi = min(points), max(points)
    return (points[hi] - points[lo]) / (hi - lo) if hi > lo else float("nan")


def _ns(ctx: Context) -> list[int]:
    """``BENCH_DENSITY_N``: the numbers of copies (default 1, 10, 50; quick: 1, 5)."""
    return [int(n) for n in os.environ.get("BENCH_DENSITY_N", "").split(",") if n.strip()] or ctx.pick([1, 5],
                                                                                                  [1, 10, 50])


def stage_compile(ctx: Context) -> None:
    """Compile the copies once per machine into the bench's cache, ahead of a sitting
    (``BENCH_DENSITY_STAGES=compile``): cranelift takes ~5-9 s of both cores per copy on a quiet
    machine, and a minute or more on a loaded one; a sitting then only copies the artifacts."""
    n = max(_ns(ctx))
    t = time.perf_counter()
    apps.compile_into(apps.copies(n), None)
    ctx.details["compile"] = {"copies": n, "seconds": round(time.perf_counter() - t, 1)}


def stage_density(ctx: Context, workers: int, nats_url: str, nats_pid: int | None) -> None:
    ns = _ns(ctx)
    idle_s = float(os.environ.get("BENCH_DENSITY_IDLE_S") or ctx.pick(10.0, 60.0))
    trellises = [SmallAppsTrellis(ctx.workdir, workers, max_idle_s=None)]
    ab = _ab_env()
    if ab:
        trellises.append(SmallAppsTrellis(ctx.workdir, workers, max_idle_s=None, env=ab,
                                          label="trellis" + "".join(f"@{k}={v}" for k, v in sorted(ab.items()))))
    why_not = baseline.missing()
    base = SmallAppsBaseline(ctx.workdir, nats_url, nats_pid) if not why_not else None
    out: dict[str, Any] = {"n": ns, "idle_s": idle_s, "baseline": {}, "baseline_missing": why_not,
                           "trellis_systems": [t.name for t in trellises]}
    try:
        for t in trellises:
            out.setdefault(t.name, {})
            out[f"{t.name}_cold"] = t.start(max(ns))
            print(f"   small app on {t.name}: nothing → first answer "
                  f"{out[f'{t.name}_cold']['nothing_to_first_answer_s']} s",
                  flush=True)
        for n in ns:
            for t in trellises:
                t.grow(n)
            if base is not None:
                base.start(n)
                out.setdefault("baseline_start_s", {})[n] = round(base.start_s, 3)
            systems: dict[str, Any] = {t.name: t for t in trellises} | ({"baseline": base} if base else {})
            for system in systems.values():  # warm: every copy answers once
                for k in range(1, n + 1):
                    system.request(k)
            windows = {name: meter.IdleWindow(system.roots) for name, system in systems.items()}
            for w in windows.values():
                w.__enter__()
            time.sleep(idle_s)
            for w in windows.values():
                w.__exit__(None, None, None)
            for name, system in systems.items():
                roots = system.roots
                rec: dict[str, Any] = {"pss_mib": meter.pss_mib(roots), "idle_cpu_pct": windows[name].cpu_pct,
                       "processes": meter.pss_by_process(roots), "cpu_by_process": windows[name].by_process()}
                is_trellis = name != "baseline"
                if is_trellis:
                    rec["instances_after_idle"] = sum(system.lattice.instances().values())
                rec["first_request"] = _first_requests(system, n)
                out[name][n] = rec
                print(f"   N={n:3d} {name:8s} PSS {rec['pss_mib']:8.1f} MiB  idle CPU {rec['idle_cpu_pct']:6.2f} %  "
                      f"first request after {idle_s:.0f} s idle p99 {rec['first_request']['p99_ms']:.1f} ms"
                      f" (the next p99 {rec['first_request']['then_p99_ms']:.1f} ms)"
                      + (f"  instances {rec.get('instances_after_idle')}" if is_trellis else ""), flush=True)
        for t in trellises:
            out[f"{t.name}_deploy_to_answer_s"] = {k: round(v, 3) for k, v in t.deploy_to_answer_s.items()}
    finally:
        for t in trellises:
            t.stop()
        if base is not None:
            base.stop()
    ctx.details["density"] = out
    _density_rows(ctx, out)


def _density_rows(ctx: Context, out: dict[str, Any]) -> None:
    b = out["baseline"]
    big, small = max(out["n"]), min(out["n"])
    missing = out["baseline_missing"]
    b_pss = _slope({n: r["pss_mib"] for n, r in b.items()}) if b else float("nan")
    b_cpu = _slope({n: r_["idle_cpu_pct"] for n, r_ in b.items()}) if b else float("nan")
    b_start = out.get("baseline_start_s", {})
    b1 = b_start.get(small) if b else None
    first = out["trellis_systems"][0]
    for name in out["trellis_systems"]:
        t = out[name]
        tag = "" if name == first else f" [{name}]"
        t_pss = _slope({n: r["pss_mib"] for n, r in t.items()})
        r = ctx.row(f"density: PSS per extra idle app (N={small}→{big}){tag}", "MiB", round(t_pss, 2),
                    round(b_pss, 2) if b else None, "one more always-on service" if b else missing,
                    goal="≤ 1/10 of an always-on service")
        if "ratio" in r:
            r["meets_goal"] = r["ratio"] <= GOAL_PSS_PER_APP_RATIO
        t_cpu = _slope({n: r_["idle_cpu_pct"] for n, r_ in t.items()})
        ctx.row(f"density: idle CPU per extra app (N={small}→{big}){tag}", "% of a core", round(t_cpu, 3),
                round(b_cpu, 3) if b else None, "one more always-on service" if b else missing)
        for n in out["n"]:
            ctx.row(f"density: PSS, N={n} apps (whole system){tag}", "MiB", t[n]["pss_mib"],
                    b[n]["pss_mib"] if b else None, f"{n} always-on services" if b else missing)
            r = ctx.row(f"density: idle CPU, N={n} apps (whole lattice){tag}", "% of a core", t[n]["idle_cpu_pct"],
                        b[n]["idle_cpu_pct"] if b else None, f"{n} always-on services" if b else missing,
                        goal=f"≤ {GOAL_IDLE_CPU_PCT} % of a core")
            r["meets_goal"] = t[n]["idle_cpu_pct"] <= GOAL_IDLE_CPU_PCT
            r = ctx.row(f"density: first request after {out['idle_s']:.0f} s idle, N={n}, p99 over the copies{tag}",
                        "ms", t[n]["first_request"]["p99_ms"], b[n]["first_request"]["p99_ms"] if b else None,
                        f"{n} always-on services" if b else missing, goal=f"≤ {GOAL_FIRST_REQUEST_P99_MS:g} ms",
                        failed=len(t[n]["first_request"]["failed"]))
            r["meets_goal"] = t[n]["first_request"]["p99_ms"] <= GOAL_FIRST_REQUEST_P99_MS
        cold = out.get(f"{name}_cold", {})
        ctx.row(f"cold start: small app, nothing running → first answer (nats, host, wadm, shared app, app){tag}", "s",
                cold.get("nothing_to_first_answer_s", float("nan")), b1,
                "start_small_app_services([one app]) → it answers (its NATS already up)" if b else missing, **cold)
        d = list(out.get(f"{name}_deploy_to_answer_s", {}).values())[1:]
        if d:
            ctx.row(f"cold start per component: one more copy deployed on a running lattice → its first answer "
                    f"(median){tag}", "s", round(statistics.median(d), 3), b1,
                    "one more always-on service started → it answers" if b else missing,
                    p99_s=round(percentile(d, 99), 3), copies=len(d))
        if name != first:  # the A/B: this lattice against the first, same windows
            for n in out["n"]:
                ctx.row(f"A/B density N={n}: PSS, {name} vs {first}", "MiB", t[n]["pss_mib"], out[first][n]["pss_mib"],
                        first)
                ctx.row(f"A/B density N={n}: idle CPU, {name} vs {first}", "% of a core", t[n]["idle_cpu_pct"],
                        out[first][n]["idle_cpu_pct"], first)
                ctx.row(f"A/B density N={n}: first request p99, {name} vs {first}", "ms",
                        t[n]["first_request"]["p99_ms"], out[first][n]["first_request"]["p99_ms"], first)


# ------------------------------------------------------------------------------ the orders app


def stage_full_app(ctx: Context, workers: int, nats_url: str, nats_pid: int | None, stages: set[str]) -> None:
    """Idle, load and cold start of the orders app: Trellis fresh and reuse beside the six services."""
    from ..http import measure, peers, systems_table

    idle_s = ctx.pick(10.0, 60.0)
    max_idle_s = ctx.pick(3.0, 30.0)
    systems: list[peers.System] = [peers.TrellisFullApp(ctx.workdir, workers, REUSE, env=_host_env(),
                                                        max_idle_s=max_idle_s),
                                   peers.TrellisFullApp(ctx.workdir, workers, 1, env=_host_env())]
    if os.environ.get("BENCH_DENSITY_FRESH", "1") == "0":
        systems.pop()  # reuse against the baseline only
    if _ab_env() and stages & {"load", "idle"}:  # the A/B twin of the reuse lattice, in the same windows
        systems.insert(1, peers.TrellisFullApp(ctx.workdir, workers, REUSE, env={**_host_env(), **_ab_env()},
                                               max_idle_s=max_idle_s))
    why_not = baseline.missing()
    if not why_not:
        systems.append(baseline.PlatformPocSystem(ctx.workdir, nats_url, nats_pid))
    out: dict[str, Any] = {"baseline_missing": why_not, "max_idle_s": max_idle_s, "idle_s": idle_s}
    started: list[peers.System] = []
    try:
        for s in systems:
            print(f"   starting {s.name} …", flush=True)
            s.start()
            started.append(s)
        out["startup_s"] = {s.name: s.startup_s for s in started}
        if "idle" in stages:
            out["idle"] = _idle(started, idle_s, max_idle_s)
        if "load" in stages:
            window, rounds = ctx.pick(3.0, 8.0), ctx.pick(1, 3)
            with meter.PeakPss({s.name: s for s in started}, every_s=0.5) as peak:
                results = measure(started, ctx.workdir, window, rounds, warmup_s=ctx.pick(1.0, 3.0))
            for name, res in results.items():
                res["peak_pss_mib"] = peak.peak.get(name)
                # window by window (the alternating order): req/s, p99 and CPU per order
                res["per_window"] = [{k: w.get(k) for k in ("rps", "p99_ms", "cpu_ms_per_request")}
                                     for w in res.pop("raw_windows", [])]
            out["load"] = results
            out["load_table"] = systems_table(results, {s.name: s.info for s in started})
            print(out["load_table"])
    finally:
        for s in reversed(started):
            s.stop()
    ctx.details["full_app"] = out
    _full_app_rows(ctx, out, [s.name for s in systems])


def _idle(systems: list[Any], idle_s: float, max_idle_s: float) -> dict[str, Any]:
    """Each system: 100 requests, then (Trellis) its live instances until 0, timed from its last
    request. Then one window without traffic for all: CPU %, PSS, instances at its end."""
    from ..http.peers import post_order

    out: dict[str, Any] = {}
    for s in systems:
        for _ in range(100):
            status, body = post_order(s.port, s.host_header)
            if status != 201:
                raise RuntimeError(f"{s.name}: warm-up POST /orders answered {status} {body[:200]!r}")
        last = time.perf_counter()
        if s.family != "trellis":
            continue
        lat = _lattice_of(s)
        seen, zero_after = [], None
        while time.perf_counter() - last < max_idle_s + 15:
            n = sum(lat.instances().values())
            seen.append((round(time.perf_counter() - last, 2), n))
            if n == 0:
                zero_after = time.perf_counter() - last
                break
            time.sleep(0.5)
        out[s.name] = {"instances_seen": seen, "zero_after_s": None if zero_after is None else round(zero_after, 2)}
    windows = {s.name: meter.IdleWindow(s.roots) for s in systems}
    for w in windows.values():
        w.__enter__()
    time.sleep(idle_s)
    for w in windows.values():
        w.__exit__(None, None, None)
    for s in systems:
        rec = out.setdefault(s.name, {})
        rec.update(idle_cpu_pct=windows[s.name].cpu_pct, pss_mib=meter.pss_mib(s.roots),
                   processes=meter.pss_by_process(s.roots), cpu_by_process=windows[s.name].by_process())
        if s.family == "trellis":
            rec["instances_after_idle"] = sum(_lattice_of(s).instances().values())
        print(f"   idle {s.name:28s} CPU {rec['idle_cpu_pct']:6.2f} % of a core  PSS {rec['pss_mib']:8.1f} MiB"
              + (f"  instances 0 after {rec.get('zero_after_s')} s" if s.family == "trellis" else ""), flush=True)
    return out


def _lattice_of(system: Any) -> TrellisLattice:
    """A TrellisLattice view of a bench.http Trellis system (its nats and lattice), for ``instances()``."""
    lat = TrellisLattice.__new__(TrellisLattice)
    lat.nats, lat.lattice = system.nats, system.lattice
    return lat


def _full_app_rows(ctx: Context, out: dict[str, Any], names: list[str]) -> None:
    reuse = next((n for n in names if "reuse" in n and "@" not in n), "")
    twin = next((n for n in names if "reuse" in n and "@" in n), "")  # BENCH_DENSITY_AB's lattice
    fresh = next((n for n in names if "fresh" in n), "")
    base = next((n for n in names if n not in (reuse, twin, fresh)), "")
    missing = out["baseline_missing"]
    is_ = "the orders app as six always-on services" if base else missing
    idle = out.get("idle", {})
    for name in (reuse, fresh):
        if name in idle:
            i, bi = idle[name], idle.get(base, {})
            r = ctx.row(f"idle: orders app, {name}, CPU over {out['idle_s']:.0f} s without traffic", "% of a core",
                        i["idle_cpu_pct"], bi.get("idle_cpu_pct"), is_, goal=f"≤ {GOAL_IDLE_CPU_PCT} % of a core")
            r["meets_goal"] = i["idle_cpu_pct"] <= GOAL_IDLE_CPU_PCT
            ctx.row(f"idle: orders app, {name}, PSS", "MiB", i["pss_mib"], bi.get("pss_mib"), is_)
            r = ctx.row(f"idle: orders app, {name}, seconds after the last request until 0 instances", "s",
                        i["zero_after_s"] if i["zero_after_s"] is not None else float("nan"), None,
                        f"max_idle_s {out['max_idle_s']:g} s" if name == reuse else "fresh instances",
                        instances_after_idle=i.get("instances_after_idle"))
            r["meets_goal"] = i["zero_after_s"] is not None and (
                name != reuse or i["zero_after_s"] <= out["max_idle_s"] + 2)
    load = out.get("load", {})
    for name in (reuse, fresh):
        if name in load:
            t, b = load[name], load.get(base, {})
            r = ctx.row(f"load: POST /orders c=20, {name}", "req/s", t["rps"], b.get("rps"), is_,
                        trellis_p50_ms=t["p50_ms"], trellis_p99_ms=t["p99_ms"], baseline_p50_ms=b.get("p50_ms"),
                        baseline_p99_ms=b.get("p99_ms"), trellis_success_pct=t["success_pct"],
                        baseline_success_pct=b.get("success_pct"))
            if name == reuse and "ratio" in r:
                r["goal"] = "≥ 1x the baseline's req/s, p99 ≤ the baseline's"
                r["meets_goal"] = r["ratio"] >= 1.0 and t["p99_ms"] <= b.get("p99_ms", 0)
            ctx.row(f"load: {name}, p99", "ms", t["p99_ms"], b.get("p99_ms"), is_)
            ctx.row(f"load: {name}, CPU per request", "CPU-ms/req", t["cpu_ms_per_request"],
                    b.get("cpu_ms_per_request"), is_)
            r = ctx.row(f"load: {name}, peak PSS under load", "MiB", t["peak_pss_mib"], b.get("peak_pss_mib"), is_,
                        goal="≤ the baseline's")
            if "ratio" in r:
                r["meets_goal"] = r["ratio"] <= 1.0
            ctx.row(f"load: {name}, peak PSS per req/s served", "MiB per req/s",
                    round(t["peak_pss_mib"] / max(t["rps"], 1e-9), 4),
                    round(b["peak_pss_mib"] / max(b["rps"], 1e-9), 4) if b else None, is_)
    if twin in load and reuse in load:
        t, a = load[twin], load[reuse]
        for what, unit, key in (("req/s", "req/s", "rps"), ("p99", "ms", "p99_ms"),
                                ("CPU per request", "CPU-ms/req", "cpu_ms_per_request"),
                                ("peak PSS under load", "MiB", "peak_pss_mib")):
            ctx.row(f"A/B load: {what}, {twin} vs {reuse}", unit, t[key], a[key], reuse)
        for what, unit, key in (("req/s", "req/s", "rps"), ("p99", "ms", "p99_ms"),
                                ("peak PSS under load", "MiB", "peak_pss_mib")):
            if base in load:
                ctx.row(f"load: {twin}, {what}", unit, t[key], load[base][key], is_)
    starts = out.get("startup_s", {})
    for name in (reuse, fresh):
        if name in starts:
            ctx.row(f"cold start: orders app, {name}: nothing running → first POST /orders 201 "
                    "(build cached, nats, host, wadm, deploy, data-init)", "s", starts[name], starts.get(base), is_)


def run(ctx: Context) -> None:
    cores = os.cpu_count() or 1
    stages = _stages()
    ctx.details["stages"] = sorted(stages)
    ctx.details["host_env"] = _host_env()
    ctx.details["baseline_missing"] = baseline.missing()
    from trellis.natsserver import NatsServer

    if "compile" in stages:
        stage_compile(ctx)
        if stages == {"compile"}:
            return
    nats = NatsServer(host="127.0.0.1", port=0, store_dir=ctx.workdir / "baseline-nats",
                      log_file=ctx.workdir / "baseline-nats.log")
    nats.start()  # the baselines' NATS (key-value, messaging); each Trellis lattice has its own
    try:
        if "density" in stages or "coldstart" in stages:
            stage_density(ctx, cores, nats.url, nats.proc.pid if nats.proc else None)
        if stages & {"idle", "load", "coldstart"}:
            stage_full_app(ctx, cores, nats.url, nats.proc.pid if nats.proc else None, stages)
    finally:
        nats.stop()
