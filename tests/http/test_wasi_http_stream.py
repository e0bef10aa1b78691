"""Streamed bodies of an unmodified `wasi:http` component on a connection handed to its worker
(issue 14, part 1; trellis/httpfront/streaming.py): the request body is read as the client sends
it, the response written as the component writes it."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from .test_lattice import big_nats, lattice_client, start_app  # noqa: F401 (pytest fixtures imported by name)
from .test_wasi_http import wasi_route, wasihttp  # noqa: F401 (pytest fixtures imported by name)

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    return await asyncio.wait_for(reader.readuntil(marker), 30)


async def test_bodies_stream_both_ways(monkeypatch, lattice_client, wasihttp):  # noqa: F811 (fixtures)
    monkeypatch.setenv("TRELLIS_HTTP_HANDOFF", "1")
    c, host_id = lattice_client
    await start_app(c, host_id, wasihttp, "wasihttp")
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    port = await wasi_route(c, "wasihttp", "web")  # max_body_bytes unset: streamed bodies are not bounded

    # (a) an upload far past max_body_bytes (2.6 MB), sent in pieces, hashed as it arrives
    piece = bytes(range(256)) * 4096  # 1 MiB
    count = 12
    want = hashlib.sha256(piece * count).hexdigest()

    async def pieces():
        for _ in range(count):
            yield piece

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        r = await http.post("/sha256", content=pieces())  # chunked
        assert (r.status_code, r.text) == (200, f"{want} {count * MIB}")
        r = await http.post("/sha256", content=piece * 4)  # content-length
        assert r.text == f"{hashlib.sha256(piece * 4).hexdigest()} {4 * MIB}"
        r = await http.get("/hello")  # small requests as before, on the same connection
        assert r.status_code == 200 and r.text.startswith("GET /hello")
        r = await http.get(f"/big?n={3 * MIB}")  # a streamed response past what one call carries
        assert r.status_code == 200 and len(r.content) == 3 * MIB and r.headers["transfer-encoding"] == "chunked"
        r = await http.head("/hello")
        assert r.status_code == 200 and r.content == b""

    # (b) the first piece of the response reaches the client before the handler finishes: it
    # waits for the request body, which is sent only once that piece arrived
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /pieces HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n")
    head = await read_until(reader, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
    assert await read_until(reader, b"first\n\r\n") == b"6\r\nfirst\n\r\n"
    writer.write(b"hello")
    assert await read_until(reader, b"0\r\n\r\n") == b"a\r\nthen hello\r\n0\r\n\r\n"
    # the connection takes the next request
    writer.write(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
    assert (await read_until(reader, b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()

    # (c) a trap after the head was sent: the connection closes, the body cut short (no last chunk).
    # (The request's body is still to come, so the call runs on a Wasm thread: a short call on the
    # event loop is answered whole, and a trap there is a 500 as before the head.)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /trap-after-head HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
    got = await asyncio.wait_for(reader.read(-1), 30)  # to EOF: the server closed it
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"7\r\npartial\r\n"), got
    writer.close()

    # a client that goes away mid-body: the component's read fails (it traps), nothing hangs,
    # and the component goes on serving
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /sha256 HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n" + piece)
    await writer.drain()
    writer.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        r = await http.post("/sha256", content=b"abc")
        assert r.text == f"{hashlib.sha256(b'abc').hexdigest()} 3"
