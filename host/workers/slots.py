"""A component's concurrency slots on one worker: the admission of its RPC server and the
co-located calls and handed HTTP requests that share them (``colocated.py``, ``handoff.py``).

Passed to :class:`~trellis.interfaces.rpc_server.RpcServer` as its ``admission``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class Slots:
    """A component's concurrency slots on one worker, shared by its RPC server and co-located calls.

    Stands in for the ``asyncio.Semaphore`` of :class:`~trellis.interfaces.rpc_server.RpcServer`
    (``locked()``, ``await acquire()``, ``release()``), and adds :meth:`try_acquire`, which any
    thread may call and which never waits. Remote calls queue in FIFO order; a slot released
    while they wait goes to the first of them, so a co-located call never overtakes them.
    """

    def __init__(self, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._lock = threading.Lock()
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    def locked(self) -> bool:
        return self._free <= 0

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            return False

    async def acquire(self) -> bool:
        """On the event loop: a slot, waiting in line for one if none is free."""
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            fut: asyncio.Future[bool] = self._loop.create_future()
            self._waiters.append(fut)
        try:
            await fut
        except BaseException:  # cancelled (the caller's deadline while queued)
            with self._lock:
                try:
                    self._waiters.remove(fut)
                    handed = False
                except ValueError:  # release() already gave us the slot: pass it on
                    handed = True
            if handed:
                self.release()
            raise
        return True

    def release(self) -> None:
        """From any thread. A waiting remote call gets the slot; else it is free again."""
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            fut = self._waiters.popleft()
        if threading.get_ident() == self._loop_thread:
            self._grant(fut)
        else:
            try:
                self._loop.call_soon_threadsafe(self._grant, fut)
            except RuntimeError:  # the loop is closed: the worker is going away
                pass

    @staticmethod
    def _grant(fut: asyncio.Future[bool]) -> None:
        # a future cancelled after it was handed the slot: its acquire() passes the slot on
        if not fut.done():
            fut.set_result(True)
