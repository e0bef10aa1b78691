"""The `httpapp` test component: one request handler with a route per behaviour.

* ``/echo``            200, the request body back; ``x-method``, ``x-path`` and
                       every ``x-*`` request header repeated as ``x-echo-*``
* ``/status/N``        status N, body ``status N``
* ``/big/N``           200, N bytes (``0123456789`` repeated)
* ``/pieces/N/K``      200, the same N bytes, all but the last K-byte piece sent with
                       ``response-body.append`` (its ``err`` text in ``x-append-error``)
* ``/sleep/MS``        busy-waits MS milliseconds, then 200
* ``/fail``            raises: the call traps
* ``/count``           how many requests this instance has served (reuse shows)
* ``/config/KEY``      the component's runtime config value for KEY
* ``/fetch``           an outgoing request through ``outgoing-handler.send``:
                       ``x-fetch-url``, ``x-fetch-method``, ``x-fetch-timeout-ms``,
                       ``x-fetch-follow`` (``1``) from the request; the request body
                       is sent. Answers 200 with the fetched status in
                       ``x-fetched-status``, its headers as ``x-fetched-<name>``
                       and its body, or 200 with ``x-fetch-error`` on ``err``.
* anything else        404
"""

import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import outgoing_handler, response_body, runtime
from wit_world.imports.types import OutgoingRequest, Request, RequestOptions, Response

_served = 0


def _text(status: int, text: str) -> Response:
    return Response(status=status, headers=[("content-type", b"text/plain")], body=text.encode())


def _header(request: Request, name: str) -> str | None:
    for key, value in request.headers:
        if key == name:
            return value.decode()
    return None


def _fetch(request: Request) -> Response:
    url = _header(request, "x-fetch-url") or ""
    timeout = _header(request, "x-fetch-timeout-ms")
    options = RequestOptions(timeout_ms=int(timeout) if timeout else None,
                             follow_redirects=_header(request, "x-fetch-follow") == "1")
    sent = [(k, v) for k, v in request.headers if k.startswith("x-send-")]
    outgoing = OutgoingRequest(method=_header(request, "x-fetch-method") or "GET", url=url,
                               headers=sent, body=request.body)
    try:
        got = outgoing_handler.send(outgoing, options)
    except Err as e:
        return Response(status=200, headers=[("x-fetch-error", str(e.value).encode())], body=b"")
    headers = [("x-fetched-status", str(got.status).encode())]
    headers += [("x-fetched-" + k, v) for k, v in got.headers]
    return Response(status=200, headers=headers, body=got.body)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        global _served
        _served += 1
        path, _, _query = request.path_with_query.partition("?")
        parts = path.strip("/").split("/")
        head = parts[0]
        if head == "echo":
            headers = [("content-type", b"application/octet-stream"),
                       ("x-method", request.method.encode()),
                       ("x-path", request.path_with_query.encode())]
            headers += [("x-echo-" + k[2:], v) for k, v in request.headers if k.startswith("x-")]
            return Response(status=200, headers=headers, body=request.body)
        if head == "status" and len(parts) == 2:
            return _text(int(parts[1]), f"status {parts[1]}")
        if head == "big" and len(parts) == 2:
            n = int(parts[1])
            return Response(status=200, headers=[], body=(b"0123456789" * (n // 10 + 1))[:n])
        if head == "pieces" and len(parts) == 3:
            n, k = int(parts[1]), int(parts[2])
            data = (b"0123456789" * (n // 10 + 1))[:n]
            start = 0
            while n - start > k:
                try:
                    response_body.append(data[start:start + k])
                except Err as e:
                    return Response(status=200, headers=[("x-append-error", str(e.value).encode())], body=b"")
                start += k
            return Response(status=200, headers=[], body=data[start:])
        if head == "sleep" and len(parts) == 2:
            end = time.monotonic() + int(parts[1]) / 1000
            while time.monotonic() < end:
                pass
            return _text(200, "slept")
        if head == "fail":
            raise RuntimeError("asked to fail")
        if head == "count":
            return _text(200, str(_served))
        if head == "config" and len(parts) == 2:
            try:
                value = runtime.get(parts[1])
            except Err as e:
                return _text(500, f"config error: {e.value}")
            return _text(200 if value is not None else 404, value or "")
        if head == "fetch":
            return _fetch(request)
        return _text(404, f"no such page: {path}")
