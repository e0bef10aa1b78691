"""One live instance of a component: its store, its instance and what is cached per instance.

An :class:`~trellis.host.runtime.invoke.Invoker` keeps these (warm ones for reuse), calls
through them and drops them; the guest's stderr is kept by a :class:`StderrTail` per store
for error messages.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import wasmtime
from wasmtime import component as wc

from .call import TypedCall
from .component import FunctionInfo, LoadedComponent
from .errors import ErrorKind, InvocationError
from .imports import ResourceTable, mentions_resources

__all__ = ["STDERR_TAIL_BYTES", "Live", "StderrTail", "mentions_resources_in"]

STDERR_TAIL_BYTES = 4096




class StderrTail:
    """Keeps the last few KiB the guest wrote to stderr, for error messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > STDERR_TAIL_BYTES:
            del self._buf[: len(self._buf) - STDERR_TAIL_BYTES]

    def text(self) -> str:
        return self._buf.decode("utf-8", "replace")


class FdStderrTail(StderrTail):
    """The guest's stderr, kept without the GIL: wasmtime runs a custom stderr writer on another
    thread while the call waits for it, so a Python writer (``instance.StderrTail``) would wait for
    the GIL the call holds. Here wasmtime's writer is libc's ``write`` into a memory file of the
    store's own; :meth:`text` reads its last ``STDERR_TAIL_BYTES``, :meth:`trim` (at each call)
    keeps the file short."""

    _KEEP = 64 * 1024

    def __init__(self) -> None:  # no buffer: the memory file is the buffer
        self._fd = os.memfd_create("trellis-guest-stderr", os.MFD_CLOEXEC)

    def attach(self, wasi: Any) -> None:
        from wasmtime import _bindings

        from . import gil_hold

        setter = vars(_bindings)["_wasi_config_set_stderr_custom"]
        writer = setter.argtypes[1](gil_hold.libc_write())  # write(fd, buf, len): the data pointer is the fd
        setter(wasi.ptr(), writer, ctypes.c_void_p(self._fd), setter.argtypes[3]())  # no finalizer (NULL)

    def write(self, data: bytes) -> None:
        os.write(self._fd, data)

    def _tail(self, size: int) -> bytes:
        start = max(0, size - STDERR_TAIL_BYTES)
        return os.pread(self._fd, size - start, start)

    def text(self) -> str:
        return self._tail(os.fstat(self._fd).st_size).decode("utf-8", "replace")

    def trim(self) -> None:
        size = os.fstat(self._fd).st_size
        if size > self._KEEP:
            kept = self._tail(size)
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, kept)

    def __del__(self) -> None:
        os.close(self._fd)


@dataclass
class Live:
    """A store and its instance, with what is cached per instance."""

    store: wasmtime.Store
    instance: wc.Instance
    table: ResourceTable
    stderr: StderrTail | None
    calls: int = 0
    last_used: float = 0.0
    busy: bool = False
    #: bytes of memory its calls touched (``probe.py``): its peak linear memory, roughly
    touched: int = 0
    #: fuel its last call used (metered components, when probed)
    fuel_used: int | None = None
    funcs: dict[FunctionInfo, TypedCall] = field(default_factory=dict)

    def func(self, loaded: LoadedComponent, fn: FunctionInfo,
             types: dict[FunctionInfo, tuple[list[Any], Any]] | None = None) -> TypedCall:
        """The export as a :class:`TypedCall`. ``types`` keeps the export types of the component
        (they do not depend on the store), so a fresh instance does not read them again."""
        f = self.funcs.get(fn)
        if f is None:
            raw = self.instance.get_func(self.store, loaded.export_index(fn))
            if raw is None:  # pragma: no cover - the index comes from the type
                raise InvocationError(ErrorKind.NOT_FOUND, f"{fn.address} is not a function")
            known = types.get(fn) if types is not None else None
            if known is None:
                f = TypedCall(raw, self.store)
                # resource types may belong to one instance: only resource-free signatures are shared
                if types is not None and not mentions_resources_in(fn):
                    types[fn] = (f.param_tys, f.result_ty)
            else:
                f = TypedCall.__new__(TypedCall)
                f.func = raw
                f.param_tys, f.result_ty = known
            self.funcs[fn] = f
        return f

    lifecycle: threading.Lock | threading.RLock | None = None

    def close(self, wait: bool = True) -> bool:
        """Drop the store; False (and nothing done) when ``wait`` is off and another thread
        holds the lifecycle lock."""
        if self.lifecycle is None:
            self.store.close()
        elif self.lifecycle.acquire(blocking=wait):
            try:
                self.store.close()
            finally:
                self.lifecycle.release()
        else:
            return False
        self.funcs.clear()
        return True


def mentions_resources_in(fn: FunctionInfo) -> bool:
    """Whether a resource type appears in the function's parameters or result."""
    return any(mentions_resources(t) for _, t in fn.params) or mentions_resources(fn.result)
