"""Where a call runs (host/workers/dispatch.py): plain facts in, a decision out."""

from __future__ import annotations

import pytest

from trellis.host.workers import dispatch
from trellis.host.workers.dispatch import COLOCATED, INLINE, REMOTE, THREAD, DispatchDecision, Why


@pytest.mark.parametrize("inline_allowed, needs_thread, heavy, way", [
    (True, False, False, INLINE),
    (True, True, False, THREAD),  # seen to need a thread: stays there
    (False, False, False, THREAD),  # inline calls off, or a component that cannot be run again
    (False, True, False, THREAD),
    (True, False, True, THREAD),  # arguments too heavy to copy into Wasm on the loop
])
def test_entry(inline_allowed: bool, needs_thread: bool, heavy: bool, way: dispatch.Way) -> None:
    assert dispatch.entry(inline_allowed, needs_thread, heavy) is way


def test_heavy_arguments() -> None:
    from trellis.host.workers.inline import INLINE_ARG_BYTES, heavy

    body = b"x" * (INLINE_ARG_BYTES + 1)
    assert heavy([{"method": "PUT", "headers": [["a", "b"]], "body": body}])  # an HTTP request record
    assert heavy([body]) and heavy(["y" * (INLINE_ARG_BYTES + 1)]) and heavy([[body[:100], body]])
    assert not heavy([{"method": "PUT", "body": body[:INLINE_ARG_BYTES - 3]}, 1, None])  # 3: "PUT"
    assert not heavy([[1] * 100_000])  # a list of numbers is not counted (no walk)


def test_a_lattice_call_sticks_at_once_and_overruns_only_in_a_row() -> None:
    assert dispatch.after_reroute(sticky=True, overrun=False, overruns=0, overruns_to_stick=3) == (True, 0)
    assert dispatch.after_reroute(sticky=False, overrun=False, overruns=2, overruns_to_stick=3) == (False, 2)
    count, stuck = 0, []
    for _ in range(3):
        stick, count = dispatch.after_reroute(sticky=False, overrun=True, overruns=count, overruns_to_stick=3)
        stuck.append(stick)
    assert stuck == [False, False, True] and count == 3


@pytest.mark.parametrize("facts, decision", [
    ((True, True, 0, 8, 5.0), DispatchDecision(COLOCATED)),
    ((True, True, 7, 8, 5.0), DispatchDecision(COLOCATED)),
    ((False, False, 0, 8, 5.0), DispatchDecision(REMOTE, Why.NOT_HERE)),
    ((True, False, 0, 8, 5.0), DispatchDecision(REMOTE, Why.NOT_TAKING_CALLS)),  # scaled to 0 here, or closed
    ((True, True, 8, 8, 5.0), DispatchDecision(REMOTE, Why.TOO_DEEP)),
    ((True, True, 0, 0, 5.0), DispatchDecision(REMOTE, Why.TOO_DEEP)),  # max depth 0: never nested
    ((True, True, 0, 8, 0.0), DispatchDecision(REMOTE, Why.DEADLINE)),
    ((True, True, 9, 8, -1.0), DispatchDecision(REMOTE, Why.TOO_DEEP)),  # depth is counted first
])
def test_link(facts: tuple, decision: DispatchDecision) -> None:
    assert dispatch.link(*facts) == decision


@pytest.mark.parametrize("size, limit, fits", [(10, 0, True), (1024, 1024, True), (1025, 1024, False)])
def test_fits(size: int, limit: int, fits: bool) -> None:
    assert dispatch.fits(size, limit) is fits


@pytest.mark.parametrize("facts, decision", [
    ((True, True, 0, 1000), DispatchDecision(COLOCATED)),
    ((True, True, 1000, 1000), DispatchDecision(COLOCATED)),
    ((True, True, 1001, 1000), DispatchDecision(REMOTE, Why.TOO_LARGE)),
    ((False, False, 0, 1000), DispatchDecision(REMOTE, Why.NOT_HERE)),
    ((True, False, 0, 1000), DispatchDecision(REMOTE, Why.NOT_TAKING_CALLS)),
])
def test_handoff(facts: tuple, decision: DispatchDecision) -> None:
    assert dispatch.handoff(*facts) == decision
