"""A Wasm call keeps the GIL (host/runtime/gil_hold.py, TRELLIS_WASM_HOLD_GIL): a guest spinning
without imports is still stopped at its deadline, and hands the GIL over at every epoch tick so
the process's event loop and its other calls go on while it spins."""

from __future__ import annotations

import asyncio
import threading

import pytest

from trellis.host.runtime import ErrorKind, InvocationError, Invoker, Limits, gil_hold
from trellis.host.runtime import engine as engine_module

from .conftest import TestComponents


@pytest.fixture(autouse=True)
def hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gil_hold, "enabled", True)  # TRELLIS_WASM_HOLD_GIL=1 (off by default)


async def test_a_spinning_guest_holding_the_gil_stops_at_its_deadline_while_the_loop_serves(
        components: TestComponents) -> None:
    spinning = Invoker(components.wat("hostile"), limits=Limits(timeout_s=1.5))
    other = Invoker(components.wat("adder"))
    assert other.invoke("add", [1, 1]) == 2  # compiled and warm before the spin starts
    before = gil_hold.counters()[1]
    entered = threading.Event()
    loop = asyncio.get_running_loop()

    def spin() -> InvocationError:
        entered.set()
        try:
            spinning.invoke("spin", [])
        except InvocationError as exc:
            return exc
        raise AssertionError("the spin returned")

    spun = loop.run_in_executor(None, spin)
    await loop.run_in_executor(None, entered.wait)
    give_up = loop.time() + 10
    while gil_hold.counters()[1] == before:  # the guest is in Wasm, holding the GIL between ticks
        assert loop.time() < give_up, "no GIL hand-over at the ticks"
        await asyncio.sleep(0.005)
    # the loop keeps running and another call answers, on the loop and on a second thread
    answers = [other.invoke("add", [i, 1]) for i in range(3)]
    answers.append(await loop.run_in_executor(None, other.invoke, "add", [5, 5]))
    assert answers == [1, 2, 3, 10] and not spun.done()
    exc = await asyncio.wait_for(spun, 30)
    assert exc.kind is ErrorKind.TIMEOUT and "deadline" in exc.message
    assert gil_hold.counters()[1] - before > 5
    assert spinning.invoke("ok") == 42  # the invoker keeps serving


def test_without_the_native_ticker_calls_release_the_gil(components: TestComponents,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python ticker needs the GIL to tick: a call must not keep it then (nor when switched off)."""
    from tests.runtime.conftest import TestComponents as Loader
    from trellis.host.runtime import make_engine

    monkeypatch.setattr(engine_module, "native_ticker", False)
    eng = make_engine()
    try:
        inv = Invoker(Loader(eng, components.cache).wat("hostile"), limits=Limits(timeout_s=0.2))
        before = gil_hold.counters()
        with pytest.raises(InvocationError) as e:
            inv.invoke("spin", [])
        assert e.value.kind is ErrorKind.TIMEOUT and gil_hold.counters() == before
        assert not isinstance(eng._ticker, engine_module._NativeTicker)
    finally:
        eng.close()
    monkeypatch.setattr(engine_module, "native_ticker", True)
    monkeypatch.setattr(gil_hold, "enabled", False)
    inv = Invoker(components.wat("hostile"), limits=Limits(timeout_s=0.2))
    before = gil_hold.counters()
    with pytest.raises(InvocationError) as e:
        inv.invoke("spin", [])
    assert e.value.kind is ErrorKind.TIMEOUT and gil_hold.counters() == before


def test_the_deadline_holds_whatever_the_slice(components: TestComponents, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tick callback traps at the call's deadline even when the slice never hands the GIL over
    (``TRELLIS_WASM_HOLD_GIL_SLICE_MS`` larger than the call): ticks counted, no hand-over."""
    monkeypatch.setattr(gil_hold, "slice_ms", 1e6)
    spinning = Invoker(components.wat("hostile"), limits=Limits(timeout_s=0.3))
    ticks, handovers = gil_hold.counters()
    with pytest.raises(InvocationError) as e:
        spinning.invoke("spin", [])
    assert e.value.kind is ErrorKind.TIMEOUT and "deadline" in e.value.message
    after = gil_hold.counters()
    assert after[0] - ticks >= 10 and after[1] == handovers
    assert spinning.invoke("ok") == 42
