"""Where the full orders app's memory and CPU go under load: per process and per component.

``python -m bench.density.anatomy [--seconds S] [--workers W] [--fresh] [--env NAME=VALUE ...] [--regions]
[--smaps DIR]``

Starts the orders app on Trellis as ``python -m bench density``'s load stage does
(``examples/platform-poc``, instance reuse, one host with W workers), warms it
with wrk, then runs one wrk window at c=20 and meanwhile samples every 0.5 s:

* each process's PSS (``/proc/PID/smaps_rollup``; anonymous and file-backed),
  keeping each one's peak and the peak of their sum;
* the live instances of each component (every host's ``usage``, summed over
  its workers), keeping each one's peak;

and reads each process's CPU over the window (CPU-ms per order). ``--smaps DIR`` keeps each
process's ``/proc/PID/smaps`` at the sample where the sum peaked (``DIR/PROCESS.smaps``), for a
look mapping by mapping (glibc's thread arenas, the instances' dirtied image pages, stacks). Prints one table
per view; ``--json FILE`` keeps them. ``--env`` sets variables for the host (an
A/B is two runs in alternating order; ``python -m bench density`` with
``BENCH_DENSITY_AB`` is the side-by-side one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil

from ..http import peers
from ..http.load import lua_script, run_wrk
from ..http.profile import _roles
from . import REUSE
from .meter import pss_kib
from .regions import regions


def _live_instances(nats_url: str, lattice: str) -> dict[str, int]:
    from trellis.interfaces.client import LatticeClient

    async def go() -> dict[str, int]:
        async with LatticeClient(nats_url, lattice) as c:
            out: dict[str, int] = {}
            for host in await c.get_usage(timeout_s=2.0):
                for cid, u in host.get("components", {}).items():
                    out[cid] = out.get(cid, 0) + int(u.get("instances", 0))
            return out

    return asyncio.run(go())


class Sampler:
    """Peaks of each role's PSS, of their sum, and of each component's live instances."""

    def __init__(self, roles: dict[str, int], nats_url: str, lattice: str, every_s: float = 0.5,
                 with_regions: bool = False, smaps_dir: Path | None = None) -> None:
        self.roles, self.nats_url, self.lattice, self.every_s = roles, nats_url, lattice, every_s
        self.with_regions = with_regions
        #: where each process's /proc/PID/smaps goes at the sample where the sum peaked
        self.smaps_dir = smaps_dir
        #: each process's PSS by kind of region, read at the sample where the sum peaked
        self.regions: dict[str, dict[str, dict[str, float]]] = {}
        self.pss: dict[str, dict[str, float]] = {}
        self.peak_sum = 0.0
        self.instances: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="anatomy", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = 0.0
            for role, pid in self.roles.items():
                k = pss_kib(pid)
                if not k:
                    continue
                mib = {"pss": k.get("Pss", 0) / 1024, "anon": k.get("Pss_Anon", 0) / 1024,
                       "file": k.get("Pss_File", 0) / 1024}
                total += mib["pss"]
                if mib["pss"] > self.pss.get(role, {}).get("pss", 0.0):
                    self.pss[role] = {k2: round(v, 1) for k2, v in mib.items()}
            if total > self.peak_sum:
                self.peak_sum = round(total, 1)
                if self.with_regions:
                    self.regions = {role: regions(pid) for role, pid in self.roles.items()}
                if self.smaps_dir is not None:
                    self.smaps_dir.mkdir(parents=True, exist_ok=True)
                    for role, pid in self.roles.items():
                        try:
                            (self.smaps_dir / f"{role}.smaps").write_bytes(Path(f"/proc/{pid}/smaps").read_bytes())
                        except OSError:
                            pass
            try:
                for cid, n in _live_instances(self.nats_url, self.lattice).items():
                    self.instances[cid] = max(self.instances.get(cid, 0), n)
            except Exception as exc:  # a slow answer under load: the next sample
                print(f"   usage: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._stop.wait(self.every_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu(roles: dict[str, int]) -> dict[str, float]:
    out = {}
    for role, pid in roles.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[role] = t.user + t.system
        except psutil.Error:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.density.anatomy", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fresh", action="store_true", help="fresh instances (default: reuse)")
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="the host's environment")
    p.add_argument("--regions", action="store_true",
                   help="also each process's PSS by kind of memory region at the peak (regions.py)")
    p.add_argument("--smaps", type=Path, default=None, metavar="DIR",
                   help="keep each process's /proc/PID/smaps at the peak in DIR (PROCESS.smaps)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    workdir = Path(tempfile.mkdtemp(prefix="trellis-bench-anatomy-"))
    system = peers.TrellisFullApp(workdir, args.workers, 1 if args.fresh else REUSE, env=env)
    out: dict[str, Any] = {"workers": args.workers, "reuse": not args.fresh, "env": env,
                           "loadavg_before": [round(x, 2) for x in psutil.getloadavg()]}
    try:
        system.start()
        roles = _roles(system)
        roles.update({f"wadm-{i}": proc.pid for i, proc in enumerate(system._procs) if proc.poll() is None})
        out["pss_before_load"] = {r: round(pss_kib(pid).get("Pss", 0) / 1024, 1) for r, pid in roles.items()}
        script = lua_script(workdir / "anatomy.lua")
        run_wrk(system.url, script, 3, system.roots)  # warm-up
        cpu0 = _cpu(roles)
        with Sampler(roles, system.nats.url, system.lattice, with_regions=args.regions,
                     smaps_dir=args.smaps) as s:
            load = run_wrk(system.url, script, args.seconds, system.roots)
        cpu1 = _cpu(roles)
        out["pss_after_load"] = {r: round(pss_kib(pid).get("Pss", 0) / 1024, 1) for r, pid in roles.items()}
        n = max(1, load["requests"])
        out.update(rps=load["rps"], p50_ms=load["p50_ms"], p99_ms=load["p99_ms"], success_pct=load["success_pct"],
                   cpu_ms_per_request=load["cpu_ms_per_request"], peak_pss_mib=s.peak_sum,
                   loadavg_after=[round(x, 2) for x in psutil.getloadavg()],
                   by_process={r: {**s.pss.get(r, {}), "cpu_ms_per_request": round((cpu1[r] - cpu0[r]) / n * 1e3, 3)}
                               for r in roles if r in cpu1 and r in cpu0},
                   peak_instances=dict(sorted(s.instances.items())))
        if args.regions:
            out["regions_at_peak"] = s.regions
    finally:
        system.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{out['rps']:.0f} req/s, p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, ok {out['success_pct']} %, "
          f"{out['cpu_ms_per_request']} CPU-ms/order, peak PSS (sum of the samples) {out['peak_pss_mib']} MiB, "
          f"load {out['loadavg_before']} -> {out['loadavg_after']}")
    print(f"   {'process':24s} {'before':>7s} {'peak PSS':>9s} {'anon':>7s} {'file':>7s} {'after':>7s} "
          f"{'CPU-ms/order':>13s}")
    for role, r in sorted(out["by_process"].items(), key=lambda kv: -kv[1].get("pss", 0)):
        print(f"   {role:24s} {out['pss_before_load'].get(role, 0):7.1f} {r.get('pss', 0):9.1f} "
              f"{r.get('anon', 0):7.1f} {r.get('file', 0):7.1f} {out['pss_after_load'].get(role, 0):7.1f} "
              f"{r['cpu_ms_per_request']:13.3f}")
    print("   live instances at peak (summed over workers): "
          + ", ".join(f"{c} {n}" for c, n in out["peak_instances"].items()))
    for role, kinds in out.get("regions_at_peak", {}).items():
        print(f"   {role}: " + ", ".join(f"{k} {v['pss']:.1f} ({v['mappings']})" for k, v in kinds.items()
                                        if v["pss"] >= 0.5 or k.startswith("reservations")))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
