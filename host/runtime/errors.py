"""Errors of the runtime and the pure classification of wasmtime failures."""

from __future__ import annotations

import re
from enum import Enum

__all__ = [
    "ErrorKind",
    "InvocationError",
    "MissingLink",
    "ImportFailed",
    "Reroute",
    "classify_failure",
    "summarize_wasmtime_error",
]


class ErrorKind(str, Enum):  # noqa: UP042 (wire values: str() and format() stay as they were)
    """Why an invocation failed. The string values are part of the wire
    contract (error replies carry them)."""

    TIMEOUT = "timeout"
    OUT_OF_FUEL = "out_of_fuel"
    OUT_OF_MEMORY = "out_of_memory"
    STACK_OVERFLOW = "stack_overflow"
    TRAP = "trap"
    MISSING_LINK = "missing_link"
    IMPORT_FAILED = "import_failed"
    BAD_ARGUMENT = "bad_argument"
    BAD_RESULT = "bad_result"
    NOT_FOUND = "not_found"
    INSTANTIATION = "instantiation"
    #: the call's values are more than wasmtime copies into or out of Wasm in one call
    #: (:mod:`trellis.interfaces.wasm_limits`)
    TOO_LARGE = "too_large"
    #: an HTTP request body more than one call carries in, to a component that does not read
    #: bodies in pieces (``trellis:http/request-body``): the HTTP front answers 413
    REQUEST_TOO_LARGE = "request_too_large"


class InvocationError(Exception):
    """A call failed; the process and other calls are unaffected.

    Attributes:
        kind: Which budget or rule was hit (:class:`ErrorKind`).
        message: Human-readable cause, without the wasm backtrace.
        detail: wasmtime's full message (with backtrace) or ``""``.
        interface, function: The import involved, for import failures.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        detail: str = "",
        interface: str | None = None,
        function: str | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.detail = detail
        self.interface = interface
        self.function = function


class MissingLink(Exception):
    """Raised by an import handler: nothing is linked to serve this import."""

    def __init__(self, interface: str, function: str, message: str = "") -> None:
        super().__init__(message or f"no link for {interface}.{function}")
        self.interface = interface
        self.function = function


class ImportFailed(Exception):
    """Raised by an import handler: the linked target failed."""

    def __init__(self, interface: str, function: str, message: str) -> None:
        super().__init__(message)
        self.interface = interface
        self.function = function


class Reroute(Exception):
    """This call cannot go on where it runs; run it again elsewhere. Raised (by an import
    handler, or by the invoker itself) before anything outside the instance happened, so
    running the call again from the start is safe.

    ``sticky`` says the reason will hold for the next calls of this function too (it calls
    an import that needs the network, or runs longer than the place allows); a transient
    reason (a lock another thread holds) says nothing about the next call.
    """

    def __init__(self, reason: str, *, sticky: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sticky = sticky


_CAUSES: tuple[tuple[re.Pattern[str], ErrorKind], ...] = (
    (re.compile(r"wasm trap: interrupt"), ErrorKind.TIMEOUT),
    (re.compile(r"all fuel consumed"), ErrorKind.OUT_OF_FUEL),
    (re.compile(r"call stack exhausted"), ErrorKind.STACK_OVERFLOW),
    (re.compile(r"exceeds memory limits|memory minimum size|allocation too large"), ErrorKind.OUT_OF_MEMORY),
    (re.compile(r"too much data is being copied between the host and the guest"), ErrorKind.TOO_LARGE),
)

# Signs, in the backtrace or the guest's stderr, that a trap is the guest
# giving up after memory.grow was refused by the store's memory cap: Rust's
# alloc-error path, CPython's MemoryError, dlmalloc/wasi-libc failure text.
_OOM_SIGNS = re.compile(
    r"alloc_error|memory allocation of \d+ bytes failed|MemoryError|out of memory",
    re.IGNORECASE,
)


def classify_failure(message: str, guest_stderr: str = "") -> ErrorKind:
    """Map a wasmtime error message (and the guest's stderr tail) to a kind.

    wasmtime-py raises a plain ``WasmtimeError`` whose text is the only
    structured signal, so this matches the trap descriptions wasmtime prints.
    Out-of-memory has no trap of its own: a refused ``memory.grow`` returns
    -1 and the guest traps however it chooses, so it is recognised from the
    guest's own allocation-failure path.
    """
    for pattern, kind in _CAUSES:
        if pattern.search(message):
            return kind
    if _OOM_SIGNS.search(message) or _OOM_SIGNS.search(guest_stderr):
        return ErrorKind.OUT_OF_MEMORY
    return ErrorKind.TRAP


def summarize_wasmtime_error(message: str, max_frames: int = 5) -> str:
    """wasmtime's context and cause on one line, plus the first few wasm
    backtrace frames.

    wasmtime formats errors as context lines (for a trap: "error while
    executing at wasm backtrace:" and numbered frames), then "Caused by:"
    and numbered causes.
    """
    head, _, cause = message.partition("Caused by:")
    context: list[str] = []
    frames: list[str] = []
    for line in head.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("error while executing at wasm backtrace"):
            continue
        (frames if _NUMBERED.match(line) else context).append(line)
    parts = [*context]
    if cause.strip():
        parts.append(" ".join(cause.split()))
    summary = "; ".join(parts)
    if not frames:
        return summary
    more = f" (+{len(frames) - max_frames} frames)" if len(frames) > max_frames else ""
    return f"{summary} [at {'; '.join(frames[:max_frames])}{more}]"


_NUMBERED = re.compile(r"\d+:")
