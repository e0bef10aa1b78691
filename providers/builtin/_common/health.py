"""Backend reachability for health checks, probed in the background.

The host asks a provider for its health every few seconds and treats the first
healthy answer as "started". A probe of an unreachable database can take
seconds, and a provider whose database is down should still start (and answer
its calls with ``connection-failed``). So :class:`Prober` answers at once with
the last probe's result and starts a fresh probe when that result is older than
``interval_s``; before the first probe finishes it reports healthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("trellis.providers.builtin")

#: each backend probe gets this long before it counts as unreachable
PROBE_TIMEOUT_S = 2.0


class Prober:
    def __init__(self, what: str, probe: Callable[[], Awaitable[tuple[bool, str]]], interval_s: float = 2.0) -> None:
        self.what = what
        self._probe = probe
        self.interval_s = interval_s
        self._last: tuple[bool, str] = (True, "backends not probed yet")
        self._at = 0.0
        self._task: asyncio.Task[None] | None = None

    def answer(self) -> tuple[bool, str]:
        if (self._task is None or self._task.done()) and time.monotonic() - self._at >= self.interval_s:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.what} health probe")
        return self._last

    async def check(self) -> tuple[bool, str]:
        """Probe now and wait for the result (tests, and the first answer after a change)."""
        await self._run()
        return self._last

    async def _run(self) -> None:
        try:
            result = await asyncio.wait_for(self._probe(), PROBE_TIMEOUT_S * 2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result = (False, f"health probe failed: {exc.__class__.__name__}: {exc}")
        if result[0] != self._last[0]:
            (log.info if result[0] else log.warning)("%s: %s", self.what, result[1])
        self._last, self._at = result, time.monotonic()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None


async def probe_each(items: list[tuple[str, Callable[[], Awaitable[None]]]]) -> list[str]:
    """Run every ``(name, probe)`` at once, each bounded; return ``"name: problem"`` for the failures."""

    async def one(name: str, fn: Callable[[], Awaitable[None]]) -> str | None:
        try:
            await asyncio.wait_for(fn(), PROBE_TIMEOUT_S)
            return None
        except TimeoutError:
            return f"{name}: no answer within {PROBE_TIMEOUT_S}s"
        except Exception as exc:
            return f"{name}: {exc.__class__.__name__}: {exc}"

    results = await asyncio.gather(*(one(n, f) for n, f in items))
    return [r for r in results if r is not None]
