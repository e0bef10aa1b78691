"""Starting a coroutine at once, on the caller's stack, and making a task of it only if it waits.

``loop.create_task(coro)`` runs nothing now: it builds a task, schedules its first step
with ``call_soon`` and the coroutine starts on the event loop's next turn. For work that
usually finishes without waiting (an HTTP request a worker answers by running its
component inline, on the loop: ``host/workers/inline.py``) that is a task, a handle, a
loop turn (an ``epoll_wait``) and the step's bookkeeping per request for nothing.
:func:`start` runs the coroutine's first step right away, in a copy of the current
context as a task would; when it finishes there, no task is made. When it waits on a
future, a task takes over from that point (in the same context): what the coroutine sees
from then on is what it would see in any task (cancellation, ``current_task()``).
Python 3.12's ``eager_task_factory`` does the same for every task of a loop; this is
for one call site, on Python 3.11.

The difference a caller must allow for: the first step runs *before* ``start`` returns,
not later, and outside any task (``asyncio.current_task()`` is the caller's, or None), so
it must not use ``asyncio.timeout()`` before its first wait.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any


def start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None],
          name: str | None = None) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first waits; None when it finished (its outcome is dropped, as a
    task's nobody awaits: it must handle its own errors), else the task that goes on with it."""
    context = contextvars.copy_context()
    try:
        waited = context.run(coro.send, None)
    except StopIteration:
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # as the loop reports a failed task nobody awaited
        loop.call_exception_handler({"message": f"{coro!r} failed", "exception": exc})
        return None
    return loop.create_task(_Resumed(coro, waited), name=name, context=context)


_HANDED = object()


class _Resumed(collections.abc.Coroutine):  # type: ignore[type-arg]  # runs as the task's coroutine
    """The rest of a started coroutine, as a task's coroutine: the task's first step gets the
    future the coroutine waits on (``waited``, what an ``await`` of a future yields), its later
    steps and any cancel go to the coroutine itself. A cancel before the first step also
    cancels ``waited``, as a task's cancel cancels the future it waits on."""

    __slots__ = ("_coro", "_waited")

    def __init__(self, coro: Coroutine[Any, Any, None], waited: Any) -> None:
        self._coro = coro
        self._waited = waited

    def send(self, value: Any) -> Any:
        waited = self._waited
        if waited is not _HANDED:
            self._waited = _HANDED
            return waited
        return self._coro.send(value)

    def throw(self, exc: Any, *rest: Any) -> Any:
        waited = self._waited
        if waited is not _HANDED:
            self._waited = _HANDED
            if isinstance(exc, asyncio.CancelledError) and isinstance(waited, asyncio.Future):
                waited.cancel()
        return self._coro.throw(exc, *rest)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("run by its task only")
