"""Hostile components fail their own call with the right kind; the invoker
(and the process) keep serving afterwards."""

from __future__ import annotations

import pytest

from tests.components.build import build_wat
from trellis.host.runtime import (
    EngineSettings,
    ErrorKind,
    InvocationError,
    Invoker,
    Limits,
    load_component,
    make_engine,
)

from .conftest import TestComponents

HOSTILE_CASES = [
    ("spin", [], Limits(timeout_s=0.2), ErrorKind.TIMEOUT, "deadline"),
    ("spin", [], Limits(timeout_s=None, fuel=100_000), ErrorKind.OUT_OF_FUEL, "fuel"),
    ("bomb", [], Limits(memory_bytes=16 * 1024 * 1024), ErrorKind.OUT_OF_MEMORY, "memory cap"),
    ("boom", [], Limits(), ErrorKind.TRAP, "unreachable"),
    ("recurse", [0], Limits(), ErrorKind.STACK_OVERFLOW, "stack"),
]


@pytest.mark.parametrize(("function", "args", "limits", "kind", "words"), HOSTILE_CASES)
def test_hostile_call_fails_with_its_kind_and_next_call_succeeds(
    components: TestComponents,
    function: str,
    args: list[int],
    limits: Limits,
    kind: ErrorKind,
    words: str,
) -> None:
    inv = Invoker(components.wat("hostile"), limits=limits)
    with pytest.raises(InvocationError) as e:
        inv.invoke(function, args)
    assert e.value.kind is kind, e.value
    assert words in e.value.message
    assert "Caused by" not in e.value.message  # summarized, backtrace trimmed
    assert inv.invoke("ok") == 42
    # other components are unaffected too
    assert Invoker(components.wat("adder")).invoke("add", [1, 2]) == 3


def test_fuel_budget_is_per_call(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"), limits=Limits(fuel=10_000))
    for _ in range(5):
        assert inv.invoke("ok") == 42


def test_timeout_is_per_call_on_a_reused_instance(components: TestComponents) -> None:
    from trellis.host.runtime import ReusePolicy

    inv = Invoker(
        components.wat("hostile"),
        limits=Limits(timeout_s=0.05),
        reuse=ReusePolicy(max_invocations=100),
    )
    assert inv.invoke("counter") == 1
    # The deadline is re-armed per call: later calls on the warm instance
    # do not inherit an expired deadline.
    for expected in range(2, 6):
        assert inv.invoke("counter") == expected


def test_memory_cap_below_initial_memory_fails_instantiation(components: TestComponents) -> None:
    # The hostile component starts with one 64 KiB page.
    inv = Invoker(components.wat("hostile"), limits=Limits(memory_bytes=1024))
    with pytest.raises(InvocationError) as e:
        inv.invoke("ok")
    assert e.value.kind is ErrorKind.OUT_OF_MEMORY


def test_smaller_stack_limit_overflows_sooner(tmp_path: object) -> None:
    eng = make_engine(EngineSettings(max_wasm_stack_bytes=64 * 1024))
    try:
        loaded = load_component(eng, build_wat("hostile").read_bytes())
        with pytest.raises(InvocationError) as e:
            Invoker(loaded).invoke("recurse", [0])
        assert e.value.kind is ErrorKind.STACK_OVERFLOW
        assert "65536" in e.value.message
    finally:
        eng.close()


def test_ticker_thread_stops_on_close() -> None:
    eng = make_engine()
    assert not eng.ticker_running
    eng.deadline_ticks(1.0)
    assert eng.ticker_running
    eng.close()
    eng.close()
    assert not eng.ticker_running
