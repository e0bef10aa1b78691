"""What one call cost (host/runtime/probe.py): fresh or warm instance, fuel, CPU of its thread with
nested calls taken out, memory its instance touched."""

from __future__ import annotations

import time

import pytest

from trellis.host.runtime import CallProbe, ErrorKind, InvocationError, Invoker, Limits, Plain, ReusePolicy
from trellis.host.runtime.probe import PAGE_SIZE

from .conftest import TestComponents

RUN = "test:chain/runner.run"


def test_fresh_then_warm_instances(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"), reuse=ReusePolicy(max_invocations=2))
    colds = []
    for _ in range(4):
        probe = CallProbe()
        assert inv.invoke("add", [1, 2], probe=probe) == 3
        colds.append(probe.cold)
    assert colds == [True, False, True, False]


def test_memory_is_what_the_instance_touched(components: TestComponents) -> None:
    """``bomb`` grows its memory 1 MiB at a time and writes one word in each, up to the cap."""
    inv = Invoker(components.wat("hostile"), limits=Limits(memory_bytes=16 * 1024 * 1024))
    probe = CallProbe()
    with pytest.raises(InvocationError):
        inv.invoke("bomb", probe=probe)
    assert 14 * PAGE_SIZE <= probe.memory_bytes < 16 * 1024 * 1024


def test_a_python_component_instance_touches_its_heap(components: TestComponents) -> None:
    inv = Invoker(components.python("greeter"), reuse=ReusePolicy(max_invocations=2))
    first, second = CallProbe(), CallProbe()
    inv.invoke("greet", ["a"], probe=first)
    inv.invoke("greet", ["b"], probe=second)
    assert first.cold and not second.cold
    assert first.memory_bytes > 256 * 1024  # its private pages: the memory image it only reads is shared
    assert second.memory_bytes >= first.memory_bytes  # the instance's total: memories never shrink


def test_fuel_used_is_counted_and_a_budget_run_out_uses_it_all(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"), limits=Limits(fuel=100_000))
    probe = CallProbe()
    assert inv.invoke("ok", probe=probe) == 42
    assert probe.fuel is not None and 0 < probe.fuel < 100_000
    probe = CallProbe()
    with pytest.raises(InvocationError) as e:
        inv.invoke("spin", probe=probe)
    assert e.value.kind is ErrorKind.OUT_OF_FUEL
    assert probe.fuel is not None and probe.fuel >= 99_000


def test_cpu_is_the_calling_threads_and_a_failed_call_counts_too(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"), limits=Limits(timeout_s=0.2, fuel=None))
    probe = CallProbe()
    before = time.thread_time()
    with pytest.raises(InvocationError):
        inv.invoke("spin", probe=probe)
    spent = time.thread_time() - before
    assert spent > 0.01
    assert 0.9 * spent <= probe.cpu_s <= spent + 0.002


def test_nested_call_on_the_same_thread_is_counted_once(components: TestComponents) -> None:
    spinner = Invoker(components.wat("hostile"), limits=Limits(timeout_s=0.15, fuel=None))
    inner = CallProbe()

    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        with pytest.raises(InvocationError):
            spinner.invoke("spin", probe=inner)
        return args[0]

    outer = CallProbe()
    before = time.thread_time()
    assert Invoker(components.wat("chain")).invoke(RUN, ["x"], handler, probe=outer) == "x"
    spent = time.thread_time() - before
    assert inner.cpu_s > 0.01
    assert outer.cpu_s < inner.cpu_s / 2
    assert 0.9 * spent <= outer.cpu_s + inner.cpu_s <= spent + 0.002


def test_no_probe_costs_nothing_and_changes_nothing(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"))
    assert inv.invoke("add", [2, 2]) == 4
