"""What a failed call or instantiation becomes: the :class:`InvocationError` its caller sees.

The kind comes from what wasmtime said (``errors.classify_failure``), or from the import that
failed first (a missing link, a provider's error, a bad value it returned); the message says
which limit was reached, with the guest's last stderr lines.
"""

from __future__ import annotations

import wasmtime

from trellis.interfaces.wasm_limits import FUEL_PER_ELEMENT, HOSTCALL_FUEL, MAX_BYTES_PER_CALL

from .codec import CodecError
from .errors import (
    ErrorKind,
    ImportFailed,
    InvocationError,
    MissingLink,
    Reroute,
    classify_failure,
    summarize_wasmtime_error,
)
from .imports import CallContext
from .instance import StderrTail
from .settings import Limits

__all__ = ["invocation_failure"]


def invocation_failure(error: Exception, ctx: CallContext, tail: StderrTail | None, *, instantiating: bool,
                       limits: Limits, stack_bytes: int) -> InvocationError | Reroute:
    """The error for ``error``, raised while instantiating or calling with ``ctx``: an import's
    failure first (or its ``Reroute``), else what wasmtime said, with the limit it names."""
    detail = str(error)
    if isinstance(ctx.failure, Reroute):
        return ctx.failure
    if ctx.failure is not None:
        return _import_failure(ctx, detail)
    stderr = tail.text() if tail is not None else ""
    if not isinstance(error, wasmtime.WasmtimeError):
        # wasmtime-py raised while converting values (a codec gap).
        return InvocationError(ErrorKind.TRAP, f"{type(error).__name__}: {error}", detail=detail)
    kind = classify_failure(detail, stderr)
    message = summarize_wasmtime_error(detail)
    if instantiating and kind is ErrorKind.TRAP and "wasm trap" not in detail:
        kind = ErrorKind.INSTANTIATION
    if instantiating and "maximum concurrent limit" in detail:
        message = (f"{message}: the engine's instance pool is full (trellis.host.runtime.engine."
                   f"InstancePool; trellis host --instance-allocator on-demand has no such bound)")
    if kind is ErrorKind.TIMEOUT:
        message = f"deadline of {limits.timeout_s}s exceeded ({message})"
    elif kind is ErrorKind.OUT_OF_FUEL:
        message = f"fuel budget of {limits.fuel} exhausted ({message})"
    elif kind is ErrorKind.OUT_OF_MEMORY:
        message = f"memory cap of {limits.memory_bytes} bytes reached ({message})"
    elif kind is ErrorKind.STACK_OVERFLOW:
        message = f"wasm stack of {stack_bytes} bytes exhausted ({message})"
    elif kind is ErrorKind.TOO_LARGE:
        message = (f"the call's values are too large to cross into or out of Wasm: wasmtime copies at most "
                   f"{HOSTCALL_FUEL >> 20} MiB of host-side values per call, {FUEL_PER_ELEMENT} bytes per list "
                   f"element, so a list<u8> of about {MAX_BYTES_PER_CALL / 1e6:.1f} MB at most ({message})")
    if stderr.strip():
        message = f"{message}; guest stderr: {stderr.strip()[-1000:]}"
    return InvocationError(kind, message, detail=detail)


def _import_failure(ctx: CallContext, detail: str) -> InvocationError:
    assert ctx.failure is not None and ctx.failed_import is not None
    interface, function = ctx.failed_import
    where = f"{interface}.{function}" if interface else function
    err = ctx.failure
    if isinstance(err, MissingLink):
        kind, what = ErrorKind.MISSING_LINK, f"import {where} is not linked: {err}"
    elif isinstance(err, ImportFailed):
        kind, what = ErrorKind.IMPORT_FAILED, f"import {where} failed: {err}"
    elif isinstance(err, CodecError):
        kind, what = ErrorKind.IMPORT_FAILED, f"import {where} returned a bad value: {err}"
    else:
        kind, what = ErrorKind.IMPORT_FAILED, f"import {where} raised {type(err).__name__}: {err}"
    return InvocationError(kind, what, detail=detail, interface=interface, function=function)
