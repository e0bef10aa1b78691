"""Per-hop CPU: what one component-to-component call costs the platform, with a WAT pair.

Two tiny components are built from WAT with wasm-tools in the run
(``bench/components/hop``): ``hop-target`` exports ``bench:hop/target.ping(x)
-> x + 1``; ``hop-caller`` imports that interface and exports
``bench:hop/entry.run(hops, x)``, which calls ``ping`` ``hops`` times in a row.
Their own code is a few instructions, so what a hop costs is the platform's:
the import binding, routing through the link, the call's envelope, admission,
the target's instance (fresh per call unless said otherwise), and the transport.

One nats-server and ``trellis host --workers 1`` processes, each hop measured
as the CPU of *every* process (nats-server, hosts and their workers) while a
client calls ``run(HOPS)`` one call after another, minus the same with
``run(0)``, divided by ``HOPS``: the entry call's own cost cancels out. The
two are measured in alternating windows. Paths:

* ``same-worker``: caller and target on one worker, the call nested in that
  worker (``host/workers/colocated.py``); target fresh per call (the default)
  and reused (``reuse.max_invocations``);
* ``same-host``: one host with ``TRELLIS_LOCAL_CALLS=0``, so the hop goes out
  over NATS and back into the same host;
* ``cross-host``: caller on one host, target on another (two host processes
  on this machine, loopback NATS).

Goal (issue 16): ≤ 100 µs of platform CPU per hop.

``BENCH_HOP_AB=NAME=VALUE`` measures every path a second time, in the same alternating
windows, on hosts started with that environment variable (``PYTHONPATH=DIR`` runs
another checkout): a before/after in one sitting. The twins' rows are named ``… (ab)``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.store import LatticeStore

from ._context import Context
from ._machine import CpuMeter
from ._procs import HostProc, Processes, new_lattice
from ._stats import latency_summary_us

SOURCES = Path(__file__).resolve().parent / "components" / "hop"
RUN = "bench:hop/entry.run"
GOAL_US = 100.0
#: hops per call of run(); enough that a hop's cost stands above the entry call's noise
HOPS = {"same-worker": 200, "same-worker-reuse": 200, "same-host": 40, "cross-host": 40}


def _hops(path: str) -> int:
    return HOPS[path.removesuffix(" (ab)")]


def build(out: Path) -> dict[str, Path]:
    """``hop-target.wasm`` and ``hop-caller.wasm`` from their WAT (wasm-tools, ~50 ms each)."""
    built = {}
    for name in ("target", "caller"):
        core, emb, comp = out / f"{name}.core.wasm", out / f"{name}.embedded.wasm", out / f"hop-{name}.wasm"
        for argv in (["parse", str(SOURCES / f"{name}.wat"), "-o", str(core)],
                     ["component", "embed", str(SOURCES / "hop.wit"), "--world", f"hop-{name}", str(core),
                      "-o", str(emb)],
                     ["component", "new", str(emb), "-o", str(comp)]):
            subprocess.run(["wasm-tools", *argv], check=True, capture_output=True, timeout=60)
        built[name] = comp
    return built


def _roles(nats_pid: int, hosts: list[HostProc]) -> dict[str, int]:
    roles = {"nats-server": nats_pid}
    for i, h in enumerate(hosts):
        roles[f"host-{i}"] = h.proc.pid
        for j, w in enumerate(h.wait_workers()):
            roles[f"host-{i}-worker-{j}"] = w
    return roles


async def _window(c: LatticeClient, caller: str, hops: int, seconds: float,
                  roles: dict[str, int]) -> dict[str, Any]:
    """Sequential ``run(hops)`` calls for ``seconds``: latency, calls, CPU of every process."""
    lat: list[float] = []
    deadline = time.perf_counter() + seconds
    with CpuMeter(roles) as meter:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            got = await c.call(caller, RUN, hops, 7, timeout_s=30)
            lat.append(time.perf_counter() - t)
            if got != 7 + hops:
                raise RuntimeError(f"{caller}: run({hops}, 7) answered {got!r}, expected {7 + hops}")
    return {"calls": len(lat), "cpu_s": round(sum(meter.used_s.values()), 4),
            "cpu_by_role_s": {r: round(s, 4) for r, s in meter.used_s.items()},
            "other_s": round(meter.other_s, 3), "wall_s": round(meter.wall_s, 3), **latency_summary_us(lat)}


async def run(ctx: Context) -> None:
    procs = Processes(ctx.workdir)
    try:
        wasm = build(ctx.workdir)
        nats = procs.nats()
        assert nats.proc is not None
        lattice = new_lattice()
        # path -> (caller's host, target's host, target's reuse)
        paths: dict[str, tuple[HostProc, HostProc, int]] = {}
        ab = os.environ.get("BENCH_HOP_AB", "")
        twins: list[tuple[str, dict[str, str]]] = [("", {})]
        if ab:
            name, _, value = ab.partition("=")
            twins.append((" (ab)", {name: value}))
        for suffix, env in twins:
            local = procs.host(nats.url, lattice, workers=1, label="local" + suffix.strip(" ()"), warm_cache=False,
                               env=env)
            remote_only = procs.host(nats.url, lattice, workers=1, label="nats-only" + suffix.strip(" ()"),
                                     warm_cache=False, env={**env, "TRELLIS_LOCAL_CALLS": "0"})
            other = procs.host(nats.url, lattice, workers=1, label="other" + suffix.strip(" ()"), warm_cache=False,
                               env=env)
            paths.update({
                f"same-worker{suffix}": (local, local, 1), f"same-worker-reuse{suffix}": (local, local, 1_000_000),
                f"same-host{suffix}": (remote_only, remote_only, 1), f"cross-host{suffix}": (local, other, 1)})
        roles = {p: _roles(nats.proc.pid, list({id(h): h for h in (a, b)}.values()))
                 for p, (a, b, _) in paths.items()}
        async with LatticeClient(nats.url, lattice) as c:
            assert c.nc is not None
            store = LatticeStore(c.nc, c.lattice)
            for path, (src, dst, reuse) in paths.items():
                caller, target = _name("caller", path), _name("target", path)
                spec: dict[str, Any] = {"reuse": {"max_invocations": reuse}} if reuse > 1 else {}
                await c.start_component(str(wasm["target"]), target, max_instances=4, host_id=dst.id, **spec)
                await c.start_component(str(wasm["caller"]), caller, max_instances=4, host_id=src.id)
                await store.put_link(Link(source_id=caller, target=target, wit_namespace="bench",
                                          wit_package="hop", interfaces=["target"]))
                await c.call(caller, RUN, 3, 7, timeout_s=30)  # link seen, code loaded
            window = ctx.pick(1.5, 4.0)
            rounds = ctx.pick(2, 3)
            raw: dict[str, dict[int, list[dict[str, Any]]]] = {p: {0: [], _hops(p): []} for p in paths}
            for path in paths:  # warm-up
                for hops in (0, _hops(path)):
                    await _window(c, _name("caller", path), hops, 0.5, roles[path])
            for r in range(rounds):
                for path in paths:
                    for hops in (0, _hops(path)):
                        w = await _window(c, _name("caller", path), hops, window, roles[path])
                        raw[path][hops].append(w)
                        print(f"   round {r + 1}/{rounds} {path:18s} run({hops:3d}) {w['calls']:5d} calls  "
                              f"{w['cpu_s'] / max(1, w['calls']) * 1e6:8.0f} CPU-µs/call  p50 {w['p50_us']:7.0f} µs",
                              flush=True)
        results = {p: _per_hop(raw[p], _hops(p)) for p in paths}
        ctx.details.update(hops=HOPS, window_s=window, rounds=rounds, results=results,
                           raw={p: {str(h): ws for h, ws in v.items()} for p, v in raw.items()})
        for path, res in results.items():
            ctx.row(f"CPU per component-to-component hop, {path}", "CPU µs", res["cpu_us_per_hop"], GOAL_US,
                    "issue 16's goal (≤ 100 µs)", goal_ratio=1.0, meets_goal=res["cpu_us_per_hop"] <= GOAL_US,
                    wall_us_per_hop=res["wall_us_per_hop"], cpu_us_per_hop_by_role=res["by_role"])
    finally:
        procs.close()


def _name(role: str, path: str) -> str:
    """A component id for ``role`` on ``path`` (twins' ids end in ``-ab``)."""
    return f"{role}-{path.removesuffix(' (ab)')}" + ("-ab" if path.endswith(" (ab)") else "")


def _per_hop(windows: dict[int, list[dict[str, Any]]], hops: int) -> dict[str, Any]:
    """(CPU per call of run(hops) − CPU per call of run(0)) / hops, over all windows; also by process."""
    def per_call(ws: list[dict[str, Any]], key: str | None = None) -> float:
        calls = sum(w["calls"] for w in ws)
        if key is None:
            return sum(w["cpu_s"] for w in ws) / max(1, calls)
        return sum(w["cpu_by_role_s"].get(key, 0.0) for w in ws) / max(1, calls)

    base, loaded = windows[0], windows[hops]
    roles = sorted({r for w in base + loaded for r in w["cpu_by_role_s"]})
    wall = (sum(w["wall_s"] for w in loaded) / max(1, sum(w["calls"] for w in loaded))
            - sum(w["wall_s"] for w in base) / max(1, sum(w["calls"] for w in base)))
    return {"cpu_us_per_hop": round((per_call(loaded) - per_call(base)) / hops * 1e6, 1),
            "wall_us_per_hop": round(wall / hops * 1e6, 1),
            "entry_cpu_us": round(per_call(base) * 1e6, 1),
            "by_role": {r: round((per_call(loaded, r) - per_call(base, r)) / hops * 1e6, 1) for r in roles}}
