"""Stopping loops whose cancellation a library swallowed."""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise `asyncio.CancelledError` if the current task has been asked to stop.

    On Python 3.11, `asyncio.wait_for` (which nats-py uses for every request) returns the
    result instead of raising when a cancel arrives just as the result does, and the
    cancel is gone: a loop that only counts on the CancelledError reaching it then goes on
    forever after being cancelled, and whoever awaits it hangs (seen with the lease loop,
    once in a few runs). Every long-running loop (the controller's, bucket watches) calls this once a round;
    the request stays counted in `Task.cancelling()`.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
