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
    return loop.create_task(_go_on(coro, waited), name=name, context=context)


async def _go_on(coro: Coroutine[Any, Any, None], waited: Any) -> None:
    """The rest of ``coro``, which yielded ``waited`` (what an ``await`` of a future yields)."""
    while True:
        try:
            if waited is None:  # a bare yield (asyncio.sleep(0)): a loop turn
                await asyncio.sleep(0)
            else:
                await _Yielded(waited)
        except BaseException as exc:  # a cancel of this task (or the future's failure): into coro
            try:
                waited = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waited = coro.send(None)
        except StopIteration:
            return


class _Yielded:
    """Awaits the future a coroutine yielded, as its task would (the task's cancel cancels it)."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, None]:
        future = self.future
        if not getattr(future, "_asyncio_future_blocking", False):
            raise RuntimeError(f"a coroutine yielded {future!r}, not a future")
        yield future  # the task waits on it; the coroutine reads its result once resumed
