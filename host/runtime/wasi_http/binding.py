"""Host functions for the ``wasi:io`` / ``wasi:http/types`` functions the host answers itself.

The generic binding (:func:`trellis.host.runtime.imports._host_function`) turns every argument into
a plain value and hands the call to the invocation's handler. For the functions of
:data:`.io.IO` and :data:`.types.HTTP`, which need nothing from the handler, this binds the
implementation straight to the import: resource arguments are looked up in the instance's
table by rep (no codec), other arguments pass as wasmtime-py gives them (numbers, strings)
or through the codec (lists, variants). A request makes a dozen or more such calls, so
this is most of what the host spends on a wasi:http request (docs/runtime.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from wasmtime import StoreContext, WasmtimeError

from trellis.interfaces.resources import unversioned

from ..codec import CodecError, from_plain, to_plain
from ..component import FunctionInfo
from ..imports import CURRENT_CALL, RESOURCE_TYPE_IDS, ResourceTable, _ResourceBridge
from ..wasmtime_patches import KEEP_TYPES
from ..wit import BorrowT, OwnT, Prim, WitType, mentions_resources
from . import fastcall
from .io import IO
from .types import HTTP

__all__ = ["DIRECT", "direct_function"]

ArgConv = Callable[[StoreContext, ResourceTable, Any], Any]


def _resource_arg(ty: OwnT | BorrowT, where: str) -> ArgConv:
    type_id = RESOURCE_TYPE_IDS.id_for(ty.resource)
    borrow = isinstance(ty, BorrowT)
    name = ty.resource.name

    def conv(store: StoreContext, table: ResourceTable, value: Any) -> Any:
        host = value.to_host(store)  # for a borrow, this also ends it
        rep = host.rep
        entry = table.get(rep) if borrow else table.remove(rep)
        if entry is None or host.type != type_id:
            raise CodecError(where, f"unknown {name} handle (rep {rep})")
        return entry[1]
    return conv


def _plain_arg(ty: Any, where: str) -> ArgConv | None:
    if isinstance(ty, Prim):
        return None  # numbers, strings, bools: as wasmtime-py gives them
    if mentions_resources(ty):  # list<borrow<pollable>> (poll)
        def with_resources(store: StoreContext, table: ResourceTable, value: Any) -> Any:
            bridge = _ResourceBridge(store, table)
            try:
                return to_plain(ty, value, resources=bridge, path=where)
            finally:
                bridge.end()
        return with_resources

    def plain(store: StoreContext, table: ResourceTable, value: Any) -> Any:
        return to_plain(ty, value, path=where)
    return plain


def direct_function(interface: str, fn: FunctionInfo) -> Callable[..., Any] | fastcall.RawFunction | None:
    """A host function running the host's own implementation of ``interface.fn`` (a
    :class:`.fastcall.RawFunction` when that path is on), or None when it has none (the
    generic binding then passes the call to the invocation's handler)."""
    key = (unversioned(interface), fn.name)
    impl = IO.get(key) or HTTP.get(key)
    if impl is None:
        return None
    where = f"{interface}.{fn.name}"
    if fastcall.active():  # registered with wasmtime's C API directly (fastcall.py)
        name = fn.name
        return fastcall.RawFunction(interface, name, [t for _, t in fn.params], fn.result, impl,
                                    lambda ctx, e: ctx.record(interface, name, e))
    convs: list[ArgConv | None] = []
    for i, (_, ty) in enumerate(fn.params):
        path = f"{where} args[{i}]"
        convs.append(_resource_arg(ty, path) if isinstance(ty, (OwnT, BorrowT)) else _plain_arg(ty, path))
    result = fn.result
    result_resources = result is not None and mentions_resources(result)
    result_ty = cast(WitType, result)  # (used only when there is one)
    plain_result = result is not None and not isinstance(result, Prim)
    run = impl

    def host_function(store: StoreContext, *args: Any) -> Any:
        ctx = CURRENT_CALL.get()
        if ctx is None:
            raise WasmtimeError(f"import {where} called outside an invocation")
        table = ctx.table
        try:
            plain = [a if c is None else c(store, table, a) for c, a in zip(convs, args, strict=False)]
            out = run(plain)
            if result_resources:
                return from_plain(result_ty, out, resources=_ResourceBridge(store, table), path=f"{where} result")
            if plain_result:
                return from_plain(result_ty, out, path=f"{where} result")
            return out
        except BaseException as e:  # noqa: BLE001 - every failure must trap the guest
            ctx.record(interface, fn.name, e)
            raise WasmtimeError(f"import {where} failed: {type(e).__name__}: {e}") from None

    setattr(host_function, KEEP_TYPES, True)  # its resources are the host's: same types on every call
    return host_function


def _add_resource(inst: Any, name: str, type_id: int) -> None:
    fastcall.add_resource(inst, name, type_id)


class _Direct:
    """:func:`direct_function`, with the resources' binding when :mod:`.fastcall` is on."""

    def __call__(self, interface: str, fn: FunctionInfo) -> Any:
        return direct_function(interface, fn)

    @property
    def add_resource(self) -> Callable[[Any, str, int], None] | None:
        return _add_resource if fastcall.active() else None


#: what :func:`trellis.host.runtime.imports.build_linker` takes as ``direct`` for a wasi:http component
DIRECT = _Direct()
