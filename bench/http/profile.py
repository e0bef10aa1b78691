"""Where a Trellis HTTP request's time goes: py-spy on every process of one system under the wrk load.

``python -m bench.http.profile [--mode fresh|reuse|full-app|full-app-reuse] [--workers W] [--seconds S] [--native] [--gil]``

Starts one Trellis system (as ``bench.http`` does), runs wrk for ``S``
seconds and meanwhile ``py-spy record``s the http-server provider and each
worker process (``--native`` adds C/Rust frames: wasmtime's instantiation,
memory setup). Prints, per process, the functions with the most samples
(self and inclusive, via ``bench.profile.summarize``), and the CPU each
process used per request. Results: ``bench/results/http-profile-MODE.json``.
Needs py-spy (``pip install py-spy``) and ptrace permission (root here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from ..__main__ import RESULTS
from ..profile import summarize
from . import peers, tools
from .load import lua_script, run_wrk


def _roles(system: Any) -> dict[str, int]:
    roles: dict[str, int] = {"host": system.host.proc.pid}
    for child in psutil.Process(system.host.proc.pid).children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "host.workers" in cmd:
            roles[f"worker-{len([r for r in roles if r.startswith('worker')])}"] = child.pid
        elif "http_server" in cmd or "http-server" in cmd:
            roles["http-server"] = child.pid
        elif "providers" in cmd:
            name = next((w.rsplit(".", 1)[-1] for w in child.cmdline() if "providers." in w), f"provider-{child.pid}")
            roles[name] = child.pid
    if getattr(system, "nats", None) is not None and system.nats.proc is not None:
        roles["nats-server"] = system.nats.proc.pid
    return roles


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http.profile", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["fresh", "reuse", "full-app", "full-app-reuse"], default="fresh")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--native", action="store_true", help="include native frames (wasmtime)")
    p.add_argument("--raw-dir", type=Path, help="keep py-spy's raw stacks (one file per process) here")
    p.add_argument("--gil", action="store_true",
                   help="only samples of threads holding the GIL: where Python code spends CPU, no waiting")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: pip install py-spy")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="trellis-bench-http-profile-"))
    if args.mode.startswith("full-app"):
        system: Any = peers.TrellisFullApp(workdir, args.workers, 1_000_000 if args.mode.endswith("reuse") else 1)
    else:
        system = peers.TrellisSingle(workdir, tools.build_trellis_component(), args.workers,
                                     1 if args.mode == "fresh" else 1_000_000)
    out: dict[str, Any] = {"mode": args.mode, "workers": args.workers, "native": args.native}
    try:
        system.start()
        roles = _roles(system)
        script = lua_script(workdir / "p.lua")
        run_wrk(system.url, script, 2, system.roots)  # warm-up
        cpu0 = {r: sum(psutil.Process(pid).cpu_times()[:2]) for r, pid in roles.items()}
        spies = {}
        for role, pid in roles.items():
            raw = workdir / f"{role}.txt"
            extra = (["--native"] if args.native else []) + (["--gil"] if args.gil else [])
            spies[role] = (raw, subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "200", "--format", "raw",
                 "--threads", *([] if args.native else ["--nonblocking"]), "--output", str(raw), *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        time.sleep(0.5)
        load = run_wrk(system.url, script, args.seconds, system.roots)
        cpu1 = {r: sum(psutil.Process(pid).cpu_times()[:2]) for r, pid in roles.items()}
        out["load"] = load
        out["cpu_ms_per_request"] = {r: round((cpu1[r] - cpu0[r]) / max(1, load["requests"]) * 1e3, 3) for r in roles}
        for role, (raw, proc) in spies.items():
            try:
                _, err = proc.communicate(timeout=args.seconds + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if raw.exists():
                out[role] = summarize(raw.read_text(), top=20)
                if args.raw_dir is not None:
                    args.raw_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy(raw, args.raw_dir / raw.name)
            else:
                out[f"{role}_error"] = err.decode(errors="replace")[-400:]
    finally:
        system.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    path = RESULTS / f"http-profile-{args.mode}{'-native' if args.native else ''}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{args.mode}, {args.workers} worker(s): {out['load']['rps']:.0f} req/s, CPU ms/request "
          + ", ".join(f"{r} {v:.2f}" for r, v in out["cpu_ms_per_request"].items()))
    for role in out:
        if isinstance(out[role], dict) and any(isinstance(v, dict) and "self" in v for v in out[role].values()):
            for kind, g in out[role].items():
                print(f"\n== {role} / {kind} ({g['samples']} samples): self")
                for f, pct in g["self"][:12]:
                    print(f"   {pct:5.1f}%  {f}")
                print("   inclusive (own code):")
                for f, pct in g["inclusive_own_code"][:12]:
                    print(f"   {pct:5.1f}%  {f}")
    print(f"\n({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
