"""Baseline for cold start: raw wasmtime-py in a fresh process, no Trellis.

``python -m bench._raw_cold WASM CWASM cold|warm`` builds an engine configured
as Trellis's (component model, epoch interruption, fuel), then either compiles
WASM and writes the artifact to CWASM (cold) or deserializes CWASM (warm),
instantiates with WASI and calls ``greet("world")``. Prints one JSON line of
timings in seconds, measured inside the process (imports excluded), and the
process's CPU seconds (``cpu_s``, imports included: steadier than wall time
on a loaded machine).
"""

from __future__ import annotations

import json
import sys
import time

t_import = time.perf_counter()
import wasmtime  # noqa: E402 (after the sys.path or timing lines above)
from wasmtime import component as wc  # noqa: E402 (after the sys.path or timing lines above)


def main(wasm_path: str, cwasm_path: str, mode: str) -> None:
    t0 = time.perf_counter()
    config = wasmtime.Config()
    config.wasm_component_model = True
    config.epoch_interruption = True
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    t1 = time.perf_counter()
    if mode == "cold":
        with open(wasm_path, "rb") as f:
            component = wc.Component(engine, f.read())
        with open(cwasm_path, "wb") as f:
            f.write(bytes(component.serialize()))
    else:
        component = wc.Component.deserialize_file(engine, cwasm_path)
    t2 = time.perf_counter()
    linker = wc.Linker(engine)
    linker.add_wasip2()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_fuel(2**63 - 1)
    store.set_epoch_deadline(2**62)
    func = linker.instantiate(store, component).get_func(store, "greet")
    assert func is not None
    result = func(store, "world")
    t3 = time.perf_counter()
    assert result == "Hello, world!", result
    print(json.dumps({"import_s": t0 - t_import, "engine_s": t1 - t0, "load_s": t2 - t1,
                      "instantiate_call_s": t3 - t2, "total_s": t3 - t0, "cpu_s": time.process_time()}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
