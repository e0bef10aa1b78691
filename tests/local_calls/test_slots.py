"""Slots: a component's admission on one worker, shared by its RPC server and co-located calls."""

from __future__ import annotations

import asyncio
import threading

import pytest

from trellis.host.workers.colocated import Slots


def in_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


async def test_try_acquire_never_waits_and_counts_against_the_server():
    slots = Slots(2, asyncio.get_running_loop())
    assert slots.try_acquire() and not slots.locked()
    assert await slots.acquire()  # a remote call takes the other slot
    assert slots.locked() and slots.in_use == 2
    assert not slots.try_acquire()
    in_thread(slots.release)
    assert slots.in_use == 1 and slots.try_acquire()
    slots.release()
    slots.release()
    assert slots.in_use == 0


async def test_a_released_slot_goes_to_the_first_waiting_remote_call():
    slots = Slots(1, asyncio.get_running_loop())
    assert slots.try_acquire()
    order: list[str] = []

    async def remote(name: str) -> None:
        await slots.acquire()
        order.append(name)

    first = asyncio.create_task(remote("first"))
    await asyncio.sleep(0)  # let it queue
    second = asyncio.create_task(remote("second"))
    await asyncio.sleep(0)
    in_thread(slots.release)  # a co-located call ends on a Wasm thread
    assert not slots.try_acquire(), "a co-located call must not overtake queued remote calls"
    await first
    assert order == ["first"] and slots.in_use == 1
    slots.release()
    await second
    assert order == ["first", "second"]
    slots.release()
    assert slots.in_use == 0


async def test_a_waiter_that_times_out_does_not_keep_or_lose_a_slot():
    slots = Slots(1, asyncio.get_running_loop())
    assert slots.try_acquire()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(slots.acquire(), 0.01)
    slots.release()
    assert slots.in_use == 0 and slots.try_acquire()

    # handed the slot by a release on another thread, then cancelled before it ran: passed on
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    in_thread(slots.release)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)  # the grant scheduled by the release runs, and finds the waiter gone
    assert slots.in_use == 0 and not slots.locked()
