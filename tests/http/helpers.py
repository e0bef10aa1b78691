"""Raw HTTP/1.1 for tests: send exact bytes, read exact responses (httptools parses them)."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import httptools

from trellis.httpfront.config import parse_route
from trellis.httpfront.routes import Route


def free_port() -> int:
    """A port nothing listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def route(target: str = "comp", link_name: str = "default", **config: Any) -> Route:
    cfg = {k: str(v) for k, v in config.items()}
    return Route(("http-server", "trellis", "http", link_name, target), target, link_name, parse_route(cfg))


@dataclass
class Response:
    status: int
    headers: list[tuple[str, bytes]]
    body: bytes

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class _Collector:
    done: list[Response] = field(default_factory=list)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    parser: Any = None

    def on_message_begin(self) -> None:
        self.headers, self.body = [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode().lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done.append(Response(self.parser.get_status_code(), self.headers, b"".join(self.body)))


class Conn:
    """One client connection: ``send`` bytes, ``responses(n)`` reads n responses in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._c = _Collector()
        self._c.parser = httptools.HttpResponseParser(self._c)
        self.closed = False

    #: every connection opened, so a test's teardown can close them (see conftest)
    opened: list[Conn] = []

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = cls(reader, writer)
        cls.opened.append(conn)
        return conn

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def responses(self, n: int, timeout: float = 10.0) -> list[Response]:
        async with asyncio.timeout(timeout):
            while len(self._c.done) < n:
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    break
                self._c.parser.feed_data(data)
        out, self._c.done = self._c.done[:n], self._c.done[n:]
        return out

    async def response(self, timeout: float = 10.0) -> Response:
        got = await self.responses(1, timeout)
        assert got, "the server closed the connection without a response"
        return got[0]

    async def wait_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF) within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        self.closed = True
                        self.writer.close()
                        return True
                    self._c.parser.feed_data(data)
        except TimeoutError:
            return False
        except ConnectionResetError:
            self.writer.close()
            return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def get(path: str = "/", host: str = "localhost", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, host: str = "localhost", extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class FakeCaller:
    """Answers calls in-process: ``handler(target, request_record) -> response record``."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or echo
        self.calls: list[dict[str, Any]] = []

    async def call(self, target: str, link_name: str, request: dict[str, Any], *, timeout_s: float,
                   instance_wait_s: float, retry_lost: bool, trace: dict[str, str] | None = None,
                   invocation_id: str | None = None) -> Any:
        self.calls.append({"target": target, "link": link_name, "request": request, "timeout_s": timeout_s,
                           "retry_lost": retry_lost, "trace": trace})
        return await self.handler(target, request)


async def echo(target: str, request: dict[str, Any]) -> dict[str, Any]:
    """200 with the request body; the target, method and path in headers."""
    return {"status": 200, "headers": [["x-target", target.encode()], ["x-method", request["method"].encode()],
                                       ["x-path", request["path-with-query"].encode()]],
            "body": request["body"]}


# --- a plain HTTP server for the client's tests (stdlib, in a thread, 127.0.0.1 only) ----------

class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), logging nothing: what LocalServer's handlers build on."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (a timeout test) is not a failure of the server


class LocalServer:
    """``with LocalServer() as srv: srv.url("/hello")``. Paths:

    ``/hello`` 200 ``hello`` · ``/echo`` the method, body and ``x-*`` headers back ·
    ``/redirect/N`` N redirects, then ``/hello`` · ``/see-other`` 303 to ``/echo`` ·
    ``/slow`` answers after 3 s · ``/big/N`` N bytes · ``/status/N`` status N ·
    ``/set-cookie`` sets a cookie

    A subclass answers other paths by overriding `handler`; handlers that hold an answer back
    wait on `release`, set when the server stops.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, name="local-http", daemon=True)

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        outer = self

        class Handler(QuietHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                parts = self.path.strip("/").split("/")
                if parts[0] == "hello":
                    self.reply(200, b"hello", [("X-Server", "local")])
                elif parts[0] == "echo":
                    echoed = [("X-Echo-" + k[2:], v) for k, v in self.headers.items() if k.lower().startswith("x-")]
                    self.reply(200, body, [("X-Method", self.command), *echoed])
                elif parts[0] == "redirect":
                    n = int(parts[1])
                    self.reply(302, b"", [("Location", f"/redirect/{n - 1}" if n > 1 else "/hello")])
                elif parts[0] == "see-other":
                    self.reply(303, b"", [("Location", "/echo")])
                elif parts[0] == "slow":
                    time.sleep(3)
                    self.reply(200, b"late")
                elif parts[0] == "big":
                    self.reply(200, b"b" * int(parts[1]))
                elif parts[0] == "set-cookie":
                    self.reply(200, b"", [("Set-Cookie", "session=secret; Path=/")])
                elif parts[0] == "status":
                    self.reply(int(parts[1]), b"")
                else:
                    self.reply(404, b"not here")

            do_GET = do_POST = do_PUT = do_DELETE = _any

        return Handler

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
