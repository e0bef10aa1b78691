"""Running handlers and callbacks: shared by the lattice runtime and the test environment."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from trellis.interfaces.errors import ErrorCode

from .context import Context, Instance, ProviderInfo, _current_context, _current_instance
from .definition import ExportDefinition, Provider, call_maybe_sync
from .errors import ProviderError

log = logging.getLogger("trellis.providers.sdk")


class _Call:
    __slots__ = ("task", "when", "expired")

    def __init__(self, task: asyncio.Task[Any], when: float) -> None:
        self.task = task
        self.when = when
        self.expired = False


class Deadlines:
    """Cancels handlers still running at their caller's deadline: one timer for every call in
    flight (armed for the earliest deadline) instead of a timer per call.

    Most calls finish long before their deadline, so the common cost is a dict insert and
    delete; the timer fires when the earliest deadline of the calls once in flight comes,
    cancels those that are due, and re-arms for the next one.
    """

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = float("inf")

    def add(self, task: asyncio.Task[Any], remaining_s: float) -> _Call:
        loop = task.get_loop()
        call = _Call(task, loop.time() + remaining_s)
        self._calls[id(call)] = call
        if call.when < self._at:
            self._arm(loop, call.when)
        return call

    def remove(self, call: _Call) -> None:
        self._calls.pop(id(call), None)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = when
        self._timer = loop.call_at(when, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._at = None, float("inf")
        now = loop.time()
        nearest = float("inf")
        for call in list(self._calls.values()):
            if call.when <= now:
                del self._calls[id(call)]
                call.expired = True
                call.task.cancel()
            elif call.when < nearest:
                nearest = call.when
        if nearest != float("inf"):
            self._arm(loop, nearest)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._at = None, float("inf")
        self._calls.clear()


async def invoke_export(defn: ExportDefinition, args: list[Any], ctx: Context, instance: Instance,
                        deadlines: Deadlines | None = None) -> Any:
    """Run one handler under the caller's deadline; bad arguments and timeouts become ProviderErrors.

    With ``deadlines`` (the runtime's) the deadline is kept by its shared timer; without (tests),
    by a timer of this call's own.
    """
    if len(args) != len(defn.params):
        names = ", ".join(defn.params) or "no arguments"
        raise ProviderError(ErrorCode.BAD_REQUEST, f"{defn.operation} takes {len(defn.params)} argument"
                                                   f"{'' if len(defn.params) == 1 else 's'} ({names}), "
                                                   f"got {len(args)}")
    remaining = ctx.deadline - time.time()
    if remaining <= 0:
        raise ProviderError(ErrorCode.TIMEOUT, f"{defn.operation}: deadline passed before the call started")
    tok_ctx = _current_context.set(ctx)
    tok_inst = _current_instance.set(instance)
    try:
        if deadlines is None:
            return await _bounded(defn, args, ctx, remaining)
        task = asyncio.current_task()
        assert task is not None
        call = deadlines.add(task, remaining)
        try:
            if defn.is_async:
                result = await defn.handler(*args, ctx=ctx)
            else:
                result = await call_maybe_sync(defn.handler, *args, ctx=ctx, is_async=False)
        except asyncio.CancelledError:
            if call.expired and task.uncancel() == 0:
                raise _late(defn, remaining) from None
            raise
        finally:
            deadlines.remove(call)
        if call.expired:  # the handler swallowed the cancellation and answered anyway
            task.uncancel()
        return result
    finally:
        _current_instance.reset(tok_inst)
        _current_context.reset(tok_ctx)


async def _bounded(defn: ExportDefinition, args: list[Any], ctx: Context, remaining: float) -> Any:
    try:
        async with asyncio.timeout(remaining) as cm:
            return await call_maybe_sync(defn.handler, *args, ctx=ctx, is_async=defn.is_async)
    except TimeoutError:
        if cm.expired():
            raise _late(defn, remaining) from None
        raise


def _late(defn: ExportDefinition, remaining: float) -> ProviderError:
    return ProviderError(ErrorCode.TIMEOUT, f"{defn.operation} did not finish before the caller's "
                                            f"deadline ({remaining:.3f}s)")


async def run_callback(provider: Provider, kind: str, *args: Any, info: ProviderInfo, instance: Instance,
                       timeout_s: float | None = None) -> tuple[bool, Any]:
    """Run a lifecycle callback if the provider has one. Returns (ran without error, result).

    Errors are logged, never raised: one failing callback must not stop the provider.
    """
    fn = provider.callback(kind)
    if fn is None:
        return True, None
    tok = _current_instance.set(instance)
    try:
        coro = call_maybe_sync(fn, *args, info=info)
        result = await (asyncio.wait_for(coro, timeout_s) if timeout_s else coro)
        return True, result
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and timeout_s:
            log.error("provider %s: %s did not finish within %.1fs", info.provider_id, kind, timeout_s)
        else:
            log.exception("provider %s: %s failed", info.provider_id, kind)
        return False, exc
    finally:
        _current_instance.reset(tok)


def health_result(ok: bool, result: Any) -> tuple[bool, str]:
    """Normalise what a health callback returned: (ok, message), a bool, or None."""
    if not ok:
        return False, f"health check raised {result!r}"
    if result is None:
        return True, "ok"
    if isinstance(result, bool):
        return result, "ok" if result else "unhealthy"
    if isinstance(result, tuple) and len(result) == 2:
        return bool(result[0]), str(result[1])
    return False, f"health check returned {result!r}; expected (ok, message)"
