"""A call into Wasm keeps the GIL, and hands it over at every epoch tick (``TRELLIS_WASM_HOLD_GIL``).

wasmtime-py calls ``wasmtime_component_func_call`` through ``ctypes.CDLL``, which releases the
GIL for the whole call and takes it back at every import and at the end. With ~20 Wasm threads
in a worker that is ten guests at once on two cores, each taking the GIL back at every import:
calls last longer and, at a fixed concurrency, fewer orders a second are served
(docs/performance.md, "Wasm calls keep the GIL"). Here the call keeps the GIL
(``ctypes.PyDLL``), so a worker runs one guest at a time, each until its next import.

Two things would break, and are handled:

* the deadline: the epoch ticker must tick without the GIL. This is on only while the
  engine's ticker is the C thread (``engine._NativeTicker``); with the Python ticker (switched
  off, or no C compiler) calls release the GIL as before;
* the worker's event loop and its other calls, which a guest looping without imports would
  stall: the store's deadline is one tick away and an epoch-deadline callback
  (``wasmtime_store_epoch_deadline_callback``) runs at every tick. Running it, Python code,
  hands the GIL over when another thread asked for it (the interpreter's switch request, set
  once a thread waited ``sys.getswitchinterval()``, 5 ms) and takes it back, then either
  continues for one more tick or, once the call's own deadline (in ticks of the same ticker,
  as ``Store.set_epoch_deadline`` counted them) has passed, traps with ``wasm trap: interrupt``,
  the message :func:`~trellis.host.runtime.errors.classify_failure` reads as a timeout. The
  inline budget (host/workers/inline.py) is such a deadline and reroutes as before.

:func:`set_deadline` replaces ``store.set_epoch_deadline`` for the invoker; :func:`held` says
whether a store's next call keeps the GIL.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from wasmtime import _ffi as ffi

log = logging.getLogger(__name__)

ENV = "TRELLIS_WASM_HOLD_GIL"
#: the switch (``tuning.wasm.wasm_hold_gil``, :func:`~trellis.host.runtime.wasmtime_patches.switch`):
#: off by default, its A/B on the full app was not conclusive (docs/performance.md)
enabled = False
_ATTR = "_trellis_gil_hold"
_SAFE = "_trellis_gil_safe"
_NO_DEADLINE = 2**61
_TRAP = b"wasm trap: interrupt"
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_context_t), ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t))
_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_bound: dict[str, Any] = {}
#: GIL hand-overs made at ticks, in this process (for tests and profiles)
handovers = 0


def _call_binding() -> Any:
    """``wasmtime_component_func_call`` through ``PyDLL`` (keeps the GIL), or None if not found."""
    if "call" not in _bound:
        try:
            from wasmtime import _bindings

            released = vars(_bindings)["_wasmtime_component_func_call"]
            held = ctypes.PyDLL(str(ffi.filename))["wasmtime_component_func_call"]
            held.restype, held.argtypes = released.restype, released.argtypes
            _bound["call"] = held
        except Exception as exc:  # noqa: BLE001 - an unknown wasmtime-py: calls release the GIL
            log.warning("wasmtime_component_func_call not recognised; Wasm calls release the GIL: %s", exc)
            _bound["call"] = None
    return _bound["call"]


class _Hold:
    """A store's state for the callback: the tick count its call's deadline falls on (None: the
    store is not holding; any tick then is its deadline) and the ticker counting."""

    __slots__ = ("end", "ticker")

    def __init__(self) -> None:
        self.end: int | None = None
        self.ticker: Any = None


def _install(store: Any) -> _Hold:
    hold = _Hold()

    def on_tick(_ctx: Any, _data: Any, delta: Any, kind: Any) -> int:
        try:
            end, ticker = hold.end, hold.ticker
            if end is None or ticker is None or ticker.state()[0] >= end:
                return ctypes.cast(ffi.wasmtime_error_new(_TRAP), ctypes.c_void_p).value or 0
            # entering this Python function hands the GIL over when another thread asked for it
            # (the interpreter's switch request, set after it waited 5 ms): a real switch only then
            global handovers
            handovers += 1
            delta[0] = 1
            kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
            return 0
        except BaseException:  # noqa: BLE001 - never unwind into wasmtime: stop the guest instead
            return ctypes.cast(ffi.wasmtime_error_new(_TRAP), ctypes.c_void_p).value or 0

    callback = _CALLBACK(on_tick)  # kept by the store (no cycle through the hold: freed with it)
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, _FINALIZER())  # no finalizer (NULL)
    setattr(store, _ATTR + "_callback", callback)
    setattr(store, _ATTR, hold)
    return hold


def libc_write() -> int:
    if "write" not in _bound:
        _bound["write"] = ctypes.cast(ctypes.CDLL(None).write, ctypes.c_void_p).value
    return int(_bound["write"])


def possible(engine: Any) -> bool:
    """Whether a store of ``engine`` made now may keep the GIL in its calls."""
    return enabled and native_ticker(engine) is not None and _call_binding() is not None


def safe(store: Any, tail: Any = None) -> None:
    """Mark ``store`` as one whose calls may keep the GIL: nothing wasmtime runs on another thread
    during its calls needs the GIL (no Python stdout/stderr writer; ``tail`` is trimmed at each call)."""
    setattr(store, _SAFE, tail if tail is not None else True)


def native_ticker(engine: Any) -> Any:
    """The engine's ticker when it is the C thread (ticks without the GIL), else None."""
    from .engine import _NativeTicker

    ticker = engine._ticker
    return ticker if isinstance(ticker, _NativeTicker) else None


def set_deadline(store: Any, engine: Any, ticks: int) -> None:
    """``store.set_epoch_deadline(ticks)``, and whether the store's calls keep the GIL: they do
    when switched on, the deadline is finite and the engine's ticker needs no GIL. The caller
    arms the ticker for ``ticks`` (``RuntimeEngine.arm``) as before."""
    hold: _Hold | None = getattr(store, _ATTR, None)
    mark = getattr(store, _SAFE, None)
    ticker = native_ticker(engine) if enabled and mark is not None and ticks < _NO_DEADLINE else None
    if ticker is None or _call_binding() is None:
        if hold is not None:
            hold.end = None  # the callback now runs only at this deadline, and traps there
        store.set_epoch_deadline(ticks)
        return
    if hold is None:
        hold = _install(store)
    if mark is not True and mark is not None:
        mark.trim()
    hold.ticker = ticker
    hold.end = ticker.state()[0] + ticks
    store.set_epoch_deadline(1)


def held(store: Any) -> Any:
    """The GIL-keeping ``wasmtime_component_func_call`` when ``store`` holds it, else None."""
    hold: _Hold | None = getattr(store, _ATTR, None)
    if hold is None or hold.end is None:
        return None
    return _bound.get("call")
