"""``wasi:http/types`` and ``wasi:http/outgoing-handler`` in the host, over plain values.

The resources are Python objects kept in the instance's resource table
(:class:`trellis.host.runtime.imports.ResourceTable`, keyed by rep, as wasmtime's
``wasi-http`` keeps its own); the functions below get them as arguments and return
``HostResource(obj)`` for an ``own<R>``. Bodies are :mod:`.io` streams over bytes: the
HTTP front hands a request over whole and takes the response whole (the same wire as
``trellis:http``), and the http-client provider does the same for outgoing requests.

Error codes are plain variants named as the spec spells them in lower case
(``{"connection-refused": None}``); :class:`~.dispatch.WasiHttpHandler` renames them to
the component's own case names (``DNS-timeout``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from trellis.interfaces.envelope import MAX_BODY
from trellis.kit.bodies import BodySink, BodySource, BytesSource, CollectSink, Exchange

from ..imports import HostResource
from .io import READY, InputStream, OutputStream, Pollable

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
#: headers a component may not set (hop-by-hop: the front and the client own them)
FORBIDDEN = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
                       "http2-settings"})
METHODS = ("get", "head", "post", "put", "delete", "connect", "options", "trace", "patch")


def method_variant(name: str) -> Any:
    low = name.lower()
    return {low: None} if low in METHODS and name.isupper() else {"other": name}


def method_name(plain: Any) -> str:
    case, payload = next(iter(plain.items())) if isinstance(plain, dict) else (plain, None)
    return str(payload) if case == "other" else str(case).upper()


class Fields:
    """``fields`` (also ``headers`` and ``trailers``): ordered (name, value) pairs."""

    __slots__ = ("entries", "immutable")

    def __init__(self, entries: list[tuple[str, bytes]] | None = None, immutable: bool = False) -> None:
        self.entries = entries if entries is not None else []
        self.immutable = immutable

    def view(self) -> Fields:
        """An immutable handle on the same entries (``incoming-request.headers`` and such)."""
        return Fields(self.entries, True)


def _check(name: str, value: bytes | None = None) -> dict[str, Any] | None:
    if not _TOKEN.match(name.encode("utf-8", "replace")):
        return {"err": {"invalid-syntax": None}}
    if name.lower() in FORBIDDEN:
        return {"err": {"forbidden": None}}
    if value is not None and _BAD_VALUE.search(value):
        return {"err": {"invalid-syntax": None}}
    return None


def _from_list(args: list[Any]) -> Any:
    entries = []
    for name, value in args[0]:
        bad = _check(name, bytes(value))
        if bad is not None:
            return bad
        entries.append((name.lower(), bytes(value)))
    return {"ok": HostResource(Fields(entries))}


def _set(args: list[Any]) -> Any:
    f, name, values = args
    if f.immutable:
        return {"err": {"immutable": None}}
    for v in values:
        bad = _check(name, bytes(v))
        if bad is not None:
            return bad
    if (bad := _check(name)) is not None:
        return bad
    low = name.lower()
    f.entries[:] = [(k, v) for k, v in f.entries if k != low] + [(low, bytes(v)) for v in values]
    return {"ok": None}


def _append(args: list[Any]) -> Any:
    f, name, value = args
    if f.immutable:
        return {"err": {"immutable": None}}
    if (bad := _check(name, bytes(value))) is not None:
        return bad
    f.entries.append((name.lower(), bytes(value)))
    return {"ok": None}


def _delete(args: list[Any]) -> Any:
    f, name = args
    if f.immutable:
        return {"err": {"immutable": None}}
    low = name.lower()
    f.entries[:] = [(k, v) for k, v in f.entries if k != low]
    return {"ok": None}


class IncomingBody:
    __slots__ = ("source", "streamed")

    def __init__(self, source: BodySource) -> None:
        self.source = source
        self.streamed = False


class IncomingRequest:
    """What the HTTP front received: the ``trellis:http`` request record, as resources."""

    __slots__ = ("method", "path_with_query", "scheme", "authority", "headers", "body")

    def __init__(self, request: dict[str, Any], body: BodySource | None = None) -> None:
        self.method = method_variant(str(request.get("method") or "GET"))
        self.path_with_query = str(request.get("path-with-query") or "/")
        entries = [(str(k).lower(), bytes(v)) for k, v in request.get("headers") or ()]
        self.authority = next((v.decode("latin-1") for k, v in entries if k == "host"), None)
        self.scheme = {"HTTP": None}  # the WIT spells the cases HTTP, HTTPS, other
        self.headers = Fields(entries, True)
        self.body: IncomingBody | None = IncomingBody(body if body is not None
                                                      else BytesSource(request.get("body") or b""))


def _consume(req: Any) -> Any:
    body, req.body = req.body, None
    return {"err": None} if body is None else {"ok": HostResource(body)}


def _stream(body: IncomingBody) -> Any:
    if body.streamed:
        return {"err": None}
    body.streamed = True
    return {"ok": HostResource(InputStream(body.source))}


class OutgoingBody:
    __slots__ = ("stream", "taken", "finished", "what")

    def __init__(self, what: str, limit: int = MAX_BODY) -> None:
        self.stream = OutputStream(CollectSink(limit, what), what)
        self.taken = False
        self.finished = False
        self.what = what


def _write(body: OutgoingBody) -> Any:
    if body.taken:
        return {"err": None}
    body.taken = True
    return {"ok": HostResource(body.stream)}


def _finish_outgoing(args: list[Any]) -> Any:
    body: OutgoingBody = args[0]
    body.finished = True
    body.stream.closed = True
    body.stream.sink.finish()
    return {"ok": None}


class OutgoingResponse:
    __slots__ = ("status", "headers", "body", "sink")

    def __init__(self, headers: Fields) -> None:
        self.status = 200
        headers.immutable = True
        self.headers = headers
        self.body: OutgoingBody | None = None
        #: where the body goes once the head went out (a streamed response), else collected
        self.sink: BodySink | None = None


def _take_body(r: OutgoingResponse | OutgoingRequest, what: str) -> Any:
    """``body()`` of an outgoing response or request: its body once, ``err`` after that."""
    if r.body is not None:
        return {"err": None}
    r.body = OutgoingBody(what)
    sink = getattr(r, "sink", None)
    if sink is not None:
        r.body.stream.sink = sink
    return {"ok": HostResource(r.body)}


def _set_status(args: list[Any]) -> Any:
    r, code = args
    if not 100 <= int(code) <= 599:
        return {"err": None}
    r.status = int(code)
    return {"ok": None}


class ResponseOutparam:
    """Where the handler's response lands: ``response`` (an :class:`OutgoingResponse`), or
    ``error`` (a plain ``error-code``), or neither (the handler never answered).

    With an ``exchange`` (a streamed request, :class:`trellis.kit.bodies.Exchange`), setting a
    response sends its head at once, and its body goes to the exchange's sink (``sink``) as the
    guest writes it."""

    __slots__ = ("response", "error", "set", "exchange", "sink")

    def __init__(self, exchange: Exchange | None = None) -> None:
        self.response: OutgoingResponse | None = None
        self.error: Any = None
        self.set = False
        self.exchange = exchange
        self.sink: BodySink | None = None


def _outparam_set(args: list[Any]) -> None:
    param: ResponseOutparam = args[0]
    result = args[1]
    if param.set:
        raise RuntimeError("response-outparam.set called twice")
    param.set = True
    if "ok" not in result:
        param.error = result["err"]
        return
    response: OutgoingResponse = result["ok"]
    param.response = response
    if param.exchange is None:
        return
    sink = param.sink = param.exchange.start(response.status, list(response.headers.entries))
    response.sink = sink
    body = response.body
    if body is not None:  # taken (maybe written, maybe finished) before the head went out
        body.stream.attach(sink)
        if body.finished:
            sink.finish()


class OutgoingRequest:
    __slots__ = ("method", "path_with_query", "scheme", "authority", "headers", "body")

    def __init__(self, headers: Fields) -> None:
        self.method: Any = {"get": None}
        self.path_with_query: str | None = None
        self.scheme: Any = None
        self.authority: str | None = None
        headers.immutable = True
        self.headers = headers
        self.body: OutgoingBody | None = None


def _setter(attr: str) -> Callable[[list[Any]], Any]:
    def setter(args: list[Any]) -> Any:
        setattr(args[0], attr, args[1])
        return {"ok": None}
    return setter


class RequestOptions:
    __slots__ = ("connect_timeout", "first_byte_timeout", "between_bytes_timeout")

    def __init__(self) -> None:
        self.connect_timeout: int | None = None
        self.first_byte_timeout: int | None = None
        self.between_bytes_timeout: int | None = None


class IncomingResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, response: dict[str, Any]) -> None:
        self.status = int(response.get("status") or 0)
        self.headers = Fields([(str(k).lower(), bytes(v)) for k, v in response.get("headers") or ()], True)
        body = response.get("body")
        # bytes, or a body still arriving (outgoing.py: the provider streams it)
        source: BodySource = body if hasattr(body, "wait") else BytesSource(body or b"")  # type: ignore[assignment]  # checked by its method
        self.body: IncomingBody | None = IncomingBody(source)


class FutureIncomingResponse:
    """An outgoing request's response, as its :class:`~.outgoing.OutgoingCall` gets it: sent whole
    when the guest waits with the body finished, or streamed from when the body grew large."""

    __slots__ = ("call", "taken")

    def __init__(self, call: Any) -> None:
        self.call = call
        self.taken = False

    def ready(self) -> bool:
        return bool(self.call.ready())

    def resolve(self) -> None:
        self.call.wait()

    def get(self) -> Any:
        if self.taken:
            return {"err": None}
        if not self.ready():
            return None
        self.taken = True
        result = self.call.result
        if "ok" in result:
            return {"ok": {"ok": HostResource(IncomingResponse(result["ok"]))}}
        return {"ok": {"err": result["err"]}}


def _subscribe_future(f: FutureIncomingResponse) -> HostResource:
    return HostResource(Pollable(f.ready, f.resolve))


_TRAILERS_DONE = {"ok": {"ok": None}}

Impl = Callable[[list[Any]], Any]

HTTP: dict[tuple[str, str], Impl] = {
    ("wasi:http/types", "http-error-code"): lambda a: getattr(a[0], "http_code", None),
    ("wasi:http/types", "[constructor]fields"): lambda a: HostResource(Fields()),
    ("wasi:http/types", "[static]fields.from-list"): _from_list,
    ("wasi:http/types", "[method]fields.get"): lambda a: [v for k, v in a[0].entries if k == a[1].lower()],
    ("wasi:http/types", "[method]fields.has"): lambda a: any(k == a[1].lower() for k, _ in a[0].entries),
    ("wasi:http/types", "[method]fields.set"): _set,
    ("wasi:http/types", "[method]fields.delete"): _delete,
    ("wasi:http/types", "[method]fields.append"): _append,
    ("wasi:http/types", "[method]fields.entries"): lambda a: [[k, v] for k, v in a[0].entries],
    ("wasi:http/types", "[method]fields.clone"): lambda a: HostResource(Fields(list(a[0].entries))),
    ("wasi:http/types", "[method]incoming-request.method"): lambda a: a[0].method,
    ("wasi:http/types", "[method]incoming-request.path-with-query"): lambda a: a[0].path_with_query,
    ("wasi:http/types", "[method]incoming-request.scheme"): lambda a: a[0].scheme,
    ("wasi:http/types", "[method]incoming-request.authority"): lambda a: a[0].authority,
    ("wasi:http/types", "[method]incoming-request.headers"): lambda a: HostResource(a[0].headers.view()),
    ("wasi:http/types", "[method]incoming-request.consume"): lambda a: _consume(a[0]),
    ("wasi:http/types", "[method]incoming-body.stream"): lambda a: _stream(a[0]),
    ("wasi:http/types", "[static]incoming-body.finish"): lambda a: HostResource(_DoneTrailers()),
    ("wasi:http/types", "[method]future-trailers.subscribe"): lambda a: HostResource(READY),
    ("wasi:http/types", "[method]future-trailers.get"): lambda a: _TRAILERS_DONE,
    ("wasi:http/types", "[constructor]outgoing-response"): lambda a: HostResource(OutgoingResponse(a[0])),
    ("wasi:http/types", "[method]outgoing-response.status-code"): lambda a: a[0].status,
    ("wasi:http/types", "[method]outgoing-response.set-status-code"): _set_status,
    ("wasi:http/types", "[method]outgoing-response.headers"): lambda a: HostResource(a[0].headers.view()),
    ("wasi:http/types", "[method]outgoing-response.body"): lambda a: _take_body(a[0], "response body"),
    ("wasi:http/types", "[method]outgoing-body.write"): lambda a: _write(a[0]),
    ("wasi:http/types", "[static]outgoing-body.finish"): _finish_outgoing,
    ("wasi:http/types", "[static]response-outparam.set"): _outparam_set,
    ("wasi:http/types", "[constructor]outgoing-request"): lambda a: HostResource(OutgoingRequest(a[0])),
    ("wasi:http/types", "[method]outgoing-request.body"): lambda a: _take_body(a[0], "request body"),
    ("wasi:http/types", "[method]outgoing-request.method"): lambda a: a[0].method,
    ("wasi:http/types", "[method]outgoing-request.set-method"): _setter("method"),
    ("wasi:http/types", "[method]outgoing-request.path-with-query"): lambda a: a[0].path_with_query,
    ("wasi:http/types", "[method]outgoing-request.set-path-with-query"): _setter("path_with_query"),
    ("wasi:http/types", "[method]outgoing-request.scheme"): lambda a: a[0].scheme,
    ("wasi:http/types", "[method]outgoing-request.set-scheme"): _setter("scheme"),
    ("wasi:http/types", "[method]outgoing-request.authority"): lambda a: a[0].authority,
    ("wasi:http/types", "[method]outgoing-request.set-authority"): _setter("authority"),
    ("wasi:http/types", "[method]outgoing-request.headers"): lambda a: HostResource(a[0].headers.view()),
    ("wasi:http/types", "[constructor]request-options"): lambda a: HostResource(RequestOptions()),
    ("wasi:http/types", "[method]request-options.connect-timeout"): lambda a: a[0].connect_timeout,
    ("wasi:http/types", "[method]request-options.set-connect-timeout"): _setter("connect_timeout"),
    ("wasi:http/types", "[method]request-options.first-byte-timeout"): lambda a: a[0].first_byte_timeout,
    ("wasi:http/types", "[method]request-options.set-first-byte-timeout"): _setter("first_byte_timeout"),
    ("wasi:http/types", "[method]request-options.between-bytes-timeout"): lambda a: a[0].between_bytes_timeout,
    ("wasi:http/types", "[method]request-options.set-between-bytes-timeout"): _setter("between_bytes_timeout"),
    ("wasi:http/types", "[method]incoming-response.status"): lambda a: a[0].status,
    ("wasi:http/types", "[method]incoming-response.headers"): lambda a: HostResource(a[0].headers.view()),
    ("wasi:http/types", "[method]incoming-response.consume"): lambda a: _consume(a[0]),
    ("wasi:http/types", "[method]future-incoming-response.subscribe"): lambda a: _subscribe_future(a[0]),
    ("wasi:http/types", "[method]future-incoming-response.get"): lambda a: a[0].get(),
}


class _DoneTrailers:
    """``future-trailers`` of a body that had none (the front passes no trailers)."""
