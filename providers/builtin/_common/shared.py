"""Backend connections shared by the links that use the same settings.

Links attach to a key (the settings that matter for the connection) without any
I/O; the connection (a NATS client, a Redis pool, an asyncpg pool, a SQLite
database) is opened on first use, by one opener however many callers wait for
it. An open that fails is forgotten, so the next use tries again: a backend that
is down when a link is put does not break the link for good. The connection is
closed when the last link detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

log = logging.getLogger("trellis.providers.builtin")


@dataclass
class _Entry(Generic[R]):
    users: int = 0
    opening: asyncio.Task[R] | None = None
    resource: R | None = None
    last_error: str = ""


class Shared(Generic[K, R]):
    """Reference-counted, lazily opened resources keyed by their settings."""

    def __init__(self, what: str, opener: Callable[[K], Coroutine[Any, Any, R]],
                 closer: Callable[[R], Awaitable[None]]) -> None:
        self.what = what
        self._open = opener
        self._close = closer
        self._entries: dict[K, _Entry[R]] = {}

    def attach(self, key: K) -> None:
        """One more user of ``key`` (no I/O)."""
        self._entries.setdefault(key, _Entry()).users += 1

    async def detach(self, key: K) -> None:
        """One user fewer; the last one closes the resource."""
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users > 0:
            return
        del self._entries[key]
        await self._shut(entry)

    async def get(self, key: K) -> R:
        """The open resource for ``key``, opening it if needed; raises what the opener raised."""
        entry = self._entries.get(key)
        if entry is None:
            raise RuntimeError(f"{self.what}: nothing attached to {key!r}")
        if entry.resource is not None:
            return entry.resource
        if entry.opening is None:
            entry.opening = asyncio.get_running_loop().create_task(self._open(key), name=f"open {self.what}")
        task = entry.opening
        try:
            # shield: one caller giving up (its deadline) must not cancel the open others wait for
            resource = await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if entry.opening is task:
                entry.opening = None
                entry.last_error = str(exc) or exc.__class__.__name__
            raise
        if self._entries.get(key) is not entry:  # detached while opening: detach closes it
            raise RuntimeError(f"{self.what} was closed while opening")
        entry.resource = resource
        entry.opening = None
        entry.last_error = ""
        return resource

    def opened(self, key: K) -> R | None:
        entry = self._entries.get(key)
        return entry.resource if entry is not None else None

    def keys(self) -> list[K]:
        return list(self._entries)

    def last_error(self, key: K) -> str:
        entry = self._entries.get(key)
        return entry.last_error if entry is not None else ""

    async def close_all(self) -> None:
        entries = list(self._entries.values())
        self._entries.clear()
        await asyncio.gather(*(self._shut(e) for e in entries))

    async def _shut(self, entry: _Entry[R]) -> None:
        if entry.opening is not None and entry.resource is None:
            task, entry.opening = entry.opening, None
            with contextlib.suppress(BaseException):
                entry.resource = await task
        resource, entry.resource = entry.resource, None
        if resource is None:
            return
        try:
            await self._close(resource)
        except Exception as exc:
            log.warning("%s: closing failed: %s", self.what, exc)
