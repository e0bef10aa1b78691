"""The host's hot ``wasi:io`` / ``wasi:http`` functions as native callbacks (``_native.c``,
``_native_values.c``).

:mod:`.fastcall` registers each function with wasmtime's C API and a ctypes callback that
reads and writes wasmtime's value slots in Python: ~13-20 µs of host Python a call, 15
calls and 4 drops a request. Here the callback is C: ``_native.c`` reads the arguments
(resource handles → the objects of the instance's table), calls the host's implementation
(the same Python function of :mod:`.types` / :mod:`.io`: streaming bodies, pollables and
the outparam's streamed head keep working unchanged) and writes its plain result into the
result slot; the resources' drops are C too. What it does not read or write natively (an
``error-code`` with a record payload, a ``list<borrow<pollable>>``) goes to
:mod:`.fastcall`'s code for that call, decided before anything is read or written.

The extension is compiled on first use with the machine's C compiler and Python headers
into ``$XDG_CACHE_HOME/trellis/native`` (``~/.cache/trellis/native``), under a name keyed by
the source's hash and the Python version, and loaded from there; nothing to install. Without a
compiler (or with ``TRELLIS_WASI_HTTP_NATIVE=0``, ``tuning.wasm.wasi_http_native``) the
ctypes callbacks of :mod:`.fastcall` serve, as before. It needs :mod:`.fastcall` active.

The request's state (``_native_state.c``): for the dozen functions every request the host holds
whole calls (the request's method, path and body stream, the response, its fields and body,
the outparam), the callback does not call the Python implementation but a C one working on the
same objects: they are ``__slots__`` classes, whose slots it reads and writes at their offsets
(found once here, by :func:`_init_state`). It does only the plain case (a held body, a
collected response, nothing to refuse, nothing past the inline bound) and hands anything else,
untouched, to the Python implementation. ``TRELLIS_WASI_HTTP_NATIVE_STATE=0``
(``tuning.wasm.wasi_http_native_state``) calls the Python implementations always, as before.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from wasmtime import _ffi as ffi

from trellis.interfaces.resources import unversioned

from .. import native_build, native_val
from ..codec import CodecError
from ..imports import CURRENT_CALL, RESOURCE_TYPE_IDS, HostResource
from ..wit import BorrowT, ListT, OptionT, OwnT, Prim, ResultT, TupleT, VariantT, mentions_resources

__all__ = ["ENV", "available", "dtor_addresses", "register", "spec"]

log = logging.getLogger("trellis.host.runtime.wasi_http")

ENV = "TRELLIS_WASI_HTTP_NATIVE"
#: on unless switched off (``tuning.wasm.wasi_http_native``: wasmtime_patches.switch)
enabled = True
STATE_ENV = "TRELLIS_WASI_HTTP_NATIVE_STATE"
#: the hot functions' C implementations on the request's state (``tuning.wasm.wasi_http_native_state``);
#: read when a component's linker is built
state_enabled = True

SOURCE = Path(__file__).with_name("_native.c")  # it includes _native_values.c, _native_state.c, ../_wasmtime_val.h
SOURCES = (SOURCE, Path(__file__).with_name("_native_values.c"), Path(__file__).with_name("_native_state.c"),
           native_val.HEADER)
NAME = "_trellis_wasi_native"
_INTS = {"bool", "u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64"}
_FUNCTIONS = {  # the C module's name -> libwasmtime's
    "to_host": "wasmtime_component_resource_any_to_host", "host_rep": "wasmtime_component_resource_host_rep",
    "host_type": "wasmtime_component_resource_host_type", "host_delete": "wasmtime_component_resource_host_delete",
    "any_delete": "wasmtime_component_resource_any_delete", "vec_delete": "wasm_byte_vec_delete",
    "list_delete": "wasmtime_component_vallist_delete", "tuple_delete": "wasmtime_component_valtuple_delete",
    "val_delete": "wasmtime_component_val_delete", "host_new": "wasmtime_component_resource_host_new",
    "host_to_any": "wasmtime_component_resource_host_to_any", "vec_new": "wasm_byte_vec_new",
    "list_uninit": "wasmtime_component_vallist_new_uninit", "tuple_uninit": "wasmtime_component_valtuple_new_uninit",
    "val_new": "wasmtime_component_val_new", "error_new": "wasmtime_error_new",
}

_state: dict[str, Any] = {}  # "module": the loaded extension or None (tried and failed)


def _load() -> ModuleType:
    module = native_build.load(NAME, SOURCE, includes=SOURCES[1:])
    native_val.check(module)
    lib = ctypes.CDLL(str(ffi.filename))
    addresses = {name: ctypes.cast(lib[c_name], ctypes.c_void_p).value for name, c_name in _FUNCTIONS.items()}
    module.init(addresses, CURRENT_CALL, HostResource, CodecError)
    try:
        _init_state(module)
    except Exception as exc:  # noqa: BLE001 - the callbacks still serve, with the Python implementations
        log.warning("wasi:http request state in C unavailable (the Python implementations serve): %s", exc)
        _state["fast"] = {}
    return module


def _init_state(module: ModuleType) -> None:
    """The classes whose slots ``_native_state.c`` reads and writes (each of those it makes with
    every slot, in order), and the constants it needs. A class that changed its slots fails here."""
    from trellis.kit import bodies

    from . import io, types

    def slots(cls: type, used: list[str] | None = None) -> tuple[type, list[str]]:
        names = list(getattr(cls, "__slots__", ()))
        if used is None:
            return cls, names
        if not set(used) <= set(names):
            raise RuntimeError(f"{cls.__name__} has no slots {sorted(set(used) - set(names))}")
        return cls, used
    classes = {
        "IncomingRequest": slots(types.IncomingRequest, ["method", "path_with_query", "body", "scheme", "authority"]),
        "ResponseOutparam": slots(types.ResponseOutparam, ["response", "error", "set", "exchange", "sink"]),
        "BytesSource": slots(bodies.BytesSource, ["data", "pos"]),
        "_DoneTrailers": (types._DoneTrailers, []),
    }
    made = {"Fields": (types.Fields, ["entries", "immutable"]),
            "IncomingBody": (types.IncomingBody, ["source", "streamed"]),
            "InputStream": (io.InputStream, ["source", "pos", "on_end", "streamed"]),
            "OutgoingResponse": (types.OutgoingResponse, ["status", "headers", "body", "sink"]),
            "OutgoingBody": (types.OutgoingBody, ["stream", "taken", "finished", "what"]),
            "OutputStream": (io.OutputStream, ["sink", "size", "closed", "what"]),
            "CollectSink": (bodies.CollectSink, ["chunks", "size", "limit", "what", "done"])}
    for name, (cls, names) in made.items():  # made in C: every slot, in this order
        if list(getattr(cls, "__slots__", ())) != names:
            raise RuntimeError(f"{name}'s slots are {getattr(cls, '__slots__', None)}, not the {names} of "
                               "_native_state.c")
        classes[name] = (cls, names)
    module.init_state(classes, io.CLOSED, io.READY, types.FORBIDDEN, types.MAX_BODY, io.CHUNK, io.INLINE_BYTES)
    _state["fast"] = {key: i for i, key in enumerate(module.fast_names())}


def module() -> ModuleType | None:
    """The extension (compiled and loaded once per process), or None when it cannot be."""
    return native_build.once(_state, _load, log, "wasi:http native callbacks unavailable (the ctypes ones serve)")


def available() -> bool:
    """Whether the hot functions are registered natively (switch on, :mod:`.fastcall` active,
    extension loaded)."""
    from . import fastcall  # (it imports this module)

    return enabled and fastcall.active() and module() is not None


def dtor_addresses() -> tuple[int, int]:
    """The C destructor of the shadowed resources (out of the call's table), and its no-op finalizer."""
    m = module()
    assert m is not None
    addresses = m.addresses()
    return int(addresses[1]), int(addresses[3])


def spec(ty: Any) -> Any:
    """The C module's description of WIT type ``ty`` (``("slow",)`` where it leaves it to Python)."""
    if ty is None:
        return None
    if isinstance(ty, (OwnT, BorrowT)):
        return ("own" if isinstance(ty, OwnT) else "borrow", RESOURCE_TYPE_IDS.id_for(ty.resource), ty.resource,
                ty.resource.name)
    if isinstance(ty, Prim):
        if ty.name == "string":
            return ("string",)
        return (ty.name,) if ty.name in _INTS else ("slow",)
    if isinstance(ty, ListT):
        if ty.is_bytes:
            return ("bytes",)
        if isinstance(ty.element, BorrowT):  # poll's list<borrow<pollable>>: each handle ended as read
            return ("list", spec(ty.element))
        # other handles inside lists are wasmtime-py's to take (fastcall.py does the same)
        return ("slow",) if mentions_resources(ty.element) else ("list", spec(ty.element))
    if isinstance(ty, TupleT):
        return ("slow",) if mentions_resources(ty) else ("tuple", [spec(t) for t in ty.elements])
    if isinstance(ty, OptionT):
        inner = spec(ty.payload)
        return ("slow",) if isinstance(ty.payload, OptionT) else ("option", inner)  # nested: {"some": ...}
    if isinstance(ty, ResultT):
        return ("result", spec(ty.ok), spec(ty.err))
    if isinstance(ty, VariantT):
        return ("variant", [(name, spec(t)) for name, t in ty.cases])
    return ("slow",)


def _always_slow(s: Any) -> bool:
    """Whether an argument of spec ``s`` can never be read natively (the C module's ``peek``)."""
    if s is None:
        return False
    kind = s[0]
    if kind == "slow":
        return True
    if kind in ("list", "tuple", "variant"):
        return _has_slow(s)
    if kind == "option":
        return _always_slow(s[1])
    return False


def _has_slow(s: Any) -> bool:
    if s is None:
        return False
    kind = s[0]
    if kind == "slow":
        return True
    if kind in ("list", "option"):
        return _has_slow(s[1])
    if kind == "result":
        return _has_slow(s[1]) or _has_slow(s[2])
    if kind == "tuple":
        return any(_has_slow(t) for t in s[1])
    if kind == "variant":
        return any(_has_slow(t) for _, t in s[1])
    return False


def register(fn: Any, inst: Any, name: str, add_func: Any) -> bool:
    """Define :class:`.fastcall.RawFunction` ``fn`` in linker instance ``inst`` with the native
    callback; False (nothing done) when one of its arguments is never read natively."""
    m = module()
    assert m is not None
    params = [spec(t) for t in fn.params]
    if any(_always_slow(p) for p in params):
        return False
    callback, _, finalizer, _ = m.addresses()

    def failed(ctx: Any, error: BaseException) -> str:  # recorded on the call; the trap's message
        if ctx is not None:
            fn.on_failure(ctx, error)
        return f"import {fn.where} failed: {type(error).__name__}: {error}"
    fast = _state.get("fast", {}).get((unversioned(fn.interface), fn.name), -1) if state_enabled else -1
    env = m.make_func(fn.where, params, spec(fn.result), fn.impl, fn.call, fn.lower_slow, failed, fast)
    encoded = name.encode("utf-8")
    err = add_func(ctypes.cast(inst.ptr(), ctypes.c_void_p), encoded, len(encoded), callback, env, finalizer)
    if err:
        m.free_func(env)
        from wasmtime import WasmtimeError

        raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
    return True
