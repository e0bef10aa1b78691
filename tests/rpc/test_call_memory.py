"""At most once per call id, on plain data: joins, replays, bounds and expiry (``call_memory``)."""

from __future__ import annotations

import asyncio
import time

from trellis.interfaces.call_memory import CallMemory


async def test_copies_join_a_running_call_get_a_finished_ones_reply_within_bounds() -> None:
    m = CallMemory(max_calls=3, max_bytes=100)
    deadline = time.time() + 30
    assert m.begin(("a", "f"), deadline) is None  # new: run it
    joined = m.begin(("a", "f"), deadline)  # a copy while it runs
    assert isinstance(joined, asyncio.Future) and not joined.done()
    m.end(("a", "f"), b"A")
    assert joined.result() == b"A"
    assert m.begin(("a", "f"), deadline) == b"A"  # a copy after it ended
    assert m.begin(("a", "g"), deadline) is None  # the same id, another function: another call
    late = m.begin(("a", "g"), deadline)
    m.abandon(("a", "g"))  # cancelled without a reply: its copies are let go, a later one runs
    assert isinstance(late, asyncio.Future) and late.result() is None
    assert m.begin(("a", "g"), deadline) is None
    m.abandon(("a", "g"))
    for key in "bcde":
        assert m.begin((key, "f"), deadline) is None
        m.end((key, "f"), b"x" * 10)
    assert m.remembered == 3  # the oldest forgotten first
    assert m.begin(("a", "f"), deadline) is None
    m.end(("a", "f"), b"y" * 200)  # larger than the whole bound: not kept
    assert m.begin(("a", "f"), deadline) is None
    m.abandon(("a", "f"))
    assert m.begin(("z", "f"), time.time() - 1) is None  # past its deadline: nothing to keep it for
    m.end(("z", "f"), b"z")
    assert m.begin(("z", "f"), deadline) is None
    m.abandon(("z", "f"))
    assert m.running == 0 and m.stats == {"joined": 2, "replayed": 1}
