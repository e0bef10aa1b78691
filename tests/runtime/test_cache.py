"""The compile cache: disk reuse across instances, memory reuse, corruption."""

from __future__ import annotations

import os
from pathlib import Path

from tests.components.build import build_wat
from trellis.host.runtime import CompileCache, EngineSettings, Invoker, RuntimeEngine, load_component, make_engine
from trellis.host.runtime.engine import PROFILER_ENV


def test_second_cache_on_same_dir_does_not_compile(engine: RuntimeEngine, tmp_path: Path) -> None:
    wasm = build_wat("adder").read_bytes()
    first = CompileCache(tmp_path)
    load_component(engine, wasm, first)
    assert (first.stats.compiled, first.stats.disk_hits) == (1, 0)
    assert len(list(tmp_path.glob("*.cwasm"))) == 1
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically

    second = CompileCache(tmp_path)
    loaded = load_component(engine, wasm, second)
    assert (second.stats.compiled, second.stats.disk_hits) == (0, 1)
    assert Invoker(loaded).invoke("add", [20, 22]) == 42


def test_repeat_loads_are_served_from_memory(engine: RuntimeEngine, tmp_path: Path) -> None:
    wasm = build_wat("adder").read_bytes()
    cache = CompileCache(tmp_path)
    a = cache.load(engine, wasm)
    b = cache.load(engine, wasm)
    assert a is b
    assert (cache.stats.compiled, cache.stats.memory_hits) == (1, 1)


def test_corrupt_cache_file_is_dropped_and_recompiled(engine: RuntimeEngine, tmp_path: Path) -> None:
    wasm = build_wat("adder").read_bytes()
    CompileCache(tmp_path).load(engine, wasm)
    (path,) = tmp_path.glob("*.cwasm")
    path.write_bytes(b"\x7fELF garbage" + b"\0" * 64)

    cache = CompileCache(tmp_path)
    loaded = load_component(engine, wasm, cache)
    assert (cache.stats.corrupt_dropped, cache.stats.compiled) == (1, 1)
    assert Invoker(loaded).invoke("add", [1, 2]) == 3
    # the recompiled artifact replaced the corrupt one
    again = CompileCache(tmp_path)
    again.load(engine, wasm)
    assert again.stats.disk_hits == 1


def test_engine_config_is_part_of_the_key(engine: RuntimeEngine, tmp_path: Path) -> None:
    wasm = build_wat("adder").read_bytes()
    CompileCache(tmp_path).load(engine, wasm)
    other = make_engine(EngineSettings(max_wasm_stack_bytes=256 * 1024))
    try:
        cache = CompileCache(tmp_path)
        cache.load(other, wasm)
        assert cache.stats.compiled == 1
        assert len(list(tmp_path.glob("*.cwasm"))) == 2
    finally:
        other.close()


def test_memory_only_cache(engine: RuntimeEngine) -> None:
    cache = CompileCache(None)
    wasm = build_wat("adder").read_bytes()
    cache.load(engine, wasm)
    cache.load(engine, wasm)
    assert (cache.stats.compiled, cache.stats.memory_hits) == (1, 1)


def test_a_profiler_engine_runs_cached_code_and_a_bad_profiler_is_ignored(
        engine: RuntimeEngine, tmp_path: Path, monkeypatch, caplog) -> None:
    """TRELLIS_WASM_PROFILER=perfmap describes code to perf without changing it (the cached code
    loads and runs); an unknown name is logged and ignored, not a worker that cannot start."""
    wasm = build_wat("adder").read_bytes()
    CompileCache(tmp_path).load(engine, wasm)
    for name in ("perfmap", "bogus"):
        other = make_engine(EngineSettings(profiler=name))
        try:
            cache = CompileCache(tmp_path)
            loaded = load_component(other, wasm, cache)
            assert (cache.stats.compiled, cache.stats.disk_hits) == (0, 1)
            assert Invoker(loaded).invoke("add", [2, 3]) == 5
        finally:
            other.close()
    assert f"{PROFILER_ENV}=bogus ignored" in caplog.text
    Path(f"/tmp/perf-{os.getpid()}.map").unlink(missing_ok=True)  # what perfmap wrote
