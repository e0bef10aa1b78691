"""The epoch ticker ticks only while a deadline is pending: an idle worker does not wake 100 times a
second, and every armed deadline still gets all of its ticks (host/runtime/engine.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from trellis.host.runtime import engine as engine_module
from trellis.host.runtime import make_engine
from trellis.host.runtime.engine import EngineSettings


@pytest.fixture(autouse=True, params=["native", "python"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both tickers: the C thread (_ticker.c, the default) and the Python one (TRELLIS_NATIVE_TICKER=0)."""
    monkeypatch.setattr(engine_module, "native_ticker", request.param == "native")
    return str(request.param)


def _is(ticker: object, kind: str) -> bool:
    return isinstance(ticker, engine_module._NativeTicker if kind == "native" else engine_module._EpochTicker)


def _until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_ticker_sleeps_between_deadlines_and_makes_every_tick_of_one(kind: str) -> None:
    eng = make_engine(EngineSettings(epoch_tick_ms=1, consume_fuel=False))
    try:
        eng.deadline_ticks(1.0)  # starts the ticker; nothing armed yet
        ticker = eng._ticker
        assert ticker is not None and _is(ticker, kind)

        def asleep() -> bool:
            return ticker.state()[2]

        _until(asleep)
        before = ticker.state()[0]
        eng.arm(25)  # a store got a deadline of 25 ticks
        _until(lambda: ticker.state()[0] >= before + 25)
        _until(asleep)
        eng.arm(2**62)  # no deadline: nothing to tick for
        assert asleep()
    finally:
        eng.close()


def test_ticks_owed_to_a_call_stop_when_no_call_runs_and_others_are_kept(kind: str) -> None:
    """Issue 16 (idle CPU): a call's 10 s deadline outlives the call; ticking 100 times a second
    until it passed was most of a worker's CPU after traffic. With no call running, the ticks
    owed to deadlines armed inside calls are dropped; a deadline armed outside any call is not."""
    import threading

    eng = make_engine(EngineSettings(epoch_tick_ms=1, consume_fuel=False))
    try:
        eng.deadline_ticks(1.0)
        ticker = eng._ticker
        assert ticker is not None and _is(ticker, kind)

        def asleep() -> bool:
            return ticker.state()[2]

        _until(asleep)
        outer = eng.enter()
        inner = eng.enter()  # a nested call (a component calling another inline)
        eng.arm(10**9)  # a deadline of ~11 days of ticks, inside the calls
        eng.leave(inner)
        count, target, _ = ticker.state()
        assert target > count + 10**8  # the outer call still runs: owed
        other = threading.Thread(target=lambda: eng.leave(eng.enter()))  # a call on another thread
        other.start()
        other.join()
        count, target, _ = ticker.state()
        assert target > count + 10**8
        eng.leave(outer)
        _until(asleep)  # no call runs: the ticks are dropped (else: 11 days of ticking)
        before = ticker.state()[0]
        eng.arm(30)  # armed outside any call (an instance made ahead of calls): ticked in full
        eng.leave(eng.enter())
        _until(lambda: ticker.state()[0] >= before + 30)
        _until(asleep)
    finally:
        eng.close()
