"""``Invoker.invoke(..., inline=True)``: a thread that must not wait (the worker's event loop)
never blocks on the instance lifecycle lock: it is told to run the call elsewhere, and an
instance it cannot drop at once is dropped later."""

from __future__ import annotations

import threading

import pytest

from trellis.host.runtime import Invoker, Reroute


class _Holder:
    """Another thread holding the lifecycle lock until released."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.holding = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.lock:
            self.holding.set()
            self.release.wait(30)

    def start(self) -> _Holder:
        self.thread.start()
        assert self.holding.wait(10)
        return self

    def stop(self) -> None:
        self.release.set()
        self.thread.join(10)


def test_inline_call_is_rerouted_while_another_thread_creates_an_instance(components):
    lock = threading.RLock()
    inv = Invoker(components.wat("adder"), lifecycle_lock=lock)
    holder = _Holder(lock).start()
    try:
        with pytest.raises(Reroute) as why:
            inv.invoke("add", [1, 2], inline=True)
        assert not why.value.sticky  # says nothing about the next call
        assert inv.stats.instantiations == 0 and inv.stats.calls == 0  # nothing ran
    finally:
        holder.stop()
    assert inv.invoke("add", [1, 2], inline=True) == 3


def test_instance_the_inline_caller_cannot_drop_is_dropped_later(components):
    lock = threading.RLock()
    inv = Invoker(components.wat("chain"), lifecycle_lock=lock)
    holders: list[_Holder] = []

    def handler(interface: str, function: str, args: list) -> str:
        holders.append(_Holder(lock).start())  # the lock is taken while the call runs
        return args[0]

    try:
        assert inv.invoke("test:chain/runner.run", ["x"], handler, inline=True) == "x"
        assert inv.has_warm_instance  # a fresh instance to drop, left for later
        holders[0].stop()
        assert inv.drop_idle() == 0  # the orphan is closed on the way (it was never warm)
        assert not inv.has_warm_instance
        assert inv.invoke("test:chain/runner.run", ["y"], handler=lambda i, f, a: a[0]) == "y"
    finally:
        for h in holders:
            h.stop()
        inv.close()


def test_reroute_raised_by_an_import_reaches_the_caller(components):
    inv = Invoker(components.wat("chain"))

    def handler(interface: str, function: str, args: list) -> str:
        raise Reroute("needs the network")

    with pytest.raises(Reroute, match="needs the network") as why:
        inv.invoke("test:chain/runner.run", ["x"], handler)
    assert why.value.sticky
    assert inv.invoke("test:chain/runner.run", ["x"], lambda i, f, a: a[0]) == "x"  # still serves
