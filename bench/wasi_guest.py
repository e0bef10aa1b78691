"""Where a request's CPU goes, guest against host: the same handler as ``wasi:http`` and ``trellis:http``.

``python -m bench.wasi_guest [--n N] [--rounds R] [--pairs python js] [--modes reuse fresh] [--freq HZ] [--json FILE]``

Each component of a pair runs alone in a child process (an :class:`~trellis.host.runtime.Invoker`,
``POST /orders`` with the body ``bench.http`` sends, as :mod:`bench.wasi_inproc` does) under
``perf record``, with wasmtime's ``perfmap`` profiler so that perf names the guest's own Wasm
functions. perf samples only the timed loop (``--control``: the child enables it after its
warm-up and disables it before it reports). Every sample is put in one bucket:

* ``guest``: the component's compiled Wasm (by Wasm module: the interpreter, its runtime's
  lifting and lowering, its libc), less wasmtime's trampolines in it;
* ``wasmtime``: ``libwasmtime`` and the trampolines (entering and leaving Wasm, the
  canonical ABI's values for each host call);
* ``host Python``: CPython (the invoker, the host's ``wasi:http`` implementation);
* ``host C``: the host's native callbacks (``_trellis_wasi_native``), ctypes and libffi;
* ``libc`` and ``kernel``.

Each bucket's share times the loop's CPU per request (``time.process_time``) is its CPU-ms
per request. With ``--rounds R`` the two components of a pair run alternately R times and
each keeps its round of least CPU per request (the least disturbed by the machine's other
load). The child also counts, in a separate warm-up invoker, the host's ``wasi:io`` /
``wasi:http`` functions a request calls (each one a crossing; the handles' drops are not
counted). The report says, per pair and mode: CPU per request by bucket, the wasi:http /
trellis:http ratio, the ratio if the wasi:http request's host share (host Python + host C)
were the trellis:http request's (``ratio_if_host_as_trellis``), and the ratio of the guest
and wasmtime alone (``ratio_guest_and_wasmtime_only``): the part only the guest's toolchain
(and the number of crossings it makes) can change.

Needs ``perf`` (Debian: linux-perf) and permission to use it (root here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

H = "trellis:http/incoming-handler.handle"
_WASM = re.compile(r"^\[\.\] wasm\[(\d+)\]::(.*)$")
_TRAMPOLINE = ("trampoline", "wasm_to_array", "array_to_wasm")


def _components(pair: str) -> dict[str, Path]:
    from .http.tools import build_js_component, build_trellis_component, build_wasi_component

    if pair == "python":
        return {"trellis:http": build_trellis_component(), "wasi:http": build_wasi_component()}
    return {"trellis:http": build_js_component("order-js-trellis"),
            "wasi:http": build_js_component("order-js-wasi-http")}


# --- the child: one component, one mode, the timed loop between perf's enable and disable ----------

def _count_imports(loaded: Any, request: dict[str, Any], reuse: int) -> dict[str, float]:
    """The host's wasi:io / wasi:http functions one request calls, by name (a warm-up invoker
    whose functions count their calls; the dicts are restored before the measured one is made)."""
    from trellis.host.runtime import Invoker, Limits, ReusePolicy
    from trellis.host.runtime.wasi_http import io, native, types

    counts: Counter[str] = Counter()
    saved = {id(d): dict(d) for d in (io.IO, types.HTTP)}
    state, native.state_enabled = native.state_enabled, False  # every call through the counted Python ones

    def counting(name: str, impl: Any) -> Any:
        def run(args: list[Any]) -> Any:
            counts[name] += 1
            return impl(args)
        return run
    try:
        for table in (io.IO, types.HTTP):
            for key, impl in list(table.items()):
                table[key] = counting(key[1], impl)
        inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=reuse), limits=Limits(timeout_s=30))
        inv.invoke(H, [request])
        counts.clear()
        n = 10
        for _ in range(n):
            inv.invoke(H, [request])
        inv.close()
    finally:
        native.state_enabled = state
        for table in (io.IO, types.HTTP):
            table.clear()
            table.update(saved[id(table)])
    return {k: v / n for k, v in sorted(counts.items())}


def child(path: Path, mode: str, n: int, ctl: str | None, ack: str | None) -> None:
    from trellis.host.runtime import (
        EngineSettings,
        Invoker,
        Limits,
        ReusePolicy,
        load_component,
        make_engine,
        wasmtime_patches,
    )
    from trellis.host.runtime.cache import CompileCache
    from trellis.kit import gc_tuning

    from .http.tools import CACHE
    from .wasi_inproc import REQUEST

    wasmtime_patches.apply()
    engine = make_engine(EngineSettings(consume_fuel=False, profiler="perfmap" if ctl else None))
    loaded = load_component(engine, path.read_bytes(), CompileCache(CACHE / "inproc-compile"))
    gc_tuning.tune()
    reuse = 10**9 if mode == "reuse" else 1
    calls = _count_imports(loaded, REQUEST, reuse)
    inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=reuse), limits=Limits(timeout_s=30))
    for _ in range(20):
        r = inv.invoke(H, [REQUEST])
        assert r["status"] == 201, r

    def perf(command: str) -> None:
        if ctl is None or ack is None:
            return
        with open(ctl, "w") as c:
            c.write(command + "\n")
        with open(ack) as a:
            a.readline()
    perf("enable")
    start = time.process_time()
    for _ in range(n):
        inv.invoke(H, [REQUEST])
    cpu = time.process_time() - start
    perf("disable")
    print(json.dumps({"cpu_ms_per_request": cpu / n * 1e3, "calls_per_request": calls}), flush=True)


# --- the parent ------------------------------------------------------------------------------------

def _bucket(dso: str, sym: str) -> tuple[str, str | None]:
    """(bucket, the guest's Wasm module index or None)."""
    m = _WASM.match(sym)
    if m or dso.endswith(".cwasm") or dso.startswith("perf-"):
        if any(t in sym for t in _TRAMPOLINE):
            return "wasmtime", None
        return "guest", m.group(1) if m else "?"
    if "wasmtime" in dso:
        return "wasmtime", None
    if dso.startswith(("libpython", "python")):
        return "host Python", None
    if dso.startswith(("_trellis_wasi_native", "_ctypes", "libffi")):
        return "host C", None
    if dso.startswith(("libc.", "ld-linux", "libm.")):
        return "libc", None
    if dso.startswith("[kernel") or dso == "[vdso]":
        return "kernel", None
    return "other", None


def _report(data: Path) -> list[tuple[float, str, str]]:
    out = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym", "-q",
                          "-t", "|", "--percent-limit", "0"], capture_output=True, text=True, timeout=600)
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 3:
            continue
        try:
            share = float(parts[0].strip().rstrip("%"))
        except ValueError:
            continue
        rows.append((share, parts[1].strip(), "|".join(parts[2:]).strip()))
    return rows


def measure(path: Path, mode: str, n: int, freq: int, workdir: Path) -> dict[str, Any]:
    """One component in one mode under perf: CPU per request by bucket, the guest's modules, import calls."""
    ctl, ack, data = workdir / "ctl", workdir / "ack", workdir / f"{path.stem}-{mode}.data"
    for fifo in (ctl, ack):
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
    cmd = ["perf", "record", "-q", "-D", "-1", "--control", f"fifo:{ctl},{ack}", "-F", str(freq), "-o", str(data),
           "--", sys.executable, "-m", "bench.wasi_guest", "--child", str(path), mode, str(n),
           "--ctl", str(ctl), "--ack", str(ack)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-1500:]}")
    result = json.loads(line)
    per = result["cpu_ms_per_request"]
    buckets: Counter[str] = Counter()  # (float shares)
    modules: Counter[str] = Counter()
    module_syms: dict[str, Counter[str]] = {}
    top: list[tuple[float, str]] = []
    for share, dso, sym in _report(data):
        bucket, module = _bucket(dso, sym)
        buckets[bucket] += share  # type: ignore[assignment]  # Counter of floats
        if module is not None:
            modules[module] += share  # type: ignore[assignment]  # as above
            name = _WASM.sub(r"\2", sym).split("::")[-1]
            module_syms.setdefault(module, Counter())[name] += share  # type: ignore[assignment]  # as above
        top.append((share, f"{dso}: {sym}"))
    total = sum(buckets.values()) or 1.0
    data.unlink(missing_ok=True)
    return {
        "cpu_ms_per_request": round(per, 4),
        "ms_per_request": {k: round(per * v / total, 4) for k, v in buckets.most_common()},
        "guest_modules": {f"wasm[{k}] ({', '.join(s for s, _ in module_syms[k].most_common(3))})":
                          round(per * v / total, 4) for k, v in modules.most_common(8)},
        "top_symbols": [(round(s, 2), name) for s, name in sorted(top, reverse=True)[:15]],
        "calls_per_request": result["calls_per_request"],
    }


def _summary(pair: str, mode: str, t: dict[str, Any], w: dict[str, Any]) -> dict[str, Any]:
    tb, wb = t["ms_per_request"], w["ms_per_request"]

    def host(b: dict[str, float]) -> float:
        return b.get("host Python", 0.0) + b.get("host C", 0.0)
    floor = w["cpu_ms_per_request"] - host(wb) + host(tb)  # the host's share as small as trellis:http's
    calls = sum(w["calls_per_request"].values())
    return {
        "pair": pair, "mode": mode,
        "trellis_ms": t["cpu_ms_per_request"], "wasi_ms": w["cpu_ms_per_request"],
        "ratio": round(w["cpu_ms_per_request"] / t["cpu_ms_per_request"], 3),
        "guest_ms": {"trellis": tb.get("guest", 0.0), "wasi": wb.get("guest", 0.0)},
        "wasmtime_ms": {"trellis": tb.get("wasmtime", 0.0), "wasi": wb.get("wasmtime", 0.0)},
        "host_ms": {"trellis": round(host(tb), 4), "wasi": round(host(wb), 4)},
        "ratio_if_host_as_trellis": round(floor / t["cpu_ms_per_request"], 3),
        "ratio_guest_and_wasmtime_only": round((wb.get("guest", 0) + wb.get("wasmtime", 0)) /
                                               max(1e-9, tb.get("guest", 0) + tb.get("wasmtime", 0)), 3),
        "host_calls_per_request": calls,
        "guest_extra_ms_per_host_call": round((wb.get("guest", 0) - tb.get("guest", 0)) / calls, 5) if calls else None,
        "wasmtime_extra_ms_per_host_call": round((wb.get("wasmtime", 0) - tb.get("wasmtime", 0)) / calls, 5)
        if calls else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="requests per reused sample (fresh: n/5)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per component; the least CPU kept")
    ap.add_argument("--pairs", nargs="+", default=["python", "js"], choices=["python", "js"])
    ap.add_argument("--modes", nargs="+", default=["reuse", "fresh"], choices=["reuse", "fresh"])
    ap.add_argument("--freq", type=int, default=2999, help="perf's sampling frequency (Hz)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", nargs=3, metavar=("WASM", "MODE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--ctl", help=argparse.SUPPRESS)
    ap.add_argument("--ack", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], int(args.child[2]), args.ctl, args.ack)
        return
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg(), "n": args.n,
                               "rounds": args.rounds, "freq": args.freq, "systems": {}, "summary": []}
    with tempfile.TemporaryDirectory(prefix="trellis-wasi-guest-") as tmp:
        for pair in args.pairs:
            comps = _components(pair)
            for mode in args.modes:
                n = args.n if mode == "reuse" else max(50, args.n // 5)
                got: dict[str, dict[str, Any]] = {}
                for rnd in range(args.rounds):
                    for world, path in comps.items():
                        if pair == "js" and world == "wasi:http" and mode == "reuse":
                            # StarlingMonkey's fetch event answers one request per instance (StarlingMonkey#247)
                            if rnd == 0:
                                print(f"{pair:6s} {world:12s} {mode:5s} not possible: one request per instance")
                            continue
                        r = measure(path, mode, n, args.freq, Path(tmp))
                        print(f"{pair:6s} {world:12s} {mode:5s} round {rnd}: {r['cpu_ms_per_request']:.3f} CPU-ms/req: "
                              + ", ".join(f"{k} {v:.3f}" for k, v in r["ms_per_request"].items()), flush=True)
                        r["rounds_cpu_ms"] = [*got.get(world, {}).get("rounds_cpu_ms", []), r["cpu_ms_per_request"]]
                        if world not in got or r["cpu_ms_per_request"] < got[world]["cpu_ms_per_request"]:
                            got[world] = r
                        else:
                            got[world]["rounds_cpu_ms"] = r["rounds_cpu_ms"]
                for world, r in got.items():
                    results["systems"][f"{pair} {world} {mode}"] = r
                    print(f"{pair:6s} {world:12s} {mode:5s} best: {r['cpu_ms_per_request']:.3f} CPU-ms/req", flush=True)
                    for k, v in r["guest_modules"].items():
                        print(f"{'':26s}guest {k}: {v:.3f}")
                if len(got) == 2:
                    s = _summary(pair, mode, got["trellis:http"], got["wasi:http"])
                    results["summary"].append(s)
                    print(json.dumps(s), flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
