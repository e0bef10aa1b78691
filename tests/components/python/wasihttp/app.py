"""An unmodified `wasi:http/proxy@0.2.0` component, written as one would for `wasmtime serve`.

Routes (the tests' contract):

* ``GET /hello?...``: 200, ``text/plain``, the body ``METHOD PATH?QUERY x-test=VALUE``;
  echoes the ``x-test`` request header as ``x-echo`` (every value, in order).
* ``POST /echo``: streams the request body back (same ``content-type``), any size;
  ``x-body-bytes`` says how many bytes it read.
* ``GET /big?n=N``: N bytes of a repeating pattern, written in pieces as the stream takes
  them (``check-write``, ``subscribe``), never held whole: any size.
* ``GET /status/NNN``: answers with status NNN.
* ``GET /trap``: raises (a trap); ``GET /drop``: returns without setting the response.
* ``GET /error?case=dns|internal``: sets the response to an ``error-code`` (``DNS-error`` with
  its record payload, ``internal-error("boom")``).
* ``GET|POST /fetch?url=http://HOST:PORT/PATH``: calls that URL through
  ``wasi:http/outgoing-handler`` (the request body forwarded) and answers with its status,
  ``x-upstream-*`` headers and body; an ``error-code`` becomes 502 with the case's name.
* ``GET /sleep?ms=N``: waits N ms on ``wasi:clocks/monotonic-clock`` (a pollable), then 200.
* ``GET /log``: logs through ``wasi:logging`` and answers 200.
* ``POST /sha256``: reads the request body as it streams in (1 MiB at most per read) and
  answers ``HEXDIGEST BYTES`` (sha-256), holding no more than one piece.
* ``POST /pieces``: sets its response, writes ``first\n`` (``blocking-write-and-flush``),
  only then reads the request body, and writes ``then BODY``: a client sees the first
  piece before it sends the body.
* ``GET /trap-after-head``: sets its response, writes ``partial`` and flushes, then traps.
* ``GET /fetch-stream?url=URL&n=N[&first_byte_ms=&between_ms=]``: POSTs N bytes of the pattern to
  URL through ``wasi:http/outgoing-handler``, written in 64 KiB pieces after ``handle``, reads the
  response in pieces, and answers ``STATUS SHA256 BYTES`` of the response body, then a line with
  its first 200 bytes; an ``error-code`` (of the request or of a body read) becomes 502 naming it.
* ``POST /poll``: what StarlingMonkey's ``fetch`` event calls besides the usual: ``poll`` of the
  request body's and response body's pollables, one an hour away and one now (answers
  ``ready=[INDEXES]``), ``check-write``, ``flush``, the request's ``scheme`` and ``authority``, its
  headers cloned into the response's, ``monotonic-clock.now``.
* ``PUT /kv/KEY`` stores the body under KEY in ``wasi:keyvalue`` bucket ``web``; ``GET /kv/KEY``
  answers it (404 when missing); a ``wasi:keyvalue`` error is a 500 naming it.
"""

import hashlib
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import logging, monotonic_clock, outgoing_handler, poll, store
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    DnsErrorPayload,
    ErrorCode_DnsError,
    ErrorCode_InternalError,
    Fields,
    IncomingBody,
    IncomingRequest,
    IncomingResponse,
    Method_Get,
    Method_Other,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    RequestOptions,
    ResponseOutparam,
    Scheme_Http,
    http_error_code,
)

PATTERN = bytes(range(256)) * 256  # 64 KiB


def method_name(request: IncomingRequest) -> str:
    m = request.method()
    if isinstance(m, Method_Other):
        return m.value
    return type(m).__name__.removeprefix("Method_").upper()


def read_all(body: IncomingBody) -> bytes:
    data = bytearray()
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(1 << 20)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise
    IncomingBody.finish(body)
    return bytes(data)


def write_all(body: OutgoingBody, data: bytes) -> None:
    with body.write() as stream:
        offset = 0
        while offset < len(data):
            n = stream.check_write()
            if n == 0:
                stream.subscribe().block()
                continue
            stream.write(data[offset:offset + n])
            offset += n
        stream.blocking_flush()
    OutgoingBody.finish(body, None)


def write_pattern(body: OutgoingBody, n: int) -> None:
    """N bytes of PATTERN, repeated, as the stream takes them (never all held at once)."""
    with body.write() as stream:
        sent = 0
        while sent < n:
            room = stream.check_write()
            if room == 0:
                stream.subscribe().block()
                continue
            start = sent % len(PATTERN)
            k = min(room, n - sent, len(PATTERN) - start)
            stream.write(PATTERN[start:start + k])
            sent += k
        stream.blocking_flush()
    OutgoingBody.finish(body, None)


def respond(out: ResponseOutparam, status: int, headers: list[tuple[str, bytes]], body: bytes) -> None:
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    out_body = response.body()
    ResponseOutparam.set(out, Ok(response))
    write_all(out_body, body)


def fetch(url: str, method: str, headers: list[tuple[str, bytes]], body: bytes,
          timeout_ms: int = 5000) -> tuple[int, list, bytes]:
    parts = urlsplit(url)
    request = OutgoingRequest(Fields.from_list([(k, v) for k, v in headers if k == "content-type"]))
    request.set_method(Method_Post() if method == "POST" else Method_Get())
    request.set_scheme(Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    options = RequestOptions()
    options.set_first_byte_timeout(timeout_ms * 1_000_000)
    out_body = request.body()
    future = outgoing_handler.handle(request, options)
    write_all(out_body, body)
    while True:
        got = future.get()
        if got is not None:
            break
        poll.poll([future.subscribe()])
    inner = got.value  # Ok(...): the response came, once
    if isinstance(inner, Err):
        raise inner
    response: IncomingResponse = inner.value
    upstream = [(f"x-upstream-{k}", v) for k, v in response.headers().entries()]
    return response.status(), upstream, read_all(response.consume())


def fetch_stream(url: str, n: int, first_byte_ms: int, between_ms: int) -> bytes:
    parts = urlsplit(url)
    request = OutgoingRequest(Fields.from_list([("content-type", b"application/octet-stream")]))
    request.set_method(Method_Post())
    request.set_scheme(Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    options = RequestOptions()
    if first_byte_ms:
        options.set_first_byte_timeout(first_byte_ms * 1_000_000)
    if between_ms:
        options.set_between_bytes_timeout(between_ms * 1_000_000)
    out_body = request.body()
    future = outgoing_handler.handle(request, options)
    piece = PATTERN
    with out_body.write() as stream:
        sent = 0
        while sent < n:
            chunk = piece[: min(len(piece), n - sent)]
            stream.blocking_write_and_flush(chunk)
            sent += len(chunk)
    OutgoingBody.finish(out_body, None)
    while True:
        got = future.get()
        if got is not None:
            break
        poll.poll([future.subscribe()])
    inner = got.value
    if isinstance(inner, Err):
        raise inner
    response: IncomingResponse = inner.value
    digest, size, head = hashlib.sha256(), 0, b""
    body = response.consume()
    with body.stream() as stream:
        while True:
            try:
                data = stream.blocking_read(1 << 20)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise Err(http_error_code(e.value.value) or e.value) from None
            digest.update(data)
            if len(head) < 200:
                head += data[: 200 - len(head)]
            size += len(data)
    return f"{response.status()} {digest.hexdigest()} {size}\n".encode() + head


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = method_name(request)
        target = request.path_with_query() or "/"
        path, _, query = target.partition("?")
        headers = request.headers().entries()
        if path == "/hello":
            tests = [v for k, v in headers if k == "x-test"]
            text = f"{method} {target} x-test={b','.join(tests).decode()}"
            respond(response_out, 200, [("content-type", b"text/plain"), *(("x-echo", v) for v in tests)],
                    text.encode())
        elif path == "/echo":
            body = read_all(request.consume())
            ctype = [v for k, v in headers if k == "content-type"] or [b"application/octet-stream"]
            respond(response_out, 200, [("content-type", ctype[0]), ("x-body-bytes", str(len(body)).encode())],
                    body)
        elif path == "/big":
            n = int(parse_qs(query).get("n", ["0"])[0])
            response = OutgoingResponse(Fields.from_list([("content-type", b"application/octet-stream")]))
            out_body = response.body()
            ResponseOutparam.set(response_out, Ok(response))
            write_pattern(out_body, n)
        elif path == "/sha256":
            digest, size = hashlib.sha256(), 0
            body = request.consume()
            with body.stream() as stream:
                while True:
                    try:
                        piece = stream.blocking_read(1 << 20)
                    except Err as e:
                        if isinstance(e.value, StreamError_Closed):
                            break
                        raise
                    digest.update(piece)
                    size += len(piece)
            IncomingBody.finish(body)
            respond(response_out, 200, [("content-type", b"text/plain")], f"{digest.hexdigest()} {size}".encode())
        elif path == "/pieces":
            response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
            out_body = response.body()
            ResponseOutparam.set(response_out, Ok(response))
            with out_body.write() as stream:
                stream.blocking_write_and_flush(b"first\n")
                stream.blocking_write_and_flush(b"then " + read_all(request.consume()))
            OutgoingBody.finish(out_body, None)
        elif path == "/trap-after-head":
            response = OutgoingResponse(Fields.from_list([]))
            out_body = response.body()
            ResponseOutparam.set(response_out, Ok(response))
            with out_body.write() as stream:
                stream.blocking_write_and_flush(b"partial")
            raise RuntimeError("the handler failed after its head, on purpose")
        elif path.startswith("/status/"):
            respond(response_out, int(path.rsplit("/", 1)[1]), [], b"status")
        elif path == "/trap":
            raise RuntimeError("the handler failed on purpose")
        elif path == "/spin":  # reads its body as it streams, then never answers
            read_all(request.consume())
            while True:
                pass
        elif path == "/drop":
            return
        elif path == "/error":
            case = parse_qs(query).get("case", ["internal"])[0]
            code = (ErrorCode_DnsError(DnsErrorPayload(rcode="NXDOMAIN", info_code=3)) if case == "dns"
                    else ErrorCode_InternalError("boom"))
            ResponseOutparam.set(response_out, Err(code))
        elif path == "/poll":
            start = monotonic_clock.now()
            incoming = request.consume()
            response = OutgoingResponse(request.headers().clone())
            out_body = response.body()
            with incoming.stream() as stream, out_body.write() as out:
                later = monotonic_clock.subscribe_duration(3_600 * 10**9)
                ready = poll.poll([stream.subscribe(), out.subscribe(), later, monotonic_clock.subscribe_duration(0)])
                text = (f"ready={list(ready)} room={out.check_write()} scheme={type(request.scheme()).__name__} "
                        f"authority={request.authority()} now={monotonic_clock.now() >= start}")
                ResponseOutparam.set(response_out, Ok(response))
                out.write(text.encode())
                out.flush()
                out.blocking_flush()
            IncomingBody.finish(incoming)
            OutgoingBody.finish(out_body, None)
        elif path == "/sleep":
            ms = int(parse_qs(query).get("ms", ["0"])[0])
            monotonic_clock.subscribe_duration(ms * 1_000_000).block()
            respond(response_out, 200, [], b"slept")
        elif path == "/fetch-stream":
            params = parse_qs(query)
            try:
                summary = fetch_stream(params["url"][0], int(params.get("n", ["0"])[0]),
                                    int(params.get("first_byte_ms", ["0"])[0]), int(params.get("between_ms", ["0"])[0]))
            except Err as e:
                respond(response_out, 502, [], f"error-code: {type(e.value).__name__}".encode())
                return
            respond(response_out, 200, [], summary)
        elif path == "/log":
            logging.log(logging.Level.INFO, "wasihttp", f"{method} {target}")
            respond(response_out, 200, [], b"logged")
        elif path.startswith("/kv/"):
            key = path[len("/kv/"):]
            try:
                with store.open("web") as bucket:
                    if method == "PUT":
                        bucket.set(key, read_all(request.consume()))
                        respond(response_out, 204, [], b"")
                    else:
                        value = bucket.get(key)
                        respond(response_out, 404 if value is None else 200, [], value or b"")
            except Err as e:
                respond(response_out, 500, [], f"keyvalue: {e.value!r}".encode())
        elif path == "/fetch":
            params = parse_qs(query)
            url = params["url"][0]
            body = read_all(request.consume()) if method == "POST" else b""
            try:
                status, upstream, data = fetch(url, method, headers, body, int(params.get("timeout_ms", ["5000"])[0]))
            except Err as e:
                respond(response_out, 502, [], f"error-code: {type(e.value).__name__}".encode())
                return
            respond(response_out, status, upstream, data)
        else:
            respond(response_out, 404, [], b"not found")
