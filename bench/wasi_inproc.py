"""The same order handler as a ``wasi:http`` and a ``trellis:http`` component, in one process.

``python -m bench.wasi_inproc [--n N] [--rounds R] [--pair python|js] [--json FILE]``

An :class:`~trellis.host.runtime.Invoker` per component (``POST /orders`` with the body
``bench.http`` sends), fresh and reused instances, CPU time per request
(``time.process_time``). The wasi:http component runs with the host's hot functions in
native code (:mod:`trellis.host.runtime.wasi_http.native`: C callbacks, and C implementations on
the request's state), with the C callbacks but the Python implementations (``state off``:
``TRELLIS_WASI_HTTP_NATIVE_STATE=0``), and without native code (``native off``: the ctypes
callbacks of :mod:`.fastcall`), all variants interleaved round by round so the machine's load
falls on each alike. Prints the best round of each, and the ratios. ``--pair js``: the same handler
in JavaScript (``bench/components/order-js-*``, componentize-js); its wasi:http one (StarlingMonkey's
``fetch`` event) serves one request per instance, so it runs fresh only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

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

from .http.load import BODY
from .http.tools import CACHE, build_js_component, build_trellis_component, build_wasi_component

H = "trellis:http/incoming-handler.handle"
REQUEST = {"method": "POST", "path-with-query": "/orders",
           "headers": [["content-type", b"application/json"], ["host", b"localhost"]], "body": BODY.encode()}


def _cpu_ms(inv: Invoker, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        r = inv.invoke(H, [REQUEST])
        assert r["status"] == 201, r
    return (time.process_time() - start) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="requests per reused sample (fresh: n/5)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pair", choices=["python", "js"], default="python")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    wasmtime_patches.apply()
    from trellis.host.runtime.wasi_http import native
    engine = make_engine(EngineSettings(consume_fuel=False))
    cache = CompileCache(CACHE / "inproc-compile")
    if args.pair == "python":
        paths = {"trellis:http": build_trellis_component(), "wasi:http": build_wasi_component()}
    else:
        paths = {"trellis:http": build_js_component("order-js-trellis"),
                 "wasi:http": build_js_component("order-js-wasi-http")}
    comps = {k: load_component(engine, p.read_bytes(), cache) for k, p in paths.items()}
    gc_tuning.tune()  # as a worker does once it has started (host/workers/worker.py)
    variants: list[tuple[str, str, bool, bool]] = [("trellis:http", "", True, True)]
    if native.available():
        variants += [("wasi:http", "native", True, True), ("wasi:http", "state off", True, False)]
    variants.append(("wasi:http", "native off", False, False))
    best: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    for rnd in range(args.rounds):
        for mode, reuse, n in (("reuse", 10**9, args.n), ("fresh", 1, max(50, args.n // 5))):
            for comp, label, on, state in variants:
                if args.pair == "js" and comp == "wasi:http" and mode == "reuse":
                    continue  # one request per instance (StarlingMonkey#247)
                native.enabled, native.state_enabled = on, state
                inv = Invoker(comps[comp], reuse=ReusePolicy(max_invocations=reuse), limits=Limits(timeout_s=30))
                _cpu_ms(inv, 20)  # warm: the first call of a new instance, caches
                ms = _cpu_ms(inv, n)
                key = f"{comp} {label} {mode}".replace("  ", " ")
                best[key] = min(best.get(key, ms), ms)
                samples.setdefault(key, []).append(round(ms, 4))
                print(f"round {rnd} {key}: {ms:.3f} CPU-ms/req", flush=True)
    native.enabled = native.state_enabled = True
    print()
    for k, v in best.items():
        print(f"{k:32s} {v:.3f} CPU-ms/req (best round)")
    for mode in ("reuse", "fresh"):
        base = best[f"trellis:http {mode}"]
        for _, label, _, _ in variants[1:]:
            if f"wasi:http {label} {mode}" not in best:
                continue
            print(f"wasi:http {label} / trellis:http, {mode}: {best[f'wasi:http {label} {mode}'] / base:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg(),
                                         "pair": args.pair,
                                         "n": args.n, "rounds": args.rounds, "cpu_ms_per_request_best": best,
                                         "cpu_ms_per_request_rounds": samples}, indent=1) + "\n")


if __name__ == "__main__":
    main()
