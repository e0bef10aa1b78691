"""Overhead of the runtime over raw wasmtime-py, per instantiate+call.

Run: ``python -m tests.runtime.bench_invoke`` (not collected by pytest).
Compares, on the `adder` component and one engine:

* raw: wasmtime-py by hand: Store, WasiConfig, fuel, epoch deadline,
  ``linker.instantiate``, ``get_func`` by cached index, call;
* fresh: ``Invoker.invoke`` with a fresh instance per call (the default);
* warm: ``Invoker.invoke`` reusing one instance.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import wasmtime
from wasmtime import component as wc

from tests.components.build import build_wat
from trellis.host.runtime import Invoker, ReusePolicy, load_component, make_engine, wasmtime_patches


def _per_call_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples)


def main(n: int = 5000) -> None:
    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine()
    loaded = load_component(engine, build_wat("adder").read_bytes())
    linker = wc.Linker(engine.engine)
    linker.add_wasip2()
    index = loaded.component.get_export_index("add")
    assert index is not None
    ticks = engine.deadline_ticks(10.0)

    def raw() -> object:
        store = wasmtime.Store(engine.engine)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_fuel(2**63 - 1)
        store.set_epoch_deadline(ticks)
        instance = linker.instantiate(store, loaded.component)
        func = instance.get_func(store, index)
        assert func is not None
        return func(store, 1, 2)

    fresh = Invoker(loaded)
    warm = Invoker(loaded, reuse=ReusePolicy(max_invocations=2**62))
    results = {
        "raw wasmtime-py": _per_call_us(raw, n),
        "Invoker fresh": _per_call_us(lambda: fresh.invoke("add", [1, 2]), n),
        "Invoker warm": _per_call_us(lambda: warm.invoke("add", [1, 2]), n),
    }
    for name, us in results.items():
        print(f"{name:16s} {us:7.1f} us/call")
    print(f"overhead fresh   {results['Invoker fresh'] - results['raw wasmtime-py']:7.1f} us/call")
    engine.close()


if __name__ == "__main__":
    main()
