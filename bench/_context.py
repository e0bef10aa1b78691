"""What every benchmark gets: mode, scratch space, the test components, result rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.components.build import build_python, build_wat

#: Per-user compile cache for the in-process benchmarks (compiling the
#: componentize-py greeter takes seconds; later runs load it in milliseconds).
BENCH_CACHE = Path.home() / ".cache" / "trellis-bench" / "compiled"

#: Test components: name -> (function, args) called by every benchmark.
CALLS: dict[str, tuple[str, list[Any]]] = {
    "adder": ("add", [1, 2]),
    "greeter": ("greet", ["world"]),
}


def component_path(name: str) -> Path:
    """Build (or reuse the cached build of) a test component."""
    return build_wat(name) if name == "adder" else build_python(name)


def ensure_compiled() -> Path:
    """Compile every test component into :data:`BENCH_CACHE` (once per machine); return it.

    Hosts started by the benchmarks get a copy in their state directory, so
    only ``coldstart`` ever pays for compiling the greeter.
    """
    from trellis.host.runtime import CompileCache, load_component, make_engine, wasmtime_patches
    from trellis.host.runtime.engine import EngineSettings

    cache = CompileCache(BENCH_CACHE)
    # hosts run components without a fuel budget on an unmetered engine: cache both kinds
    variants = [EngineSettings()]
    if "consume_fuel" in EngineSettings.__dataclass_fields__:
        variants.append(EngineSettings(consume_fuel=False))
    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    for settings in variants:
        engine = make_engine(settings)
        for name in CALLS:
            load_component(engine, component_path(name).read_bytes(), cache)
        engine.close()
    return BENCH_CACHE


@dataclass
class Context:
    quick: bool
    workdir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def row(self, measure: str, unit: str, trellis: float, baseline: float | None, baseline_is: str,
            **extra: Any) -> dict[str, Any]:
        """One line of the results table: a Trellis number beside its baseline."""
        r: dict[str, Any] = {"measure": measure, "unit": unit, "trellis": trellis,
                             "baseline": baseline, "baseline_is": baseline_is}
        if baseline and not math.isnan(baseline) and not math.isnan(trellis):
            r["ratio"] = round(trellis / baseline, 2)
        r.update(extra)
        self.rows.append(r)
        return r
