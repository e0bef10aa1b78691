"""HTTP/1.1 behaviour of the front, on real sockets, with the component call faked in-process."""

from __future__ import annotations

import asyncio
import socket

import pytest

from trellis.httpfront.config import ServerConfig
from trellis.httpfront.gateway import CallFailed
from trellis.providers.builtin.http_server import front as front_module

from ..harness import eventually
from .helpers import Conn, FakeCaller, free_port, get, post, route


async def test_keep_alive_serves_many_requests_on_one_connection(serve):
    port = free_port()
    front = await serve(FakeCaller(), route(address=f"127.0.0.1:{port}"))
    conn = await Conn.open(port)
    for i in range(3):
        await conn.send(get(f"/n/{i}?q=1"))
        r = await conn.response()
        assert (r.status, r.header("x-path")) == (200, f"/n/{i}?q=1".encode())
        assert r.header("connection") is None and r.header("date")
    assert len(front.listeners[("127.0.0.1", port)].connections) == 1
    await conn.close()


async def test_pipelined_requests_are_answered_in_order(serve):
    async def slow_first(target, request):
        if request["path-with-query"] == "/1":
            await asyncio.sleep(0.2)
        return {"status": 200, "headers": [], "body": request["path-with-query"].encode()}

    port = free_port()
    await serve(FakeCaller(slow_first), route(address=f"127.0.0.1:{port}"))
    conn = await Conn.open(port)
    await conn.send(get("/1") + post("/2", b"body") + get("/3"))
    assert [r.body for r in await conn.responses(3)] == [b"/1", b"/2", b"/3"]
    await conn.close()


async def test_the_request_record(serve):
    caller = FakeCaller()
    port = free_port()
    await serve(caller, route(address=f"127.0.0.1:{port}"))
    body = bytes(range(256)) * 4
    conn = await Conn.open(port)
    await conn.send(post("/up?x=1", body, extra="X-Dup: a\r\nx-dup: b\r\nTraceparent: 00-abc-def-01\r\n"))
    r = await conn.response()
    assert r.status == 200 and r.body == body
    req = caller.calls[0]["request"]
    assert req["method"] == "POST" and req["path-with-query"] == "/up?x=1" and req["body"] == body
    assert [h for h in req["headers"] if h[0] == "x-dup"] == [["x-dup", b"a"], ["x-dup", b"b"]]
    assert ["host", b"localhost"] in req["headers"]
    assert caller.calls[0]["trace"] == {"traceparent": "00-abc-def-01"}  # passed through, no SDK
    assert caller.calls[0]["retry_lost"] is False  # POST is not idempotent
    await conn.send(b"GET http://example.com/abs?y HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (await conn.response()).header("x-path") == b"/abs?y"
    assert caller.calls[1]["retry_lost"] is True
    chunked = b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    await conn.send(chunked)
    assert (await conn.response()).body == b"abcde"
    await conn.close()


async def test_body_limits(serve):
    caller = FakeCaller()
    port = free_port()
    await serve(caller, route(address=f"127.0.0.1:{port}", max_body_bytes=1000))
    conn = await Conn.open(port)
    await conn.send(post("/ok", b"x" * 1000))
    assert (await conn.response()).status == 200
    # announced too large: refused before the body is sent, and the connection closed
    await conn.send(b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
    r = await conn.response()
    assert r.status == 413 and b"5000 bytes, over the limit of 1000" in r.body
    assert r.header("connection") == b"close" and await conn.wait_closed()
    # a client that sends the whole body anyway still reads the 413 (no reset: the front lingers)
    conn = await Conn.open(port)
    await conn.send(b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 3000000\r\n\r\n" + b"z" * 3_000_000)
    r = await conn.response()
    assert r.status == 413 and await conn.wait_closed()
    # chunked: refused once it grows past the limit
    conn = await Conn.open(port)
    await conn.send(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        await conn.send(b"200\r\n" + b"y" * 512 + b"\r\n")
    r = await conn.response()
    assert r.status == 413 and await conn.wait_closed()
    assert len(caller.calls) == 1


async def test_expect_100_continue(serve):
    port = free_port()
    await serve(FakeCaller(), route(address=f"127.0.0.1:{port}", max_body_bytes=10))
    conn = await Conn.open(port)
    await conn.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert await conn.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await conn.send(b"hello")
    assert (await conn.response()).body == b"hello"
    await conn.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n")
    assert (await conn.response()).status == 413  # no 100 for a body that would be refused
    await conn.close()


async def test_malformed_and_oversized_requests_get_4xx_and_a_closed_connection(serve):
    port = free_port()
    caller = FakeCaller()
    await serve(caller, route(address=f"127.0.0.1:{port}"), settings=ServerConfig(max_header_bytes=2048))
    cases = [
        (b"garbage\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
        (get("/", extra="X-Big: " + "a" * 4000 + "\r\n"), 431),
        (b"GET /" + b"a" * 4000, 431),  # an endless request line is cut off too
    ]
    for data, status in cases:
        conn = await Conn.open(port)
        await conn.send(data)
        r = await conn.response()
        assert r.status == status, (data[:40], r)
        assert await conn.wait_closed()
    assert caller.calls == []


async def test_timeouts_close_slow_and_idle_connections(serve):
    port = free_port()
    await serve(FakeCaller(), route(address=f"127.0.0.1:{port}"),
                settings=ServerConfig(idle_timeout_ms=300, read_timeout_ms=300))
    conn = await Conn.open(port)
    await conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n")  # never finished
    r = await conn.response()
    assert r.status == 408 and await conn.wait_closed()
    conn = await Conn.open(port)
    await conn.send(get())
    assert (await conn.response()).status == 200
    assert await conn.wait_closed(3)  # idle past idle_timeout_ms


async def test_head_http10_and_connection_close(serve):
    async def handler(target, request):
        close = [["connection", b"close"]] if request["path-with-query"] == "/bye" else []
        return {"status": 200, "headers": close, "body": b"twelve bytes"}

    port = free_port()
    await serve(FakeCaller(handler), route(address=f"127.0.0.1:{port}"))
    conn = await Conn.open(port)
    await conn.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n" + get("/"))
    head = await conn.reader.readuntil(b"\r\n\r\n")  # a parser would wait for the 12 bytes HEAD omits
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 12\r\n" in head
    assert (await conn.response()).body == b"twelve bytes"  # the next bytes are the GET's response
    await conn.send(get("/bye"))
    assert (await conn.response()).header("connection") == b"close" and await conn.wait_closed()
    conn = await Conn.open(port)
    await conn.send(b"GET / HTTP/1.0\r\n\r\n")
    assert (await conn.response()).status == 200 and await conn.wait_closed()
    conn = await Conn.open(port)
    await conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await conn.response()).header("connection") == b"keep-alive"
    await conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await conn.response()).status == 200
    await conn.close()


async def test_upgrade_is_answered_as_http11_then_closed(serve):
    port = free_port()
    await serve(FakeCaller(), route(address=f"127.0.0.1:{port}"))
    conn = await Conn.open(port)
    await conn.send(get("/",
                        extra="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: "
                              "AAMAAABkAAQAAP__\r\n"))
    r = await conn.response()
    assert r.status == 200 and r.header("connection") == b"close" and await conn.wait_closed()


async def test_failures_and_invalid_responses_become_5xx(serve):
    async def handler(target, request):
        path = request["path-with-query"]
        if path == "/slow":
            raise CallFailed(504, "component 'comp' did not answer within 5 ms")
        if path == "/split":
            return {"status": 200, "headers": [["x", b"1\r\nset-cookie: evil=1"]], "body": b""}
        if path == "/bug":
            raise KeyError("oops")
        return {"status": int(path[1:]), "headers": [], "body": b""}

    port = free_port()
    await serve(FakeCaller(handler), route(address=f"127.0.0.1:{port}"))
    conn = await Conn.open(port)
    await conn.send(get("/slow"))
    r = await conn.response()
    assert r.status == 504 and r.body == b"504 Gateway Timeout: component 'comp' did not answer within 5 ms\n"
    await conn.send(get("/split"))
    r = await conn.response()
    assert r.status == 502 and b"invalid response" in r.body and r.header("set-cookie") is None
    await conn.send(get("/404") + get("/500") + get("/100"))
    assert [r.status for r in await conn.responses(3)] == [404, 500, 502]
    await conn.send(get("/bug"))
    r = await conn.response()
    assert r.status == 500 and await conn.wait_closed()


async def test_routes_by_host_and_path_on_one_address(serve):
    port = free_port()
    addr = f"127.0.0.1:{port}"
    await serve(FakeCaller(), route("api", "a", address=addr, path="/api"),
                route("site", "b", address=addr, host="example.com"))
    conn = await Conn.open(port)
    await conn.send(get("/api/users", host="other.org") + get("/", host="EXAMPLE.com:80") + get("/", host="other.org"))
    api, site, missing = await conn.responses(3)
    assert api.header("x-target") == b"api" and site.header("x-target") == b"site"
    assert missing.status == 404 and b"nothing is served at other.org/" in missing.body
    await conn.send(get("/api", host="example.com"))  # the connection survived the 404
    assert (await conn.response()).header("x-target") == b"site"  # a route's host comes before paths
    await conn.close()


async def test_two_ports_and_closing_one(serve):
    gate = asyncio.Event()

    async def handler(target, request):
        if request["path-with-query"] == "/wait":
            await gate.wait()
        return {"status": 200, "headers": [["x-target", target.encode()]], "body": b""}

    p1, p2 = free_port(), free_port()
    r1, r2 = route("one", "l1", address=f"127.0.0.1:{p1}"), route("two", "l2", address=f"127.0.0.1:{p2}")
    front = await serve(FakeCaller(handler), r1, r2)
    c1, c2 = await Conn.open(p1), await Conn.open(p2)
    await c1.send(get("/wait"))
    await c2.send(get())
    assert (await c2.response()).header("x-target") == b"two"
    idle = await Conn.open(p1)
    await eventually(lambda: len(front.listeners[("127.0.0.1", p1)].connections) == 2, what="both connections")
    front.delete(r1.key)
    await front.reconcile()
    with pytest.raises(OSError):  # the port is closed at once
        await Conn.open(p1)
    assert await idle.wait_closed()  # idle connections close at once
    gate.set()
    r = await c1.response()  # the request in progress is answered, then the connection closes
    assert r.status == 200 and r.header("connection") == b"close" and await c1.wait_closed()
    await c2.send(get())
    assert (await c2.response()).status == 200
    await c2.close()


async def test_a_busy_port_is_reported_and_retried(serve, monkeypatch):
    monkeypatch.setattr(front_module, "RETRY_S", 0.1)
    port = free_port()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    front = await serve(FakeCaller())
    front.put(("l",), route(address=f"127.0.0.1:{port}"))
    await front.reconcile()
    ok, message = front.health()
    assert not ok and message == f"not listening; cannot listen on 127.0.0.1:{port}: Address already in use"
    squatter.close()
    await eventually(lambda: front.health()[0], what="the retried bind")
    conn = await Conn.open(port)
    await conn.send(get())
    assert (await conn.response()).status == 200
    await conn.close()


async def test_a_client_that_goes_away_cancels_its_call(serve):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(target, request):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    port = free_port()
    front = await serve(FakeCaller(handler), route(address=f"127.0.0.1:{port}"))
    conn = await Conn.open(port)
    await conn.send(get())
    await asyncio.wait_for(started.wait(), 5)
    await conn.close()
    await asyncio.wait_for(cancelled.wait(), 5)
    await eventually(lambda: not front.listeners[("127.0.0.1", port)].connections, what="the connection gone")
