"""The instance allocators: on demand (the default) and pooled both serve calls, fresh and reused;
a pool's bound fails one instantiation with a message naming it, and the slot comes back; a component
that imports no WASI gets no WASI context."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.components.build import build_python, build_wat
from tests.harness import run_cli
from trellis.host.runtime import (
    CompileCache,
    ErrorKind,
    InvocationError,
    Invoker,
    ReusePolicy,
    load_component,
)
from trellis.host.runtime.engine import (
    ALLOCATORS,
    EngineSettings,
    InstancePool,
    RuntimeEngine,
    engine_settings,
    make_engine,
)
from trellis.host.settings import HostSettings


@pytest.fixture(scope="module", params=ALLOCATORS)
def allocated(request: pytest.FixtureRequest) -> Iterator[RuntimeEngine]:
    eng = make_engine(engine_settings(request.param, consume_fuel=False))
    yield eng
    eng.close()


def test_instances_are_allocated_on_demand_unless_pooling_is_asked_for() -> None:
    assert EngineSettings().pool is None and engine_settings().pool is None
    assert engine_settings("pooling").pool == InstancePool()
    assert HostSettings().instance_allocator == "on-demand"


@pytest.mark.parametrize("reuse", [1, 1000], ids=["fresh", "reused"])
def test_both_allocators_serve_calls(allocated: RuntimeEngine, compile_cache: CompileCache, reuse: int) -> None:
    adder = load_component(allocated, build_wat("adder").read_bytes(), compile_cache)
    inv = Invoker(adder, reuse=ReusePolicy(max_invocations=reuse))
    assert [inv.invoke("add", [i, 2]) for i in range(20)] == [i + 2 for i in range(20)]
    assert inv.invoke("test:adder/math.mul", [6, 7]) == 42
    assert inv.stats.instantiations == (21 if reuse == 1 else 1)
    inv.close()
    assert inv.live_instances == 0


def test_both_allocators_serve_a_python_component(allocated: RuntimeEngine, compile_cache: CompileCache) -> None:
    """componentize-py: 14 core instances, 2 tables, a ~10 MiB heap image per instance."""
    greeter = load_component(allocated, build_python("greeter").read_bytes(), compile_cache)
    inv = Invoker(greeter)
    fn = next(f for f in greeter.all_exported() if f.name == "greet")
    assert [inv.invoke(fn, ["pool"]) for _ in range(3)] == [inv.invoke(fn, ["pool"])] * 3
    assert "pool" in str(inv.invoke(fn, ["pool"]))
    inv.close()


def test_a_full_pool_fails_one_instantiation_and_recovers(compile_cache: CompileCache) -> None:
    eng = make_engine(EngineSettings(consume_fuel=False, pool=InstancePool(max_component_instances=1)))
    try:
        adder = load_component(eng, build_wat("adder").read_bytes(), compile_cache)
        keeper = Invoker(adder, reuse=ReusePolicy(max_invocations=1000))
        assert keeper.invoke("add", [1, 1]) == 2  # its instance stays warm: the pool's one slot
        other = Invoker(adder)
        with pytest.raises(InvocationError) as err:
            other.invoke("add", [2, 2])
        assert err.value.kind is ErrorKind.INSTANTIATION
        assert "limit of 1 for component instances" in str(err.value)
        assert "instance pool is full" in str(err.value) and "\n" not in str(err.value)
        keeper.close()  # the slot comes back
        assert other.invoke("add", [2, 2]) == 4
        other.close()
    finally:
        eng.close()


def test_bad_allocator_names_and_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="expected one of on-demand, pooling"):
        engine_settings("mmap")
    with pytest.raises(ValueError, match="max_memories must be positive"):
        InstancePool(max_memories=0)
    with pytest.raises(ValueError):
        HostSettings(instance_allocator="mmap")


def test_trellis_host_refuses_an_unknown_allocator_in_one_line() -> None:
    res = run_cli("host", "--instance-allocator", "mmap", env={"TRELLIS_INSTANCE_ALLOCATOR": ""})
    assert res.returncode != 0
    assert res.stderr.strip() == "error: --instance-allocator 'mmap': expected one of on-demand, pooling"


def test_only_components_that_import_wasi_get_a_wasi_context(components) -> None:
    adder, greeter = components.wat("adder"), components.python("greeter")
    bare, python = Invoker(adder), Invoker(greeter)
    assert not bare.uses_wasi and python.uses_wasi
    assert bare.invoke("add", [2, 3]) == 5  # instantiated without WASI (its linker has none either)
    with pytest.raises(InvocationError) as err:
        Invoker(components.wat("hostile")).invoke("boom", [])  # a trap without WASI still fails cleanly
    assert err.value.kind is ErrorKind.TRAP
    fn = next(f for f in greeter.all_exported() if f.name == "greet")
    assert "wasi" in str(python.invoke(fn, ["wasi"]))
    bare.close()
    python.close()
