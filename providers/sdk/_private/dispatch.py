"""Running handlers and callbacks: shared by the lattice runtime and the test environment."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from interfaces.errors import ErrorCode

from .context import Context, Instance, ProviderInfo, _current_context, _current_instance
from .definition import ExportDefinition, Provider, call_maybe_sync
from .errors import ProviderError

log = logging.getLogger("providers.sdk")


async def invoke_export(defn: ExportDefinition, args: list[Any], ctx: Context, instance: Instance) -> Any:
    """Run one handler under the caller's deadline; bad arguments and timeouts become ProviderErrors."""
    if len(args) != len(defn.params):
        names = ", ".join(defn.params) or "no arguments"
        raise ProviderError(ErrorCode.BAD_REQUEST, f"{defn.operation} takes {len(defn.params)} argument"
                                                   f"{'' if len(defn.params) == 1 else 's'} ({names}), "
                                                   f"got {len(args)}")
    remaining = ctx.remaining_s()
    if remaining <= 0:
        raise ProviderError(ErrorCode.TIMEOUT, f"{defn.operation}: deadline passed before the call started")
    tok_ctx = _current_context.set(ctx)
    tok_inst = _current_instance.set(instance)
    try:
        try:
            async with asyncio.timeout(remaining) as cm:
                return await call_maybe_sync(defn.handler, *args, ctx=ctx, is_async=defn.is_async)
        except TimeoutError:
            if cm.expired():
                raise ProviderError(ErrorCode.TIMEOUT, f"{defn.operation} did not finish before the caller's "
                                                       f"deadline ({remaining:.3f}s)") from None
            raise
    finally:
        _current_instance.reset(tok_inst)
        _current_context.reset(tok_ctx)


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
