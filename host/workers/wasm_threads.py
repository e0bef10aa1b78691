"""The worker's Wasm threads: a call handed from the event loop to a thread, and its answer back.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs ~20 µs of CPU a hand-off (measured:
24-27 µs a hop against 3-8 here, 20 calls at once on uvloop): a ``concurrent.futures.Future``
with its ``Condition``, a work item, a Python ``Semaphore`` taken and given back to count idle
threads, and ``wrap_future`` chaining the two futures' states with callbacks. :meth:`WasmThreads.run`
puts the call on a C ``SimpleQueue`` and the thread answers the loop's own future with one
``call_soon_threadsafe``. Idle threads are counted as the executor counts them (one token per
finished call, taken by the next hand-off, else a thread is started, up to the maximum), so a
queued call always has a thread coming for it. :meth:`submit` keeps the ``Executor`` interface
for the worker's other uses (``loop.run_in_executor``: parking idle instances).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import SimpleQueue
from typing import Any

__all__ = ["WasmThreads"]


_pools: weakref.WeakSet[WasmThreads] = weakref.WeakSet()


def _at_exit() -> None:
    """At interpreter exit, as ``ThreadPoolExecutor``'s threads: each thread finishes the call it
    runs and stops (the interpreter joins them, non-daemon threads)."""
    for pool in list(_pools):
        pool._shutdown = True
        pool._queue.put(None)


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]  # what concurrent.futures.thread uses


def _done(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)


def _failed(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.cancelled():
        fut.set_exception(exc)


class WasmThreads(Executor):
    """Up to ``max_threads`` threads (started as calls need them) running calls for the loop."""

    def __init__(self, max_threads: int, name_prefix: str = "wasm") -> None:
        self.max_threads = max_threads
        self.name_prefix = name_prefix
        self._queue: SimpleQueue[tuple[Any, asyncio.AbstractEventLoop | None, Callable[..., Any], tuple[Any, ...]]
                                 | None] = SimpleQueue()
        self._idle: deque[None] = deque()  # one token per thread that finished a call and waits again
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._shutdown = False
        _pools.add(self)

    def grow(self, max_threads: int) -> None:
        """Allow up to ``max_threads`` (never fewer than now)."""
        self.max_threads = max(self.max_threads, max_threads)

    def run(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` on a Wasm thread; its result (or exception) on ``loop``'s future. A call
        whose future was cancelled before a thread took it does not run."""
        if self._shutdown:
            raise RuntimeError("cannot hand calls to Wasm threads after shutdown")
        fut = loop.create_future()
        self._queue.put((fut, loop, fn, args))
        self._wake()
        return fut

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        cf: Future[Any] = Future()
        self._queue.put((cf, None, (lambda: fn(*args, **kwargs)) if kwargs else fn, () if kwargs else args))
        self._wake()
        return cf

    def _wake(self) -> None:
        try:
            self._idle.pop()  # a thread is free (or about to be): it takes the call
        except IndexError:
            with self._start_lock:
                if len(self._threads) < self.max_threads:
                    t = threading.Thread(target=self._work, name=f"{self.name_prefix}_{len(self._threads)}",
                                         daemon=False)
                    self._threads.append(t)
                    t.start()

    def _work(self) -> None:
        queue, idle, run_one = self._queue, self._idle, self._run_one
        while True:
            item = queue.get()
            if item is None:
                queue.put(None)  # the next thread stops too
                return
            run_one(*item)
            item = None  # nothing of a finished call kept alive while waiting
            idle.append(None)

    def _run_one(self, fut: Any, loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any],
                 args: tuple[Any, ...]) -> None:
        if loop is None:  # submit(): a concurrent future
            if fut.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
        elif not fut.cancelled():
            try:
                result = fn(*args)
            except BaseException as exc:
                self._answer(loop, _failed, fut, exc)
            else:
                self._answer(loop, _done, fut, result)

    @staticmethod
    def _answer(loop: asyncio.AbstractEventLoop, how: Callable[..., None], fut: Any, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(how, fut, value)
        except RuntimeError:  # the loop is closed: the worker is gone, nobody waits for it
            pass

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except Exception:
                    break
                if item is None:
                    continue
                fut, loop = item[0], item[1]
                if loop is None:
                    fut.cancel()
                else:
                    try:
                        loop.call_soon_threadsafe(fut.cancel)
                    except RuntimeError:
                        pass
        self._queue.put(None)
        if wait:
            for t in list(self._threads):
                t.join()
