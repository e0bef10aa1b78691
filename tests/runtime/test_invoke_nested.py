"""What co-located (nested) calls need of the Invoker: a per-call deadline cap, export types
read once per component, and calls nested in another store's host function."""

from __future__ import annotations

import time

import pytest

from trellis.host.runtime import ErrorKind, InvocationError, Invoker, Limits, ReusePolicy

from .conftest import TestComponents


def test_timeout_s_shortens_a_calls_deadline_but_never_extends_it(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"), limits=Limits(timeout_s=10))
    started = time.monotonic()
    with pytest.raises(InvocationError) as err:
        inv.invoke("spin", timeout_s=0.2)
    assert err.value.kind is ErrorKind.TIMEOUT and time.monotonic() - started < 2
    short = Invoker(components.wat("hostile"), limits=Limits(timeout_s=0.2))
    started = time.monotonic()
    with pytest.raises(InvocationError):
        short.invoke("spin", timeout_s=30)
    assert time.monotonic() - started < 2
    assert inv.invoke("ok", timeout_s=1) == 42  # the next call has its own budget


def test_export_types_are_read_once_per_component(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"))
    assert [inv.invoke("add", [i, 1]) for i in range(3)] == [1, 2, 3]  # three fresh instances
    assert len(inv._types) == 1 and inv.stats.instantiations == 3
    greeter = Invoker(components.python("greeter"), reuse=ReusePolicy(max_invocations=2))
    assert [greeter.invoke("greet", [n]) for n in "abc"] == ["Hello, a!", "Hello, b!", "Hello, c!"]
    assert len(greeter._types) == 1 and greeter.stats.instantiations == 2


def test_a_call_nested_in_a_host_function_runs_in_its_own_store(components: TestComponents) -> None:
    """chain.run imports next.call: serve it by invoking the tail component on the same thread."""
    tail = Invoker(components.wat("tail"))
    chain = Invoker(components.wat("chain"))

    def handler(interface: str, function: str, args: list) -> object:
        assert (interface, function) == ("test:chain/next", "call")
        return tail.invoke("test:chain/runner.run", args)

    assert chain.invoke("test:chain/runner.run", ["nested"], handler) == "nested"
    assert chain.invoke("test:chain/runner.run", ["x" * 50_000], handler) == "x" * 50_000
