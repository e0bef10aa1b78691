"""Invocation of exports, import binding and instance reuse."""

from __future__ import annotations

import threading

import pytest

from trellis.host.runtime import (
    ErrorKind,
    ImportFailed,
    InvocationError,
    Invoker,
    MissingLink,
    ReusePolicy,
    RuntimeEngine,
    load_component,
)
from trellis.host.runtime.codec import Plain

from .conftest import TestComponents

RUN = "test:chain/runner.run"


def test_adder_adds(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"))
    assert inv.invoke("add", [2, 40]) == 42
    assert inv.invoke("add", [2**32 - 1, 1]) == 0  # u32 wraps in wasm


def test_bad_arguments_fail_before_running(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"))
    with pytest.raises(InvocationError) as e:
        inv.invoke("add", [1, -1])
    assert e.value.kind is ErrorKind.BAD_ARGUMENT
    assert "args[1]" in e.value.message and "u32" in e.value.message
    with pytest.raises(InvocationError) as e:
        inv.invoke("add", [1])
    assert e.value.kind is ErrorKind.BAD_ARGUMENT
    assert inv.stats.instantiations == 0


def test_unknown_function_is_not_found(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"))
    with pytest.raises(InvocationError) as e:
        inv.invoke("sub", [1, 2])
    assert e.value.kind is ErrorKind.NOT_FOUND
    assert "add" in e.value.message  # lists what exists


def test_import_is_bound_to_the_handler(components: TestComponents) -> None:
    calls: list[tuple[str, str, list[Plain]]] = []

    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        calls.append((interface, function, args))
        return f"<{args[0]}>"

    inv = Invoker(components.wat("chain"))
    assert inv.invoke(RUN, ["héllo"], handler) == "<héllo>"
    assert inv.invoke("test:chain/runner#run", ["x"], handler) == "<x>"
    assert calls[0] == ("test:chain/next", "call", ["héllo"])


def test_unlinked_import_fails_the_call_naming_it(components: TestComponents) -> None:
    inv = Invoker(components.wat("chain"))
    with pytest.raises(InvocationError) as e:
        inv.invoke(RUN, ["x"])  # default handler links nothing
    err = e.value
    assert err.kind is ErrorKind.MISSING_LINK
    assert (err.interface, err.function) == ("test:chain/next", "call")
    assert "test:chain/next.call" in str(err)
    assert inv.invoke(RUN, ["y"], lambda i, f, a: a[0]) == "y"


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (MissingLink("test:chain/next", "call"), ErrorKind.MISSING_LINK),
        (ImportFailed("test:chain/next", "call", "target crashed"), ErrorKind.IMPORT_FAILED),
        (RuntimeError("handler bug"), ErrorKind.IMPORT_FAILED),
    ],
)
def test_failing_handler_fails_only_that_call(
    components: TestComponents, raised: Exception, kind: ErrorKind
) -> None:
    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        raise raised

    inv = Invoker(components.wat("chain"), reuse=ReusePolicy(max_invocations=10))
    with pytest.raises(InvocationError) as e:
        inv.invoke(RUN, ["x"], handler)
    assert e.value.kind is kind
    assert "test:chain/next.call" in e.value.message
    assert not inv.has_warm_instance  # the trapped instance was discarded
    assert inv.invoke(RUN, ["ok"], lambda i, f, a: a[0]) == "ok"


def test_handler_returning_wrong_type_is_an_import_failure(components: TestComponents) -> None:
    inv = Invoker(components.wat("chain"))
    with pytest.raises(InvocationError) as e:
        inv.invoke(RUN, ["x"], lambda i, f, a: 5)
    assert e.value.kind is ErrorKind.IMPORT_FAILED
    assert "expected string, got int" in e.value.message


def test_fresh_instance_per_call_by_default(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"))
    assert [inv.invoke("counter") for _ in range(4)] == [1, 1, 1, 1]
    assert inv.stats.instantiations == 4
    assert not inv.has_warm_instance


def test_reuse_serves_n_calls_then_renews(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"), reuse=ReusePolicy(max_invocations=3))
    assert [inv.invoke("counter") for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    assert inv.stats.instantiations == 3


def test_reuse_drops_idle_instances(components: TestComponents) -> None:
    now = [0.0]
    inv = Invoker(
        components.wat("hostile"),
        reuse=ReusePolicy(max_invocations=100, max_idle_s=5.0),
        clock=lambda: now[0],
    )
    assert inv.invoke("counter") == 1
    now[0] = 4.0
    assert inv.invoke("counter") == 2
    now[0] = 10.0  # idle 6 s > 5 s
    assert inv.invoke("counter") == 1


def test_idle_instances_are_dropped_without_waiting_for_a_call(components: TestComponents) -> None:
    """The worker's periodic sweep: an idle component holds no instance (scale to zero)."""
    now = [0.0]
    inv = Invoker(
        components.wat("hostile"),
        reuse=ReusePolicy(max_invocations=100, max_idle_s=5.0),
        clock=lambda: now[0],
    )
    assert inv.invoke("counter") == 1
    assert inv.has_warm_instance and inv.drop_idle() == 0
    now[0] = 6.0
    assert inv.drop_idle() == 1 and not inv.has_warm_instance
    assert inv.invoke("counter") == 1  # a fresh instance


def test_trap_discards_a_reused_instance(components: TestComponents) -> None:
    inv = Invoker(components.wat("hostile"), reuse=ReusePolicy(max_invocations=100))
    assert inv.invoke("counter") == 1
    assert inv.invoke("counter") == 2
    with pytest.raises(InvocationError):
        inv.invoke("boom")
    assert inv.invoke("counter") == 1


def test_reentrant_call_gets_its_own_instance(components: TestComponents) -> None:
    """A handler that calls back into the same invoker (a component linked
    to itself) must not re-enter the busy warm instance."""
    inv = Invoker(components.wat("chain"), reuse=ReusePolicy(max_invocations=100))
    depth = [0]

    def handler(interface: str, function: str, args: list[Plain]) -> Plain:
        depth[0] += 1
        if depth[0] < 3:
            return inv.invoke(RUN, [args[0] + "+"], handler)
        return args[0]

    assert inv.invoke(RUN, ["a"], handler) == "a++"


def test_invoker_serves_threads(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"), reuse=ReusePolicy(max_invocations=1000))
    results: list[int] = []
    lock = threading.Lock()

    def work(base: int) -> None:
        for i in range(50):
            r = inv.invoke("add", [base, i])
            with lock:
                results.append(r - base - i)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 200


def test_closed_invoker_refuses_calls(components: TestComponents) -> None:
    inv = Invoker(components.wat("adder"), reuse=ReusePolicy(max_invocations=5))
    inv.invoke("add", [1, 1])
    inv.close()
    inv.close()
    with pytest.raises(RuntimeError):
        inv.invoke("add", [1, 1])


def test_unsatisfiable_import_is_an_instantiation_error(engine: RuntimeEngine) -> None:
    # A WASI interface wasmtime does not provide: left unbound, so the
    # linker cannot instantiate the component.
    wat = """(component
      (import "wasi:cli/telepathy@0.2.0" (instance (export "read-mind" (func (result u32)))))
      (core module $m (func (export "f") (result i32) i32.const 1))
      (core instance $i (instantiate $m))
      (func (export "f") (result u32) (canon lift (core func $i "f"))))"""
    inv = Invoker(load_component(engine, wat.encode()))
    with pytest.raises(InvocationError) as e:
        inv.invoke("f")
    assert e.value.kind is ErrorKind.INSTANTIATION
    assert "wasi:cli/telepathy" in e.value.message
