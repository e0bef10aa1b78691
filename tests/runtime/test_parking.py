"""Parking (host/runtime/parking.py): an idle component's compiled code is dropped and loaded
again from the compile cache's artifact by the next call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.components.build import build_wat
from trellis.host.runtime import CompileCache, Invoker, ReusePolicy, RuntimeEngine, wasm_digest
from trellis.host.runtime.parking import (
    DEFAULT_PARK_AFTER_S,
    PARK_BATCH_S,
    Parking,
    load_parkable,
    park_after_s,
    park_all,
)


@pytest.fixture
def cache(tmp_path: Path) -> CompileCache:
    return CompileCache(tmp_path / "compiled")


def test_idle_component_is_parked_and_reloaded_by_the_next_call(engine: RuntimeEngine, cache: CompileCache) -> None:
    loaded = load_parkable(engine, build_wat("adder"), cache)
    inv = Invoker(loaded)
    assert inv.invoke("add", [2, 40]) == 42
    now = [0.0]
    parking = Parking(after_s=30.0, clock=lambda: now[0])
    assert parking.due([("adder", inv)]) == []  # first look: idle from now on
    now[0] = 29.0
    assert parking.due([("adder", inv)]) == []
    now[0] = 31.0
    due = parking.due([("adder", inv)])
    assert [key for key, _ in due] == ["adder"]
    assert park_all(due) == ["adder"] and inv.parked and loaded.parked
    assert parking.due([("adder", inv)]) == []  # parked already
    assert inv.invoke("add", [1, 2]) == 3  # loaded again from the artifact
    assert not inv.parked and loaded.reloads == 1
    assert loaded.reload_s == loaded.last_reload_s > 0  # what parking added to that call
    assert cache.stats.compiled == 1  # never compiled again
    now[0] = 40.0
    assert parking.due([("adder", inv)]) == []  # the call started its idle time again
    now[0] = 71.0
    assert [key for key, _ in parking.due([("adder", inv)])] == ["adder"]


def test_components_idle_nearly_as_long_are_parked_in_one_batch(engine: RuntimeEngine, cache: CompileCache) -> None:
    """Apps called in one burst give their code back together: once one is due, those idle for
    ``after_s`` minus the slack (PARK_BATCH_S, at most a sixth of ``after_s``) go with it, one
    idle for less stays; nothing is parked before one is due."""
    invs = {k: Invoker(load_parkable(engine, build_wat("adder"), cache)) for k in ("a", "b", "c")}
    now = [0.0]
    parking = Parking(after_s=30.0, clock=lambda: now[0])
    assert parking.due(invs.items()) == []  # first look: all idle from now on
    now[0] = 10.0
    assert invs["c"].invoke("add", [1, 1]) == 2
    assert parking.due(invs.items()) == []  # (the sweep sees c's call: idle from 10 on)
    now[0] = 26.0
    assert invs["b"].invoke("add", [1, 1]) == 2
    assert parking.due(invs.items()) == []  # b called: idle from 26 on; a idle 26 s: none due yet
    now[0] = 29.9
    assert parking.due(invs.items()) == []
    now[0] = 36.0  # a: 36 s (due), c: idle since 10 -> 26 s (>= 30 - 5: with it), b: 10 s
    assert sorted(k for k, _ in parking.due(invs.items())) == ["a", "c"]
    assert 0 < PARK_BATCH_S <= 30.0 / 6
    short = Parking(after_s=6.0, clock=lambda: now[0])  # the slack is at most a sixth of after_s
    now[0] = 100.0
    short.due(invs.items())
    now[0] = 104.5
    assert short.due(invs.items()) == []
    now[0] = 106.0
    assert sorted(k for k, _ in short.due(invs.items())) == ["a", "b", "c"]


def test_a_component_with_an_instance_is_not_parked(engine: RuntimeEngine, cache: CompileCache) -> None:
    inv = Invoker(load_parkable(engine, build_wat("hostile"), cache), reuse=ReusePolicy(max_invocations=100))
    assert inv.invoke("counter") == 1
    assert inv.live_instances == 1 and not inv.park()
    now = [0.0]
    parking = Parking(after_s=0.0, clock=lambda: now[0])
    parking.due([("hostile", inv)])
    now[0] = 100.0
    assert parking.due([("hostile", inv)]) == []  # its warm instance keeps it loaded
    assert inv.invoke("counter") == 2  # the same instance, state kept


def test_parking_needs_the_compile_cache_on_disk(engine: RuntimeEngine) -> None:
    inv = Invoker(load_parkable(engine, build_wat("adder"), CompileCache(None)))
    assert not inv.parkable and not inv.park()
    assert Parking(after_s=0.0).due([("adder", inv)]) == []


def test_a_compiled_artifact_is_loaded_without_reading_the_wasm(engine: RuntimeEngine, cache: CompileCache,
                                                                 tmp_path: Path) -> None:
    path = build_wat("adder")
    digest = wasm_digest(path.read_bytes())
    load_parkable(engine, path, cache)
    assert cache.stats.compiled == 1
    again = load_parkable(engine, tmp_path / "not-there.wasm", cache, f"sha256:{digest}")
    assert again.digest == digest and cache.stats.disk_hits == 1
    assert Invoker(again).invoke("add", [20, 22]) == 42
    with pytest.raises(ValueError, match="not the expected"):
        load_parkable(engine, path, CompileCache(tmp_path / "other"), "sha256:" + "0" * 64)


def test_park_after_setting() -> None:
    assert park_after_s({}) == DEFAULT_PARK_AFTER_S
    assert park_after_s({"TRELLIS_PARK_IDLE_S": "5"}) == 5.0
    assert park_after_s({"TRELLIS_PARK_IDLE_S": "0"}) == 0.0
    assert park_after_s({"TRELLIS_PARK_IDLE_S": "off"}) is None
    for bad in ("-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match="TRELLIS_PARK_IDLE_S"):
            park_after_s({"TRELLIS_PARK_IDLE_S": bad})


def test_parking_frees_code_that_cyclic_garbage_still_holds(engine: RuntimeEngine, cache: CompileCache) -> None:
    """After calls, reference cycles (a traceback's frames, a call's context) may hold the last
    reference to the compiled code; an idle worker allocates too little for Python's collector
    to run, so parking collects them: nothing of the artifact stays mapped."""
    import gc

    loaded = load_parkable(engine, build_wat("adder"), cache)
    inv = Invoker(loaded)
    assert inv.park() and inv.invoke("add", [2, 40]) == 42  # loaded from the artifact (mmap'd)
    artifact = str(cache.path_for(engine, loaded.digest))
    maps = Path("/proc/self/maps")
    assert artifact in maps.read_text()
    enabled = gc.isenabled()
    gc.disable()  # as in an idle worker: no allocations, no collection
    try:
        cycle: list[object] = [loaded.component]
        cycle.append(cycle)
        del cycle
        assert park_all([("adder", inv)]) == ["adder"]
        assert artifact not in maps.read_text()
    finally:
        if enabled:
            gc.enable()
    assert inv.invoke("add", [1, 2]) == 3


def _generations_collected() -> tuple[list[int], Callable[[str, dict[str, int]], None]]:
    import gc

    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])
    gc.callbacks.append(callback)
    return seen, callback


def test_parking_walks_the_whole_heap_only_when_young_garbage_was_not_enough(engine: RuntimeEngine,
                                                                             cache: CompileCache) -> None:
    """A full collection walks every object (tens of ms in a worker with many apps' tables): parking
    collects the young generations, and the whole heap only while a parked artifact stays mapped."""
    import gc

    loaded = load_parkable(engine, build_wat("adder"), cache)
    inv = Invoker(loaded)
    assert inv.invoke("add", [2, 40]) == 42
    artifact = str(cache.path_for(engine, loaded.digest))
    assert loaded.artifact is not None and str(loaded.artifact) == artifact
    maps = Path("/proc/self/maps")
    enabled = gc.isenabled()
    gc.disable()  # as in an idle worker: no allocations, no collection
    seen, callback = _generations_collected()
    try:
        young: list[object] = [loaded.component]  # a call's cycle: young garbage
        young.append(young)
        del young
        assert park_all([("adder", inv)]) == ["adder"]
        assert artifact not in maps.read_text()
        assert seen and max(seen) < 2, seen  # no walk of the whole heap
        assert inv.invoke("add", [1, 2]) == 3  # reloaded
        old: list[object] = [loaded.component]  # a cycle that survived a full collection, then died
        old.append(old)
        holder = [old]
        del old
        gc.collect()
        holder.clear()
        seen.clear()
        assert park_all([("adder", inv)]) == ["adder"]
        assert artifact not in maps.read_text()
        assert max(seen) == 2, seen  # the young generations were not enough: the whole heap
    finally:
        gc.callbacks.remove(callback)
        if enabled:
            gc.enable()
    assert inv.invoke("add", [1, 2]) == 3


def test_loading_parked_code_again_does_not_count_against_the_calls_deadline(engine: RuntimeEngine,
                                                                              cache: CompileCache) -> None:
    """A parked component's code is loaded again before the call's deadline is armed: an inline call
    (a budget of 20 ms on a worker's loop) whose reload took longer ran past its budget and was run
    again on a Wasm thread, so the first request after idle paid for the guest twice."""
    import time as _time

    loaded = load_parkable(engine, build_wat("adder"), cache)
    inv = Invoker(loaded)
    assert inv.invoke("add", [2, 40]) == 42 and inv.park()
    real = loaded._reload
    assert real is not None

    def slow_reload() -> object:  # a reload as slow as on a loaded machine
        _time.sleep(0.3)
        return real()
    loaded._reload = slow_reload  # type: ignore[assignment]  # the test's stand-in
    assert inv.invoke("add", [1, 2], timeout_s=0.1, inline=True) == 3  # its deadline: the call's own time
    assert loaded.reloads == 1 and loaded.last_reload_s >= 0.3
