"""A call into Wasm keeps the GIL, and hands it over at epoch ticks (``TRELLIS_WASM_HOLD_GIL``).

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
  (``wasmtime_store_epoch_deadline_callback``) runs at every tick. It is C (``_ticker.c``'s
  ``on_tick``, no ctypes callback, no Python frame). Once the call's own deadline (in ticks of
  the same ticker, as ``Store.set_epoch_deadline`` counted them) has passed it traps with
  ``wasm trap: interrupt``, the message :func:`~trellis.host.runtime.errors.classify_failure`
  reads as a timeout (the inline budget, host/workers/inline.py, is such a deadline and
  reroutes as before). Otherwise it continues for one more tick and hands the GIL over
  (``PyEval_SaveThread``/``RestoreThread``: a switch only if another thread waits), at every
  tick or, with :data:`slice_ms`, once the thread has run that much CPU since the call began or
  since its last hand-over. Under the full app's load a held call sees ~0.9 ticks; whether it
  hands over at each (as the first version's Python callback did), after 5 ms, or never, measured
  the same (docs/performance.md, "Wasm calls keep the GIL, second session").

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
#: the switch (``tuning.wasm.wasm_hold_gil``, :func:`~trellis.host.runtime.wasmtime_patches.switch`): off by
#: default (the full app gains +13 % req/s, but a guest that computes for long slows its worker's other calls
#: 10-20x: tests/chaos/test_hostile.py; docs/performance.md)
enabled = False
#: thread CPU a holding call runs before a tick hands the GIL over (``tuning.wasm.wasm_hold_gil_slice_ms``);
#: 0 (the default): at every tick, a switch only if another thread waits
slice_ms = 0.0
_ATTR = "_trellis_gil_hold"
_SAFE = "_trellis_gil_safe"
_NO_DEADLINE = 2**61
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_context_t), ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t))
_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_bound: dict[str, Any] = {}


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


def counters() -> tuple[int, int]:
    """(ticks, hand-overs) the tick callback saw in this process's holding calls (tests, profiles)."""
    from .engine import _ticker_module

    module = _ticker_module()
    if module is None:
        return 0, 0
    ticks, handovers = module.counters()
    return int(ticks), int(handovers)


def _install(store: Any, module: Any) -> Any:
    """The store's C state (``_ticker.c``'s ``Hold``) and its tick callback (C, ``on_tick``)."""
    hold = module.Hold(ctypes.cast(ffi.dll.wasmtime_error_new, ctypes.c_void_p).value)
    callback = ctypes.cast(ctypes.c_void_p(module.callback()), _CALLBACK)
    # no finalizer (NULL): the hold is the store's attribute, freed after the store itself
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, ctypes.c_void_p(hold.address()),
                                               _FINALIZER())
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
    hold = getattr(store, _ATTR, None)
    mark = getattr(store, _SAFE, None)
    ticker = native_ticker(engine) if enabled and mark is not None and ticks < _NO_DEADLINE else None
    if ticker is None or _call_binding() is None:
        if hold is not None:
            hold.disarm()  # the callback now runs only at this deadline, and traps there
        store.set_epoch_deadline(ticks)
        return
    if hold is None:
        from .engine import _ticker_module

        hold = _install(store, _ticker_module())
    if mark is not True and mark is not None:
        mark.trim()
    native = ticker._t
    hold.arm(native, native.state()[0] + ticks, int(slice_ms * 1e6))
    store.set_epoch_deadline(1)


def held(store: Any) -> Any:
    """The GIL-keeping ``wasmtime_component_func_call`` when ``store`` holds it, else None."""
    hold = getattr(store, _ATTR, None)
    if hold is None or not hold.holding():
        return None
    return _bound.get("call")
