"""wasi:http bodies streamed over the lattice (issue 14): a `wasi:http` component's outgoing request
through builtin:http-client, its body and its response's body on byte streams over NATS
(interfaces/bytestream.py), with the request-options timeouts as error-code cases.

A real host runs the `wasihttp` test component (componentize-py), builtin:http-server and
builtin:http-client; the upstream is a plain HTTP server on loopback in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.components.build import build_python
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link

from ..harness import eventually, is_worker
from .helpers import LocalServer, QuietHandler, free_port
from .test_lattice import big_nats, lattice_client, port_open  # noqa: F401 (pytest fixtures imported by name)

pytestmark = pytest.mark.slow
MIB = 1024 * 1024
PATTERN = bytes(range(256)) * 256  # the component's


def pattern(n: int) -> Iterator[bytes]:
    sent = 0
    while sent < n:
        piece = PATTERN[: min(len(PATTERN), n - sent)]
        sent += len(piece)
        yield piece


class Upstream(LocalServer):
    """``POST /sink`` answers ``SHA256 BYTES`` of the (chunked) body it read as it came;
    ``POST /gen/N`` N bytes of the pattern; ``/stall-head`` and ``/stall-body`` stop answering
    (before the head; after 128 KiB of a 1 MiB body) until the test ends."""

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        release = self.release

        class Handler(QuietHandler):
            def _body(self) -> Iterator[bytes]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return
                        yield self.rfile.read(size)
                        self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    while left:
                        piece = self.rfile.read(min(left, 1 << 16))
                        left -= len(piece)
                        yield piece

            def do_POST(self) -> None:
                digest, size = hashlib.sha256(), 0
                for piece in self._body():
                    digest.update(piece)
                    size += len(piece)
                if self.path == "/sink":
                    self.reply(200, f"{digest.hexdigest()} {size}".encode())
                elif self.path.startswith("/gen/"):
                    n = int(self.path.rsplit("/", 1)[1])
                    self.send_response(200)
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    for piece in pattern(n):
                        self.wfile.write(piece)
                elif self.path == "/stall-head":
                    release.wait(30)
                elif self.path == "/stall-body":
                    self.send_response(200)
                    self.send_header("Content-Length", str(MIB))
                    self.end_headers()
                    self.wfile.write(PATTERN * 2)
                    self.wfile.flush()
                    release.wait(30)

        return Handler


def high_water() -> dict[int, dict[str, int]]:
    """Peak resident memory (VmHWM, bytes) of this test's child processes (host, workers, providers)."""
    out: dict[int, dict[str, int]] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmHWM:", "VmRSS:")):
                        out.setdefault(p.pid, {})[line[:5]] = int(line.split()[1]) * 1024
        except OSError:
            pass
    return out


def bounded(before: dict[int, dict[str, int]], after: dict[int, dict[str, int]],
            but: str = "") -> dict[int, dict[str, int]]:
    """No process's peak memory grew by anything like a body (24 MiB) from ``before`` to ``after``."""
    for pid, mem in after.items():
        was = before.get(pid)
        if was is None:
            continue
        cmd = " ".join(psutil.Process(pid).cmdline()[-3:])
        if but and but in cmd:
            continue
        grew = mem["VmHWM"] - max(was["VmHWM"], was["VmRSS"])
        assert grew < 12 * MIB, f"{cmd} (pid {pid}) grew by {grew // MIB} MiB"
    return after


@pytest.fixture(scope="session")
def wasihttp() -> Any:
    return build_python("wasihttp")


async def wasi_route(c: LatticeClient, target: str, name: str, timeout_ms: int = 120_000) -> int:
    port = free_port()
    await c.put_config(f"http-{name}", {"address": f"127.0.0.1:{port}", "timeout_ms": str(timeout_ms)})
    await c.put_link(Link(source_id="http-server", target=target, name=name, wit_namespace="wasi",
                          wit_package="http", interfaces=["incoming-handler"], source_config=[f"http-{name}"]))
    await eventually(lambda: port_open(port), 15, what=f"a listener on port {port}")
    return port


async def test_outgoing_bodies_stream_both_ways_with_timeouts_as_error_codes(lattice_client, wasihttp):  # noqa: F811 (pytest fixtures imported by name)
    c, host_id = lattice_client
    await c.start_component(str(wasihttp), "wasihttp", host_id=host_id, max_instances=4,
                            reuse={"max_invocations": 10_000}, limits={"timeout_s": 90})
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    await c.start_provider("builtin:http-client", "http-client", host_id=host_id)
    await c.put_config("out", {"timeout_ms": "90000", "allowed_hosts": "127.0.0.1"})
    await c.put_link(Link(source_id="wasihttp", target="http-client", wit_namespace="wasi", wit_package="http",
                          interfaces=["outgoing-handler"], target_config=["out"]))
    port = await wasi_route(c, "wasihttp", "web")
    n = 24 * MIB
    with Upstream() as up:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            # small both ways: one call, as before
            r = await http.get("/fetch-stream", params={"url": up.url("/sink"), "n": "1000"})
            expect = hashlib.sha256(b"".join(pattern(1000))).hexdigest()
            assert r.status_code == 200 and r.text.splitlines()[1] == f"{expect} 1000", r.text
            # and a few MiB each way: the guest's own heap (its Wasm memory) grows to what it needs once
            for warm in ("/sink", f"/gen/{4 * MIB}"):
                r = await http.get("/fetch-stream", params={"url": up.url(warm), "n": str(4 * MIB)})
                assert r.status_code == 200, r.text[:300]
            before = high_water()
            # 24 MiB up: the component writes it, the provider sends it upstream as it comes
            r = await http.get("/fetch-stream", params={"url": up.url("/sink"), "n": str(n)})
            digest = hashlib.sha256()
            for piece in pattern(n):
                digest.update(piece)
            assert r.status_code == 200 and r.text.splitlines()[1] == f"{digest.hexdigest()} {n}", r.text[:300]
            before = bounded(before, high_water(), but="trellis.host.workers")
            # 24 MiB down: the provider streams the response body into the component's input-stream
            r = await http.get("/fetch-stream", params={"url": up.url(f"/gen/{n}"), "n": "10"})
            assert r.status_code == 200, r.text[:300]
            assert r.text.split("\n")[0] == f"200 {digest.hexdigest()} {n}"
            # (the worker's peak holds the guest's own memory too, which grows with what one export
            # call of a componentize-py guest moves: only the processes around it are held here)
            bounded(before, high_water(), but="trellis.host.workers")
            # the request's timeouts, as the spec's error-code cases
            r = await http.get("/fetch-stream", params={"url": up.url("/stall-head"), "n": "10",
                                                        "first_byte_ms": "300"})
            assert (r.status_code, r.text) == (502, "error-code: ErrorCode_ConnectionReadTimeout")
            r = await http.get("/fetch-stream", params={"url": up.url("/stall-body"), "n": "10",
                                                        "between_ms": "300"})
            assert (r.status_code, r.text) == (502, "error-code: ErrorCode_ConnectionReadTimeout")
            # egress rules apply to streamed requests (allowed_hosts: 127.0.0.1, not localhost)
            r = await http.get("/fetch-stream", params={"url": up.url("/sink").replace("127.0.0.1", "localhost"),
                                                        "n": str(MIB)})
            assert (r.status_code, r.text) == (502, "error-code: ErrorCode_HttpRequestDenied")


@pytest.fixture
def no_handoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRELLIS_HTTP_HANDOFF=0 for the host the test starts (its tuning is read when it starts: set
    it before ``lattice_client``)."""
    monkeypatch.setenv("TRELLIS_HTTP_HANDOFF", "0")


async def test_incoming_bodies_stream_over_nats(no_handoff, lattice_client, wasihttp, tmp_path):  # noqa: F811 (pytest fixtures imported by name)
    """With the connection not handed to a worker (TRELLIS_HTTP_HANDOFF=0: as from another host),
    a wasi:http request's body goes to the component as it arrives and its response comes back as
    written, on byte streams over NATS; an instance killed mid-stream closes the connection."""
    c, host_id = lattice_client
    await c.start_component(str(wasihttp), "wasihttp", host_id=host_id, max_instances=4,
                            reuse={"max_invocations": 10_000}, limits={"timeout_s": 90})
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    port = await wasi_route(c, "wasihttp", "web")
    n = 24 * MIB
    digest = hashlib.sha256()
    for piece in pattern(n):
        digest.update(piece)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        r = await http.get("/hello")  # small (whole in one reply unless the instance took > 20 ms)
        assert r.status_code == 200 and r.text.startswith("GET /hello")
        before = high_water()

        async def upload() -> AsyncIterator[bytes]:
            for piece in pattern(n):
                yield piece
        r = await http.post("/sha256", content=upload())
        assert (r.status_code, r.text) == (200, f"{digest.hexdigest()} {n}")
        r = await http.get("/big", params={"n": str(n)})
        assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
        assert hashlib.sha256(r.content).hexdigest() == digest.hexdigest()
        bounded(before, high_water(), but="trellis.host.workers")
    # an upload longer than the route's timeout: while its body moves, the wait for the head goes on
    slow = await wasi_route(c, "wasihttp", "slow", timeout_ms=800)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield PATTERN
            await asyncio.sleep(0.25)  # a slow client's pace (2 s in all), not a synchronisation
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{slow}", timeout=60) as http:
        r = await http.post("/sha256", content=trickle())
        assert (r.status_code, r.text) == (200, f"{hashlib.sha256(PATTERN * 8).hexdigest()} {8 * len(PATTERN)}")
    # the first bytes reach the client while the handler still runs (it waits for the body)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /pieces HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"first\n"), 30)
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    writer.write(b"body")
    rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 30)
    assert b"then body" in rest
    # an instance killed mid-stream: the client's connection closes, no hang
    writer.write(b"POST /pieces HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"first\n"), 30)
    # this test's host's worker (its log is under tmp_path), not those of session fixtures' hosts
    workers = [p for p in psutil.Process().children(recursive=True) if is_worker(p)
               and any(f.path.startswith(str(tmp_path)) for f in p.open_files())]
    assert len(workers) == 1, workers
    workers[0].kill()
    tail = await asyncio.wait_for(reader.read(), 30)  # EOF: the connection closed
    assert b"0\r\n\r\n" not in tail  # never a complete body
    writer.close()
