"""One lifecycle for every long-lived thing: host, wadm, provider runtime, HTTP front.

``start()`` runs the subclass's ``_start`` under a timeout and closes on failure;
``close(reason)`` is idempotent and runs ``_close`` once; every background task
is owned by the service's :class:`TaskGroup`, so a task that dies unexpectedly is
logged instead of vanishing, and nothing outlives its owner.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine
from typing import Any, Self

log = logging.getLogger(__name__)


class Status(enum.Enum):
    INIT = "init"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class TaskGroup:
    """Owns background tasks: failures are logged (and reported), close cancels all."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.owner}: task group closed, cannot start {name}")
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s failed: %r", task.get_name(), exc, exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float = 5.0) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.warning("task %s did not stop within %.1fs", t.get_name(), timeout)


class Service:
    """Base for long-lived services: ``async with svc:`` or ``await svc.start()``/``close()``."""

    name = "service"
    start_timeout_s: float = 30.0

    def __init__(self) -> None:
        self.status = Status.INIT
        self.tasks = TaskGroup(self.name)
        self._closed_event = asyncio.Event()
        self._close_lock = asyncio.Lock()
        self.close_reason: str | None = None

    async def _start(self) -> None:  # pragma: no cover - overridden
        pass

    async def _close(self) -> None:  # pragma: no cover - overridden
        pass

    async def start(self) -> Self:
        if self.status is not Status.INIT:
            raise RuntimeError(f"{self.name} already {self.status.value}")
        self.status = Status.STARTING
        try:
            await asyncio.wait_for(self._start(), self.start_timeout_s)
        except BaseException as exc:
            self.status = Status.FAILED
            await self.close(reason=f"start failed: {exc!r}")
            raise
        self.status = Status.RUNNING
        return self

    async def close(self, reason: str = "closed") -> None:
        async with self._close_lock:
            if self.status in (Status.CLOSING, Status.CLOSED):
                return
            if self.status is not Status.FAILED:
                self.status = Status.CLOSING
            self.close_reason = reason
            try:
                await self._close()
            finally:
                await self.tasks.close()
                self.status = Status.CLOSED
                self._closed_event.set()

    async def finished(self) -> None:
        """Wait until the service has closed (for whatever reason)."""
        await self._closed_event.wait()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close(reason="context exit")
