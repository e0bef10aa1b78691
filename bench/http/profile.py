"""Where a Trellis HTTP request's time goes: py-spy on every process of one system under the wrk load.

``python -m bench.http.profile [--mode fresh|reuse|full-app|full-app-reuse] [--workers W] [--seconds S]
[--native] [--gil] [--perf] [--wasi]``

Starts one Trellis system (as ``bench.http`` does), runs wrk for ``S``
seconds and meanwhile ``py-spy record``s the http-server provider and each
worker process (``--native`` adds C/Rust frames: wasmtime's instantiation,
memory setup). Prints, per process, the functions with the most samples
(self and inclusive, via ``bench.profile.summarize``), and the CPU each
process used per request. Results: ``bench/results/http-profile-MODE.json``.
Needs py-spy (``pip install py-spy``) and ptrace permission (root here).

``--perf`` uses Linux ``perf record`` instead and answers a coarser question:
per process, how its CPU splits between the Python interpreter, the kernel,
Wasm code (compiled guest code: perf's ``[JIT]``), wasmtime's runtime and
libc, in CPU-ms per request, and how many context switches each process
makes per request (``/proc/PID/task/*/status``).
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
        if "trellis.host.workers.zygote" in cmd and child.ppid() == system.host.proc.pid:
            roles["worker-zygote"] = child.pid  # the workers' parent (its forks have its command line)
        elif "trellis.host.workers" in cmd:
            roles[f"worker-{len([r for r in roles if r.startswith('worker-') and r != 'worker-zygote'])}"] = child.pid
        elif "http_server" in cmd or "http-server" in cmd:
            roles["http-server"] = child.pid
        elif "providers" in cmd:
            name = next((w.rsplit(".", 1)[-1] for w in child.cmdline() if "providers." in w), f"provider-{child.pid}")
            roles[name] = child.pid
    if getattr(system, "nats", None) is not None and system.nats.proc is not None:
        roles["nats-server"] = system.nats.proc.pid
    return roles


#: perf's DSO names, by what runs there
_DSO_KINDS = (("wasm code", ("[JIT]", ".cwasm", "//anon", "[anon")), ("kernel", ("[kernel", "[vdso]")),
              ("wasmtime", ("_libwasmtime",)),
              ("python", ("libpython", ".cpython-", "python3")), ("libc", ("libc.so", "libm.so", "ld-linux")))


def _dso_kind(dso: str) -> str:
    return next((kind for kind, marks in _DSO_KINDS if any(m in dso for m in marks)), "other")


def _switches(pid: int) -> int:
    """Context switches (voluntary and not) of all of a process's threads so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split(":")[1])
        except (OSError, ValueError):
            continue
    return total


def _perf_shares(data: Path) -> dict[str, float]:
    """Share (%) of a ``perf record`` file's samples per DSO (compiled Wasm is mapped anonymously,
    perf's ``[JIT]``, or from the compile cache's ``.cwasm`` file)."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "--percentage", "relative"],
                         capture_output=True, text=True, timeout=120).stdout
    shares: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].endswith("%") and not line.lstrip().startswith("#"):
            dso = parts[1].strip()
            shares[dso] = shares.get(dso, 0.0) + float(parts[0].rstrip("%"))
    return shares


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http.profile", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["fresh", "reuse", "full-app", "full-app-reuse"], default="fresh")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--native", action="store_true", help="include native frames (wasmtime)")
    p.add_argument("--wasi", action="store_true",
                   help="fresh/reuse modes: the wasi:http proxy component (order-wasi-http) instead of trellis:http")
    p.add_argument("--raw-dir", type=Path,
                   help="keep the raw samples here: py-spy's stacks, or with --perf the perf.data files "
                        "(one per process; `perf report -i F --sort sym` names guest functions)")
    p.add_argument("--perf", action="store_true",
                   help="perf record instead of py-spy: CPU per request by kind of code, and context switches")
    p.add_argument("--gil", action="store_true",
                   help="only samples of threads holding the GIL: where Python code spends CPU, no waiting")
    args = p.parse_args(argv)
    if shutil.which("perf" if args.perf else "py-spy") is None:
        print("perf not found (Debian: linux-perf)" if args.perf else "py-spy not found: pip install py-spy")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="trellis-bench-http-profile-"))
    if args.mode.startswith("full-app"):
        system: Any = peers.TrellisFullApp(workdir, args.workers, 1_000_000 if args.mode.endswith("reuse") else 1)
    else:
        wasm = tools.build_wasi_component() if args.wasi else tools.build_trellis_component()
        system = peers.TrellisSingle(workdir, wasm, args.workers, 1 if args.mode == "fresh" else 1_000_000,
                                     wasi_http=args.wasi)
    out: dict[str, Any] = {"mode": args.mode, "workers": args.workers, "native": args.native, "wasi": args.wasi}
    try:
        system.start()
        roles = _roles(system)
        script = lua_script(workdir / "p.lua")
        run_wrk(system.url, script, 2, system.roots)  # warm-up
        cpu0 = {r: sum(psutil.Process(pid).cpu_times()[:2]) for r, pid in roles.items()}
        run = _perf_run if args.perf else _spy_run
        out.update(run(system, script, roles, cpu0, args, workdir))
    finally:
        system.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    path = RESULTS / (f"http-profile-{'wasi-' if args.wasi else ''}{args.mode}{'-native' if args.native else ''}"
                      f"{'-perf' if args.perf else ''}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{args.mode}, {args.workers} worker(s): {out['load']['rps']:.0f} req/s, CPU ms/request "
          + ", ".join(f"{r} {v:.2f}" for r, v in out["cpu_ms_per_request"].items()))
    for role, kinds in out.get("cpu_ms_per_request_by_code", {}).items():
        print(f"   {role:16s} {out['switches_per_request'][role]:6.1f} switches/req   "
              + "  ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
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


def _spy_run(system: Any, script: Path, roles: dict[str, int], cpu0: dict[str, float], args: Any,
             workdir: Path) -> dict[str, Any]:
    """``py-spy record`` every process during one wrk window: the functions with the most samples."""
    spies = {}
    for role, pid in roles.items():
        raw = workdir / f"{role}.txt"
        extra = (["--native"] if args.native else []) + (["--gil"] if args.gil else [])
        spies[role] = (raw, subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "200", "--format",
             "raw", "--threads", *([] if args.native else ["--nonblocking"]), "--output", str(raw), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    time.sleep(0.5)
    load = run_wrk(system.url, script, args.seconds, system.roots)
    cpu1 = {r: sum(psutil.Process(pid).cpu_times()[:2]) for r, pid in roles.items()}
    out: dict[str, Any] = {
        "load": load,
        "cpu_ms_per_request": {r: round((cpu1[r] - cpu0[r]) / max(1, load["requests"]) * 1e3, 3) for r in roles}}
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
    return out


def _perf_run(system: Any, script: Path, roles: dict[str, int], cpu0: dict[str, float], args: Any,
              workdir: Path) -> dict[str, Any]:
    """``perf record`` every process during one wrk window: CPU-ms per request by kind of code."""
    seconds = args.seconds
    sw0 = {r: _switches(pid) for r, pid in roles.items()}
    perfs = {r: subprocess.Popen(["perf", "record", "-F", "499", "-o", str(workdir / f"{r}.perf"), "-p", str(pid),
                                  "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for r, pid in roles.items()}
    load = run_wrk(system.url, script, seconds, system.roots)
    cpu1 = {r: sum(psutil.Process(pid).cpu_times()[:2]) for r, pid in roles.items()}
    sw1 = {r: _switches(pid) for r, pid in roles.items()}
    n = max(1, load["requests"])
    cpu = {r: (cpu1[r] - cpu0[r]) / n * 1e3 for r in roles}
    by_code: dict[str, dict[str, float]] = {}
    by_dso: dict[str, dict[str, float]] = {}
    for role, proc in perfs.items():
        try:
            proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        shares = _perf_shares(workdir / f"{role}.perf")
        if args.raw_dir is not None:
            args.raw_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(workdir / f"{role}.perf", args.raw_dir / f"{role}.perf")
        kinds: dict[str, float] = {}
        for dso, pct in shares.items():
            kinds[_dso_kind(dso)] = kinds.get(_dso_kind(dso), 0.0) + cpu[role] * pct / 100
        by_code[role] = {k: round(v, 3) for k, v in kinds.items()}
        by_dso[role] = {dso: round(pct, 2) for dso, pct in sorted(shares.items(), key=lambda kv: -kv[1])[:12]}
    return {"load": load, "cpu_ms_per_request": {r: round(v, 3) for r, v in cpu.items()},
            "cpu_ms_per_request_by_code": by_code, "perf_percent_by_dso": by_dso,
            "switches_per_request": {r: round((sw1[r] - sw0[r]) / n, 1) for r in roles}}


if __name__ == "__main__":
    sys.exit(main())
