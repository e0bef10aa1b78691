"""The leader lease in JetStream KV: one holder, takeover after expiry, step-down on a lost renewal."""

from __future__ import annotations

import asyncio
import time

import nats

from trellis.interfaces import subjects
from trellis.interfaces.cancel import stop_if_cancelled
from trellis.wadm.controller.lease import LEASE_BUCKET, LEASE_KEY, Lease

from ..harness import eventually


class _Crashing(Lease):
    """A holder that dies without giving the lease up."""

    async def _release(self) -> None:
        self._held = False


async def test_one_holder_takeover_after_expiry_and_step_down(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    changes: list[tuple[str, bool]] = []
    a = _Crashing(nc, lattice, "a", ttl_s=1.5, poll_s=0.1, on_change=lambda h: changes.append(("a", h)))
    b = Lease(nc, lattice, "b", ttl_s=1.5, poll_s=0.1, on_change=lambda h: changes.append(("b", h)))
    await a.open()
    await b.open()
    ta = asyncio.create_task(a.run())
    await eventually(lambda: a.held, 5, what="a to take the lease")
    tb = asyncio.create_task(b.run())
    try:
        for _ in range(10):  # a renews; b never gets it meanwhile
            await asyncio.sleep(0.2)
            assert a.held and not b.held and b.leader == "a"

        t0 = time.monotonic()
        ta.cancel()  # a dies without a word
        await asyncio.gather(ta, return_exceptions=True)
        await eventually(lambda: b.held, 5, interval=0.02, what="b to take over")
        took = time.monotonic() - t0
        assert 1.0 < took < 3.0, took  # not before the TTL, soon after it

        # someone else overwrites the lease: b's next revision-checked renewal fails and it steps down
        kv = await nc.jetstream().key_value(subjects.bucket(lattice, LEASE_BUCKET))
        await kv.put(LEASE_KEY, b'{"holder": "intruder"}')
        # (checked together: once the intruder's lease expires, b may rightly take it again)
        await eventually(lambda: not b.held and b.leader == "intruder", 3, interval=0.01,
                         what="b to step down for the intruder")
    finally:
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        await nc.close()
    assert changes[:3] == [("a", True), ("b", True), ("b", False)]


async def test_a_holder_whose_renewal_came_too_late_takes_the_lease_back_at_once(nats_server, lattice):
    """Its process stalled past the lease's validity (a loaded machine): it steps down, and since
    nobody wrote the key meanwhile (a revision-checked update proves it) takes it back at once,
    instead of leaving the lattice without a controller until its own key expires; a follower
    polling all along never holds it."""
    nc = await nats.connect(nats_server.url)
    changes: list[tuple[str, bool]] = []
    a = Lease(nc, lattice, "a", ttl_s=3, poll_s=0.05, on_change=lambda h: changes.append(("a", h)))
    b = Lease(nc, lattice, "b", ttl_s=3, poll_s=0.05, on_change=lambda h: changes.append(("b", h)))
    await a.open()
    await b.open()
    ta = asyncio.create_task(a.run())
    await eventually(lambda: a.held, 5, what="a to take the lease")
    tb = asyncio.create_task(b.run())
    try:
        await eventually(lambda: b.leader == "a", 5, what="b to see a as the leader")
        a._valid_until = 0.0  # as after a stall: the renewal a sent last no longer covers now
        assert not a.held
        await eventually(lambda: a.regained == 1 and a.held, 5, interval=0.01, what="a to take it back")
        assert changes == [("a", True), ("a", False), ("a", True)]  # never b: never two controllers
    finally:
        tb.cancel()
        ta.cancel()
        await asyncio.gather(ta, tb, return_exceptions=True)
        await nc.close()


async def test_clean_release_hands_over_at_once(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    a = Lease(nc, lattice, "a", ttl_s=3, poll_s=0.05)
    b = Lease(nc, lattice, "b", ttl_s=3, poll_s=0.05)
    await a.open()
    await b.open()
    ta = asyncio.create_task(a.run())
    await eventually(lambda: a.held, 5)
    tb = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        ta.cancel()
        await asyncio.gather(ta, return_exceptions=True)
        await eventually(lambda: b.held, 2, interval=0.01, what="b to take over")
        assert time.monotonic() - t0 < 0.5
    finally:
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        await nc.close()


async def test_a_loop_stops_even_when_wait_for_swallows_its_cancel():
    """On Python 3.11, a cancel that arrives as the awaited result does is swallowed by
    `asyncio.wait_for` (nats-py waits for every reply with it): the lease loop went on after
    being cancelled and whoever awaited it hung (seen once in a few full test runs). The
    controller's loops check for a pending cancel every round (`stop_if_cancelled`)."""
    loop = asyncio.get_running_loop()
    replies: list[asyncio.Future[int]] = []
    rounds = 0
    sent = asyncio.Event()

    async def renewing() -> None:  # the shape of Lease.run: a request, then the next round
        nonlocal rounds
        while True:
            stop_if_cancelled()
            rounds += 1
            reply: asyncio.Future[int] = loop.create_future()
            replies.append(reply)
            sent.set()
            await asyncio.wait_for(reply, 5)
            sent.clear()

    task = asyncio.create_task(renewing())
    await sent.wait()
    replies[-1].set_result(1)  # the reply and the cancel arrive together
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled() and rounds in (1, 2)
