"""One HTTP request through a ``wasi:http`` component's ``incoming-handler.handle``.

The HTTP front sends every component the same request record and takes the same
response record back (``trellis:http/types``: method, path-with-query, headers, body).
For a component that exports ``wasi:http/incoming-handler@0.2.x`` instead, the
invoker (:meth:`trellis.host.runtime.Invoker.invoke`, called with the ``trellis:http`` address)
turns the record into an ``incoming-request`` and a ``response-outparam``
(:class:`WasiHttpExport`), calls ``handle(request, response-out)`` and reads what the
guest put in the outparam, and the body it wrote, back into a response record.

A trap, or a handler that returns without setting the outparam (or sets an
``error-code``), is answered as a ``500`` with a one-line body; the failure is logged
with the invocation's own message. A timeout stays a failure (the front answers 504).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from contextvars import ContextVar
from typing import Any

from trellis.interfaces.resources import unversioned
from trellis.kit.bodies import Exchange

from ..call import RawArg
from ..component import FunctionInfo, LoadedComponent
from ..errors import ErrorKind, InvocationError
from ..imports import CURRENT_CALL, RESOURCE_TYPE_IDS, HostResource, ImportHandler, _ResourceBridge
from ..producers import one_request_per_instance
from ..settings import ReusePolicy
from ..wit import OwnT
from . import native
from .dispatch import OUTGOING, WasiHttpHandler, _error_code_names, find_handler, shadowed
from .types import IncomingRequest, ResponseOutparam

__all__ = ["EXCHANGE", "WasiHttpExport", "TRELLIS_HANDLE", "as_response", "claim_exchange", "end_stream"]

log = logging.getLogger("trellis.host.runtime.wasi_http")

#: the streamed request (its body as it arrives, its response as the guest writes it) the call
#: being made in this context serves, set by whoever hands one over (the worker's HTTP front);
#: claimed once, by the first wasi:http call not on the event loop (an inline call is buffered)
EXCHANGE: ContextVar[Exchange | None] = ContextVar("trellis_wasi_http_exchange", default=None)

#: the address the HTTP front calls (and a wasi:http component answers)
TRELLIS_HANDLE = frozenset({"trellis:http/incoming-handler.handle", "trellis:http/incoming-handler@0.1.0.handle",
                            "trellis:http/incoming-handler#handle"})
#: failures answered with a 500 response (the guest's fault); the rest stay failures
AS_500 = frozenset({ErrorKind.TRAP, ErrorKind.IMPORT_FAILED, ErrorKind.MISSING_LINK, ErrorKind.OUT_OF_MEMORY,
                    ErrorKind.STACK_OVERFLOW, ErrorKind.OUT_OF_FUEL, ErrorKind.BAD_RESULT, ErrorKind.TOO_LARGE})


def _stderr_sink(data: bytes) -> None:
    ctx = CURRENT_CALL.get()
    if ctx is not None and ctx.stderr is not None:
        ctx.stderr(data)


def _inherited_stderr(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.flush()


def _inherited_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


class WasiHttpExport:
    """What the invoker needs to serve a wasi:http component, read once per component."""

    def __init__(self, loaded: LoadedComponent, inherit_stderr: bool = False, inherit_stdout: bool = False) -> None:
        fn = find_handler(loaded)
        if fn is None:
            raise ValueError("the component exports no wasi:http/incoming-handler@0.2")
        self.function: FunctionInfo = fn
        self.shadow = shadowed(loaded)
        self.codes = _error_code_names(loaded)
        self.outgoing = next((n for n in loaded.imports.interfaces if unversioned(n) == OUTGOING), None)
        (_, req_ty), (_, out_ty) = fn.params
        assert isinstance(req_ty, OwnT) and isinstance(out_ty, OwnT)
        self.request_type: OwnT = req_ty
        self.outparam_type: OwnT = out_ty
        self.stderr = _inherited_stderr if inherit_stderr else _stderr_sink
        self.stdout = _inherited_stdout if inherit_stdout else None  # else discarded, as WasiGrants says
        self.type_ids = (RESOURCE_TYPE_IDS.id_for(req_ty.resource), RESOURCE_TYPE_IDS.id_for(out_ty.resource))
        module = native.module() if native.available() else None
        self.own_into: Any = module.own_into if module is not None else None
        #: why its instances serve one request each (a toolchain whose guest cannot answer twice), or None
        self.fresh_only = one_request_per_instance(loaded.tools)
        self.digest = loaded.digest

    def reuse_policy(self, reuse: ReusePolicy) -> ReusePolicy:
        """``reuse``, or one request per instance when the guest cannot answer more (logged once)."""
        if self.fresh_only is None or reuse.max_invocations == 1:
            return reuse
        log.warning("wasi:http component %s: every request gets a fresh instance (reuse of %d asked): %s",
                    self.digest[:19], reuse.max_invocations, self.fresh_only)
        return dataclasses.replace(reuse, max_invocations=1)

    def handler(self, outer: ImportHandler) -> WasiHttpHandler:
        return WasiHttpHandler(outer, self.shadow, self.codes, self.stderr, self.outgoing, self.stdout)

    def lower(self, table: Any, request: Any, exchange: Exchange | None = None) -> tuple[list[Any], ResponseOutparam]:
        """The ``handle`` arguments for the plain ``request`` record, and the outparam to read.
        With an ``exchange``, the body is read from it and the response streamed to it."""
        if not isinstance(request, dict):
            raise InvocationError(ErrorKind.BAD_ARGUMENT, "expected a trellis:http request record")
        out = ResponseOutparam(exchange)
        incoming = IncomingRequest(request, exchange.body if exchange is not None else None)
        if self.own_into is not None:  # the handles made in C (native.py), no wasmtime-py objects
            req_ty, out_ty = self.request_type.resource, self.outparam_type.resource
            return [_HostOwn(self.own_into, table.add(req_ty, incoming), self.type_ids[0]),
                    _HostOwn(self.own_into, table.add(out_ty, out), self.type_ids[1])], out
        bridge = _ResourceBridge(None, table)  # type: ignore[arg-type]  # lowering needs no store
        args = [bridge.lower(self.request_type, HostResource(incoming), "args[0]"),
                bridge.lower(self.outparam_type, HostResource(out), "args[1]")]
        return args, out


class _HostOwn(RawArg):
    """An ``own<R>`` argument of the host's (rep, type id), written into its slot in C."""

    __slots__ = ("own_into", "rep", "type_id")

    def __init__(self, own_into: Any, rep: int, type_id: int) -> None:
        self.own_into, self.rep, self.type_id = own_into, rep, type_id

    def lower_into(self, context: int, slot: int) -> None:
        self.own_into(context, slot, self.rep, self.type_id)


def claim_exchange() -> Exchange | None:
    """The streamed request the current call serves (:data:`EXCHANGE`), once."""
    exchange = EXCHANGE.get()
    return exchange if exchange is not None and exchange.claim() else None


def end_stream(out: ResponseOutparam, failure: BaseException | None, where: str) -> None:
    """After the handler: a streamed response's body ends (complete, or broken by a failure:
    the client sees the connection close, never a complete body)."""
    sink = out.sink
    if sink is None:
        return
    if failure is None:
        sink.finish()
        return
    why = f"[{failure.kind.value}] {failure.message}" if isinstance(failure, InvocationError) else repr(failure)
    log.warning("%s: failed after the response head was sent; the connection is closed: %s", where, why)
    sink.abort(why)


def as_response(out: ResponseOutparam, failure: InvocationError | None, where: str) -> dict[str, Any]:
    """The response record for what the guest left in ``out`` (and how the call ended). A streamed
    response (sent already) is the record of its head, with no body."""
    if out.sink is not None and out.response is not None:
        r = out.response
        return {"status": r.status, "headers": [[k, v] for k, v in r.headers.entries], "body": b""}
    if failure is not None:
        log.warning("%s: answered 500: [%s] %s", where, failure.kind.value, failure.message)
        return _error(f"the component failed ({failure.kind.value})")
    if out.response is None:
        if out.set:
            return _error(f"the component answered with an error: {_code_text(out.error)}")
        log.warning("%s: answered 500: the handler returned without setting its response-outparam", where)
        return _error("the component did not answer (response-outparam not set)")
    r = out.response
    body = r.body.stream.body() if r.body is not None else b""
    return {"status": r.status, "headers": [[k, v] for k, v in r.headers.entries], "body": body}


def _error(text: str) -> dict[str, Any]:
    return {"status": 500, "headers": [["content-type", b"text/plain; charset=utf-8"]],
            "body": (text + "\n").encode()}


def _code_text(code: Any) -> str:
    if isinstance(code, dict) and code:
        case, payload = next(iter(code.items()))
        return str(case) if payload is None else f"{case}({payload})"
    return str(code)
