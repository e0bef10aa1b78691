"""Large values across the host-guest boundary: a query result of N rows.

The value is what ``GET /orders`` of the orders app carries into orders-service:
``result<list<list<tuple<string, sql-value>>>, error>``, N rows of five cells. Each
row puts Trellis beside the baseline it replaced, measured in this one process:

* **lower**: the codec's checked value written into wasmtime's C structs, in place
  (``trellis.host.runtime.lower_in_place``) vs wasmtime-py's own conversion;
* **round trip**: the value through an echo component (lowered into its export,
  lifted at its import, lowered back as the import's result, lifted as the
  export's result), in place vs wasmtime-py's conversion;
* **decode**: the reply frame that carries the rows (msgpack), with the collector
  settings of Trellis's workers and providers (``trellis.kit.gc_tuning``) vs Python's;
* **codec**: plain -> wasmtime-py values and back, no baseline (the per-value code it
  replaced is gone; docs/performance.md has its figures).

Each figure is the best of several runs, in milliseconds.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable
from typing import Any

import msgpack
import wasmtime
from wasmtime import _ffi as ffi

from tests.components.echo import echo_component_wat
from trellis.host.runtime import (
    Invoker,
    from_plain,
    load_component,
    lower_in_place,
    make_engine,
    to_plain,
    wasmtime_patches,
)
from trellis.host.runtime.engine import EngineSettings
from trellis.host.runtime.wit import ListT, Prim, ResultT, TupleT, VariantT
from trellis.kit import gc_tuning

from ._context import Context

SQL_VALUE = VariantT((("null", None), ("bool", Prim("bool")), ("int", Prim("s64")), ("float", Prim("f64")),
                      ("text", Prim("string")), ("blob", ListT(Prim("u8")))))
ROWS = ResultT(ListT(ListT(TupleT((Prim("string"), SQL_VALUE)))), VariantT((("other", Prim("string")),)))


def rows(n: int) -> dict[str, Any]:
    return {"ok": [[["order_number", {"text": f"0b8e0c1e-aaaa-bbbb-cccc-{i:012d}"}], ["total", {"int": 1000}],
                    ["sku", {"text": "ENG-V8-500"}], ["price", {"int": 1000}], ["quantity", {"int": 1}]]
                   for i in range(n)]}


def best_ms(f: Callable[[], Any], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return round(best * 1e3, 1)


def _in_place(on: bool, f: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        lower_in_place.enabled = on
        try:
            return f()
        finally:
            lower_in_place.enabled = True
    return run


def run(ctx: Context) -> None:
    n = ctx.pick(3000, 12000)
    runs = ctx.pick(3, 5)
    plain = rows(n)
    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine(EngineSettings(consume_fuel=False))
    loaded = load_component(engine, echo_component_wat([ROWS]).encode())
    echo_ty = loaded.component.type.exports(engine.engine)["echo0"].ty
    assert isinstance(echo_ty, wasmtime.component.FuncType)
    vt = echo_ty.params[0][1]
    store = wasmtime.Store(engine.engine)
    value = from_plain(ROWS, plain)

    def lower() -> None:
        raw = ffi.wasmtime_component_val_t()
        vt.convert_to_c(store, value, ctypes.pointer(raw))
        ffi.wasmtime_component_val_delete(ctypes.byref(raw))

    echo = Invoker(loaded)
    assert echo.invoke("echo0", [plain], lambda i, f, a: a[0]) == plain

    def round_trip() -> None:
        echo.invoke("echo0", [plain], lambda i, f, a: a[0])

    on = off = 0.0
    for _ in range(2):  # interleaved, so drifting background load falls on both
        on = min(on or float("inf"), best_ms(_in_place(True, lower), runs))
        off = min(off or float("inf"), best_ms(_in_place(False, lower), runs))
    ctx.row(f"lower {n:,} rows into wasmtime's C values", "ms", on, off,
            "wasmtime-py's own conversion (TRELLIS_LOWER_IN_PLACE=0)")
    on = best_ms(_in_place(True, round_trip), max(2, runs - 2))
    off = best_ms(_in_place(False, round_trip), max(2, runs - 2))
    ctx.row(f"{n:,} rows through an echo component (2 lowerings, 2 liftings)", "ms", on, off,
            "wasmtime-py's own conversion")

    frame = msgpack.packb({"v": 1, "id": "x", "ok": True, "result": plain}, use_bin_type=True)

    def decode() -> None:
        msgpack.unpackb(frame, raw=False, strict_map_key=False)

    threshold = gc.get_threshold()
    try:
        gc.unfreeze()
        gc.set_threshold(700, threshold[1], threshold[2])  # Python's own settings
        python = best_ms(decode, runs)
        gc_tuning.tune(gc_tuning.threshold_from_env())
        tuned = best_ms(decode, runs)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    ctx.row(f"decode the reply frame of {n:,} rows ({len(frame) / 2**20:.1f} MiB msgpack)", "ms", tuned, python,
            "Python's collector settings (TRELLIS_GC_THRESHOLD=default)")

    ctx.row(f"codec: {n:,} rows plain -> wasmtime-py values", "ms", best_ms(lambda: from_plain(ROWS, plain), runs),
            None, "-")
    ctx.row(f"codec: {n:,} rows wasmtime-py values -> plain", "ms", best_ms(lambda: to_plain(ROWS, value), runs),
            None, "-")
    ctx.details.update({"rows": n, "frame_bytes": len(frame)})
    engine.close()
