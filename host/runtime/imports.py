"""Generic binding of a component's imports to one Python callback.

Every import that wasmtime's WASI p2 implementation does not provide is
bound from the component's own types, with no generated code: each imported
function becomes a host function that converts its arguments to plain values
(:mod:`trellis.host.runtime.codec`), calls the invocation's :class:`ImportHandler`
as ``handler(interface, function, args)`` and lowers the plain result back.

* ``interface`` is the import name as the component spells it
  (``"wasi:keyvalue/store@0.2.0-draft"``), ``""`` for world-level functions;
  ``function`` is the WIT function name, including resource prefixes
  (``"[static]bucket.open"``, ``"[method]bucket.get"``,
  ``"[constructor]bucket"``).
* Raising :class:`~trellis.host.runtime.errors.MissingLink` or
  :class:`~trellis.host.runtime.errors.ImportFailed` (or any exception) traps the
  guest; the invocation then fails with an ``InvocationError`` naming the
  interface and function.

Host resources: imported resource types are defined as host resources. A
handler returns ``HostResource(obj)`` where the WIT type is ``own<R>``; the
runtime stores ``obj`` in the instance's :class:`ResourceTable` under a new
``rep`` and hands the guest a handle. When the guest passes a ``borrow<R>``
or ``own<R>`` back, the handler receives ``obj`` itself. When the guest drops
its handle, the entry is removed and the handler is told with function
``"[resource-drop]R"`` and ``args == [obj]`` (a ``MissingLink`` from that
notification is ignored).

The linker is built once per component; per-call state (handler, resource
table) is found through a context variable that the invoker sets around each
call, so nested invocations on one thread are safe.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from wasmtime import StoreContext, WasmtimeError
from wasmtime import component as wc

from trellis.interfaces.envelope import MAX_BODY
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

from . import lower_plain
from .codec import CodecError, Plain, from_plain, to_plain
from .component import FunctionInfo, LoadedComponent
from .engine import RuntimeEngine
from .errors import MissingLink
from .wasmtime_patches import KEEP_TYPES, PLAIN_ARGS
from .wit import BorrowT, OwnT, ResourceRef, mentions_resources

__all__ = [
    "HostResource",
    "ImportHandler",
    "ResourceTable",
    "CallContext",
    "deny_all",
    "build_linker",
    "is_wasip2_interface",
    "WASIP2_PACKAGES",
    "CURRENT_CALL",
    "mentions_resources",
]

# Interfaces that ``Linker.add_wasip2()`` implements.
WASIP2_PACKAGES: tuple[str, ...] = (
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:random/",
    "wasi:sockets/",
)


def is_wasip2_interface(name: str) -> bool:
    return name.startswith(WASIP2_PACKAGES)


@dataclass(frozen=True)
class HostResource:
    """Return this from a handler where the WIT type is ``own<R>``."""

    obj: Any


class ImportHandler(Protocol):
    def __call__(self, interface: str, function: str, args: list[Plain]) -> Plain: ...


def deny_all(interface: str, function: str, args: list[Plain]) -> Plain:
    """The default handler: nothing is linked."""
    raise MissingLink(interface, function)


class ResourceTable:
    """Host resources handed to one instance: ``rep -> (resource, obj)``."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[ResourceRef, Any]] = {}
        self._reps = itertools.count(1)

    def add(self, ref: ResourceRef, obj: Any) -> int:
        rep = next(self._reps)
        self._entries[rep] = (ref, obj)
        return rep

    def get(self, rep: int) -> tuple[ResourceRef, Any] | None:
        return self._entries.get(rep)

    def remove(self, rep: int) -> tuple[ResourceRef, Any] | None:
        return self._entries.pop(rep, None)

    def __len__(self) -> int:
        return len(self._entries)


#: the largest body ``trellis:http/response-body.append`` builds
MAX_RESPONSE_BODY = MAX_BODY
#: the export whose calls may append a response body and read a withheld request body
HTTP_HANDLER = ("trellis:http/incoming-handler", "handle")
#: the imports with which an HTTP handler writes and reads bodies too large for one call (the host answers)
RESPONSE_BODY = "trellis:http/response-body"
REQUEST_BODY = "trellis:http/request-body"
NOT_IN_HANDLER = "response-body.append works only during incoming-handler.handle"


@dataclass
class CallContext:
    """Per-invocation state visible to host functions."""

    handler: ImportHandler
    table: ResourceTable
    failure: BaseException | None = None
    failed_import: tuple[str, str] | None = None
    notes: list[str] = field(default_factory=list)
    #: the call is an HTTP handler's (``trellis:http/incoming-handler.handle``): it may append body
    takes_body: bool = False
    #: ``trellis:http/response-body.append``'s pieces, put before the returned response's body
    body: list[bytes] = field(default_factory=list)
    body_size: int = 0
    #: a request body too large to pass whole, read in pieces (``trellis:http/request-body``)
    request_body: bytes = b""
    request_read: int = 0
    #: where the guest's stderr goes when the host defines ``wasi:cli/stderr`` (wasi:http components)
    stderr: Callable[[bytes], None] | None = None
    #: the call runs on a thread that must not wait (the worker's event loop)
    inline: bool = False
    #: ``time.monotonic()`` past which the call is out of time (host code that waits stops there)
    deadline: float | None = None
    #: a wasi:http handler's: called when a body stream moved; its deadline starts again (an idle budget)
    progress: Callable[[], None] | None = None

    def record(self, interface: str, function: str, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
            self.failed_import = (interface, function)

    def append_body(self, chunk: bytes) -> dict[str, Any]:
        """``trellis:http/response-body.append``: ``{"ok": None}`` or ``{"err": why}``."""
        if not self.takes_body:
            return {"err": NOT_IN_HANDLER}
        if self.body_size + len(chunk) > MAX_RESPONSE_BODY:
            return {"err": f"the response body would pass {MAX_RESPONSE_BODY} bytes"}
        self.body.append(chunk)
        self.body_size += len(chunk)
        return {"ok": None}

    def read_request_body(self, most: int) -> bytes:
        """``trellis:http/request-body.read``: the next piece of the withheld body, at most ``most``
        bytes and never more than one call carries; ``b""`` at the end (or when nothing was withheld)."""
        most = max(0, min(int(most), MAX_BYTES_PER_CALL))
        piece = self.request_body[self.request_read:self.request_read + most]
        self.request_read += len(piece)
        return piece


CURRENT_CALL: ContextVar[CallContext | None] = ContextVar("trellis_current_call", default=None)


class _ResourceTypeIds:
    """Process-wide ids for host resource types (``ResourceType.host(id)``)."""

    def __init__(self) -> None:
        self._ids: dict[ResourceRef, int] = {}
        self._lock = threading.Lock()

    def id_for(self, ref: ResourceRef) -> int:
        with self._lock:
            return self._ids.setdefault(ref, len(self._ids) + 1)


RESOURCE_TYPE_IDS = _ResourceTypeIds()


class _ResourceBridge:
    """:class:`~trellis.host.runtime.codec.ResourceCodec` for one host-function call."""

    def __init__(self, store: StoreContext, table: ResourceTable) -> None:
        self.store = store
        self.table = table
        self.borrows: list[wc.ResourceAny] = []

    def lift(self, ty: OwnT | BorrowT, value: Any, path: str) -> Any:
        if not isinstance(value, wc.ResourceAny):
            raise CodecError(path, f"expected a resource handle, got {type(value).__name__}")
        try:
            # For a borrow, to_host() also ends the borrow: wasmtime fails the
            # call if a borrow is still open when the host function returns.
            host = value.to_host(self.store)
        except WasmtimeError:
            if isinstance(ty, BorrowT):
                self.borrows.append(value)  # still has to be released
            raise CodecError(path, "guest-defined resources cannot be passed to the host") from None
        entry = self.table.get(host.rep) if isinstance(ty, BorrowT) else self.table.remove(host.rep)
        if entry is None or host.type != RESOURCE_TYPE_IDS.id_for(ty.resource):
            raise CodecError(path, f"unknown {ty.resource.name} handle (rep {host.rep})")
        return entry[1]

    def lower(self, ty: OwnT | BorrowT, value: Any, path: str) -> Any:
        if not isinstance(ty, OwnT):
            raise CodecError(path, "a host function cannot return a borrow")
        if not isinstance(value, HostResource):
            raise CodecError(path, f"expected HostResource(obj) for {ty.resource.name}, got {type(value).__name__}")
        rep = self.table.add(ty.resource, value.obj)
        return wc.ResourceHost.own(rep, RESOURCE_TYPE_IDS.id_for(ty.resource))

    def end(self) -> None:
        borrows, self.borrows = self.borrows, []
        for b in borrows:
            b.drop(self.store)


def _host_function(fn: FunctionInfo, keep_types: bool = False) -> Callable[..., Any]:
    """``keep_types``: the signature's resources are all host-defined (the ``shadow`` of
    :func:`build_linker`), so its types are the same on every call, resources or not."""
    interface = fn.interface or ""
    name = fn.name
    params = [t for _, t in fn.params]
    result = fn.result
    with_resources = any(mentions_resources(t) for t in params) or mentions_resources(result)
    where = f"{interface}.{name}" if interface else name

    def host_function(store: StoreContext, *args: Any) -> Any:
        ctx = CURRENT_CALL.get()
        if ctx is None:
            raise WasmtimeError(f"import {where} called outside an invocation")
        bridge = _ResourceBridge(store, ctx.table) if with_resources else None
        try:
            try:
                plain = [
                    to_plain(t, a, resources=bridge, path=f"{where} args[{i}]")
                    for i, (t, a) in enumerate(zip(params, args, strict=False))
                ]
                out = ctx.handler(interface, name, plain)
                value = None if result is None else from_plain(
                    result, out, resources=bridge, path=f"{where} result"
                )
            finally:
                if bridge is not None:
                    bridge.end()
        except BaseException as e:  # noqa: BLE001 - every failure must trap the guest
            ctx.record(interface, name, e)
            raise WasmtimeError(f"import {where} failed: {type(e).__name__}: {e}") from None
        return value

    def host_function_plain(store: StoreContext, plain: list[Any], results: Any = None) -> Any:
        """The same, its arguments already in their plain form (``wasmtime_patches`` 8); given
        ``results`` (the result's slot), the answer is written there straight from its plain
        form when it can be (``lower_plain.py``: ``WRITTEN``), else converted as above."""
        ctx = CURRENT_CALL.get()
        if ctx is None:
            raise WasmtimeError(f"import {where} called outside an invocation")
        try:
            out = ctx.handler(interface, name, plain)
            if result is None:
                return None
            if results is not None and lower_plain.lower_root(result, out, results):
                return lower_plain.WRITTEN
            value = from_plain(result, out, path=f"{where} result")
        except BaseException as e:  # noqa: BLE001 - every failure must trap the guest
            ctx.record(interface, name, e)
            raise WasmtimeError(f"import {where} failed: {type(e).__name__}: {e}") from None
        return value

    if keep_types or not with_resources:  # its types are the same on every call: read them once
        setattr(host_function, KEEP_TYPES, True)
    if not with_resources:
        setattr(host_function, PLAIN_ARGS, host_function_plain)
    return host_function


def _resource_dtor(ref: ResourceRef) -> Callable[[StoreContext, int], None]:
    function = f"[resource-drop]{ref.name}"

    def dtor(store: StoreContext, rep: int) -> None:
        ctx = CURRENT_CALL.get()
        if ctx is None:
            return
        entry = ctx.table.remove(rep)
        if entry is None:
            return
        try:
            ctx.handler(ref.interface, function, [entry[1]])
        except MissingLink:
            pass
        except BaseException as e:  # noqa: BLE001 (every failure must trap the guest)
            ctx.record(ref.interface, function, e)
            raise WasmtimeError(f"import {ref.interface}.{function} failed: {e}") from None

    return dtor


def build_linker(engine: RuntimeEngine, loaded: LoadedComponent,
                 shadow: frozenset[str] = frozenset(),
                 direct: Callable[[str, FunctionInfo], Any] | None = None, wasi: bool = True) -> wc.Linker:
    """A linker with WASI p2 (unless ``wasi`` is off: a component that imports none of it) plus
    generic bindings for every other import.

    ``shadow`` names WASI p2 imports bound generically too, over wasmtime's own (the
    ``wasi:io`` a ``wasi:http`` component's bodies use: :mod:`trellis.host.runtime.wasi_http`);
    ``direct(interface, fn)`` may give the host function of a shadowed import itself (or an
    object that adds itself: ``add_to(linker_instance, name)``), and ``direct.add_resource``,
    when set, defines a shadowed interface's resources (``add_resource(inst, name, type_id)``).
    Built once per component and reused for every store.
    """
    linker = wc.Linker(engine.engine)
    if wasi:
        linker.add_wasip2()
    if shadow:
        linker.allow_shadowing = True
    imports = loaded.imports
    add_resource = getattr(direct, "add_resource", None) if shadow else None
    with linker.root() as root:
        for iface in imports.interfaces.values():
            if is_wasip2_interface(iface.name) and iface.name not in shadow:
                continue
            with root.add_instance(iface.name) as inst:
                keep = iface.name in shadow
                for res in iface.resources:
                    ref = iface.canonical.get(res, ResourceRef(iface.name, res))
                    if keep and add_resource is not None:  # the host's own (wasi_http/fastcall.py)
                        add_resource(inst, res, RESOURCE_TYPE_IDS.id_for(ref))
                    else:
                        inst.add_resource(res, wc.ResourceType.host(RESOURCE_TYPE_IDS.id_for(ref)), _resource_dtor(ref))
                for fn in iface.functions.values():
                    own = direct(iface.name, fn) if keep and direct is not None else None
                    add_to = getattr(own, "add_to", None)
                    if add_to is not None:  # registered with the C API by itself (wasi_http/fastcall.py)
                        add_to(inst, fn.name)
                    else:
                        inst.add_func(fn.name, own or _host_function(fn, keep))
        for res in imports.resources:
            ref = ResourceRef("", res)
            root.add_resource(res, wc.ResourceType.host(RESOURCE_TYPE_IDS.id_for(ref)), _resource_dtor(ref))
        for fn in imports.functions.values():
            root.add_func(fn.name, _host_function(fn))
    return linker

