"""HTTP through the real parts: a host runs builtin:http-server (and builtin:http-client) and the
`httpapp` component (componentize-py); requests go HTTP → provider → NATS → worker → back, or,
on a connection the provider handed to the worker, HTTP → worker → back (test_handoff.py).

The NATS server here allows 8 MiB messages (NATS's default is 1 MiB), so bodies over 1 MiB can travel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from trellis.interfaces import subjects
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.control import CtlReply
from trellis.interfaces.links import Link
from trellis.natsserver import NatsServer

from ..harness import HostFactory, eventually
from .helpers import Conn, LocalServer, free_port, get, post

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def big_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    d = tmp_path_factory.mktemp("nats-big")
    conf = d / "nats.conf"
    conf.write_text(f"max_payload: {8 * MIB}\n")
    server = NatsServer(port=0, store_dir=d / "js", log_file=d / "nats.log", config_file=conf)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def lattice_client(big_nats, lattice, tmp_path) -> AsyncIterator[tuple[LatticeClient, str]]:
    """A host (1 worker) on a lattice of the 8 MiB NATS server, and a client; yields (client, host id)."""
    factory = HostFactory(big_nats.url, lattice, tmp_path)
    try:
        host = await factory.start()
        async with LatticeClient(big_nats.url, lattice) as client:
            yield client, host.id
    finally:
        await factory.close()


def web_link(target: str, name: str, config: str) -> Link:
    return Link(source_id="http-server", target=target, name=name, wit_namespace="trellis", wit_package="http",
                interfaces=["incoming-handler"], source_config=[config])


async def route(c: LatticeClient, target: str, name: str, **config: str) -> int:
    """Link http-server to ``target`` on a fresh port (plus ``config``); wait until it answers there."""
    port = free_port()
    await c.put_config(f"http-{name}", {"address": f"127.0.0.1:{port}", **config})
    await c.put_link(web_link(target, name, f"http-{name}"))
    await eventually(lambda: port_open(port), 15, what=f"a listener on port {port}")
    return port


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def health(c: LatticeClient, host_id: str, provider_id: str = "http-server") -> dict:
    assert c.nc is not None
    msg = await c.nc.request(subjects.provider_health(c.lattice, provider_id, host_id), b"{}", timeout=5)
    return CtlReply.model_validate_json(msg.data).response


async def start_app(c: LatticeClient, host_id: str, wasm: Path, component_id: str = "httpapp") -> None:
    await c.start_component(str(wasm), component_id, host_id=host_id, max_instances=4,
                            reuse={"max_invocations": 10_000}, limits={"timeout_s": 10})


@pytest.fixture(params=["handoff", "nats"])
def front_path(request, monkeypatch) -> str:
    """Both ways a request reaches a component on the provider's own host: on a connection handed
    to the worker (the default, test_handoff.py), or from the provider over NATS."""
    monkeypatch.setenv("TRELLIS_HTTP_HANDOFF", "1" if request.param == "handoff" else "0")
    return request.param



async def test_bodies_past_what_one_call_carries_into_wasm(front_path, lattice_client, httpapp):
    """wasmtime copies ~2.7 MB of list<u8> into or out of a component per call: past that, a request
    body is refused with 413 by default (max_body_bytes), before the component is called, and a
    larger response ends in a 502 that says why (kind too_large), not a bare trap, unless it is
    sent in pieces (trellis:http/response-body)."""
    from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

    c, host_id = lattice_client
    await start_app(c, host_id, httpapp)
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    port = await route(c, "httpapp", "web")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        body = bytes(range(256)) * (MAX_BYTES_PER_CALL // 256)
        r = await http.put("/echo", content=body)  # the most a request may carry: served whole
        assert r.status_code == 200 and r.content == body, (r.status_code, r.text[:500])
        r = await http.put("/echo", content=b"x" * (MAX_BYTES_PER_CALL + 1))
        assert r.status_code == 413 and f"over the limit of {MAX_BYTES_PER_CALL}" in r.text
        r = await http.get(f"/big/{MAX_BYTES_PER_CALL + 400_000}")
        assert r.status_code == 502 and "too_large" in r.text and "into or out of Wasm" in r.text
        r = await http.get(f"/big/{MAX_BYTES_PER_CALL}")
        assert r.status_code == 200 and len(r.content) == MAX_BYTES_PER_CALL
        # larger bodies go out in pieces (trellis:http/response-body), each under the bound
        size = 3 * MAX_BYTES_PER_CALL + 12_345
        r = await http.get(f"/pieces/{size}/{MIB}")
        assert r.status_code == 200 and r.content == (b"0123456789" * (size // 10 + 1))[:size]
        r = await http.get(f"/pieces/{size}/{5 * MIB}")  # one piece too large: that call fails, says why
        assert r.status_code == 502 and "too_large" in r.text
        r = await http.get("/pieces/25/10")  # small pieces, and the instance is fine after the failure
        assert r.status_code == 200 and r.content == b"0123456789012345678901234"


async def test_request_bodies_past_one_call_reach_components_that_read_them_in_pieces(
        front_path, lattice_client, httpapp, bodyapp):
    """With max_body_bytes raised (and NATS's max_payload, for the NATS path), a body past what one
    call carries reaches a component importing trellis:http/request-body whole, in pieces; one
    without that import is never called with it: 413 that says why."""
    from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

    c, host_id = lattice_client
    await start_app(c, host_id, httpapp)
    await start_app(c, host_id, bodyapp, "bodyapp")
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    plain = await route(c, "httpapp", "web", max_body_bytes=str(7 * MIB))
    reader = await route(c, "bodyapp", "big", max_body_bytes=str(7 * MIB))
    big = bytes(range(256)) * (5 * MIB // 256) + b"tail"
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.put(f"http://127.0.0.1:{reader}/", content=big)
        assert r.status_code == 200 and r.content == big and r.headers["x-pieces"] == "6"
        small = b"x" * 1000  # a body that fits comes whole in `body`; read() then returns nothing
        r = await http.put(f"http://127.0.0.1:{reader}/", content=small)
        assert r.status_code == 200 and r.content == small and r.headers["x-pieces"] == "0"
        r = await http.put(f"http://127.0.0.1:{plain}/echo", content=big)
        assert r.status_code == 413 and f"more than component 'httpapp' takes: {MAX_BYTES_PER_CALL}" in r.text
        r = await http.put(f"http://127.0.0.1:{plain}/echo", content=small)
        assert r.status_code == 200 and r.content == small

async def test_requests_through_the_lattice(front_path, lattice_client, httpapp):
    c, host_id = lattice_client
    await start_app(c, host_id, httpapp)
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    port = await route(c, "httpapp", "web", max_body_bytes=str(2 * MIB), timeout_ms="20000")

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        # status, headers, a binary body both ways
        body = bytes(range(256)) * 64
        r = await http.post("/echo?x=1", content=body, headers={"X-Custom": "yes", "Content-Type": "app/bin"})
        assert r.status_code == 200 and r.content == body
        assert (r.headers["x-method"], r.headers["x-path"], r.headers["x-echo-custom"]) == ("POST", "/echo?x=1", "yes")
        assert r.headers["content-type"] == "application/octet-stream"
        # large: bytes cross the Wasm boundary at ~2 µs each in wasmtime-py, so "large" is ~1 MiB here;
        # a response over NATS's 1 MiB default crosses in parts; this server's max_payload is 8 MiB anyway
        big = bytes(range(256)) * (256 * 1024 // 256)
        r = await http.put("/echo", content=big)
        assert r.status_code == 200 and r.content == big
        r = await http.get(f"/big/{MIB + 100_000}")
        assert r.status_code == 200 and len(r.content) == MIB + 100_000 and r.content[:12] == b"012345678901"
        # the component's own statuses pass through
        r = await http.get("/status/201")
        assert (r.status_code, r.text) == (201, "status 201")
        r = await http.get("/no/such/page")
        assert r.status_code == 404 and r.text == "no such page: /no/such/page"
        r = await http.get("/status/500")
        assert (r.status_code, r.text) == (500, "status 500")
        # a trap in the component: 502 with what it said in one line, the traceback only in the logs
        r = await http.get("/fail")
        assert r.status_code == 502 and "component 'httpapp' failed (trap): RuntimeError: asked to fail" in r.text
        assert "Traceback" not in r.text
        # over max_body_bytes: 413 without calling the component
        r = await http.post("/echo", content=b"x" * (2 * MIB + 1))
        assert r.status_code == 413 and "over the limit" in r.text
        # the component's config: none given to it
        assert (await http.get("/config/anything")).status_code == 404

    # keep-alive: many requests, one connection, one reused instance counting them
    conn = await Conn.open(port)
    counts = []
    for _ in range(5):
        await conn.send(get("/count"))
        resp = await conn.response()
        assert resp.status == 200 and resp.header("connection") is None
        counts.append(int(resp.body))
    assert counts == sorted(counts) and len(set(counts)) == 5
    await conn.send(post("/echo", b"last", extra="Connection: close\r\n"))
    assert (await conn.response()).body == b"last" and await conn.wait_closed()

    report = await health(c, host_id)
    assert report["healthy"] and f"listening on 127.0.0.1:{port} (1 route" in report["message"]


async def test_timeouts_and_nothing_serving(lattice_client, httpapp):
    c, host_id = lattice_client
    await start_app(c, host_id, httpapp)
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    slow = await route(c, "httpapp", "slow", timeout_ms="500")
    ghost = await route(c, "ghost", "ghost", instance_wait_ms="300")
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(f"http://127.0.0.1:{slow}/sleep/50")
        assert (r.status_code, r.text) == (200, "slept")
        r = await http.get(f"http://127.0.0.1:{slow}/sleep/3000")
        assert r.status_code == 504 and "did not answer within 500 ms" in r.text
        loop = asyncio.get_running_loop()
        began = loop.time()
        r = await http.get(f"http://127.0.0.1:{ghost}/")
        assert r.status_code == 503 and "no instance of component 'ghost' is running" in r.text
        assert loop.time() - began < 3


async def test_two_links_two_ports_and_deleting_one(lattice_client, httpapp):
    c, host_id = lattice_client
    await start_app(c, host_id, httpapp)
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    one = await route(c, "httpapp", "one")
    two = await route(c, "httpapp", "two", path="/echo")
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(f"http://127.0.0.1:{one}/status/203")).status_code == 203
        assert (await http.get(f"http://127.0.0.1:{two}/echo/x")).headers["x-path"] == "/echo/x"
        r = await http.get(f"http://127.0.0.1:{two}/status/203")  # outside the link's path
        assert r.status_code == 404 and "nothing is served at" in r.text
    assert len(await c.del_link("http-server", "trellis", "http", "one")) == 1
    await eventually(lambda: _closed(one), 10, what=f"port {one} to close")
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(f"http://127.0.0.1:{two}/echo")).status_code == 200
    report = await health(c, host_id)
    assert f"127.0.0.1:{two}" in report["message"] and f"127.0.0.1:{one}" not in report["message"]


async def _closed(port: int) -> bool:
    return not await port_open(port)


async def test_outgoing_requests_through_http_client(lattice_client, httpapp):
    c, host_id = lattice_client
    await start_app(c, host_id, httpapp)
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    await c.start_provider("builtin:http-client", "http-client", host_id=host_id)
    await c.put_config("client-limits", {"max_response_bytes": str(2 * MIB)})
    await c.put_link(Link(source_id="httpapp", target="http-client", wit_namespace="trellis", wit_package="http",
                          interfaces=["outgoing-handler"], target_config=["client-limits"]))
    port = await route(c, "httpapp", "web")

    def fetch(url: str, *, method: str = "GET", follow: bool = False, timeout_ms: int | None = None,
              **send: str) -> dict[str, str]:
        h = {"x-fetch-url": url, "x-fetch-method": method, "x-fetch-follow": "1" if follow else "0"}
        if timeout_ms is not None:
            h["x-fetch-timeout-ms"] = str(timeout_ms)
        return {**h, **{f"x-send-{k}": v for k, v in send.items()}}

    with LocalServer() as srv:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = await http.get("/fetch", headers=fetch(srv.url("/hello")))
            assert r.status_code == 200 and "x-fetch-error" not in r.headers, r.headers
            assert (r.headers["x-fetched-status"], r.headers["x-fetched-x-server"], r.text) == ("200", "local", "hello")
            body = bytes(range(256))
            r = await http.post("/fetch", content=body, headers=fetch(srv.url("/echo"), method="PUT", token="t1"))
            assert r.content == body and r.headers["x-fetched-x-method"] == "PUT"
            assert r.headers["x-fetched-x-echo-send-token"] == "t1"
            # redirects only when asked, and only so many
            r = await http.get("/fetch", headers=fetch(srv.url("/redirect/2")))
            assert r.headers["x-fetched-status"] == "302"
            r = await http.get("/fetch", headers=fetch(srv.url("/redirect/2"), follow=True))
            assert (r.headers["x-fetched-status"], r.text) == ("200", "hello")
            r = await http.get("/fetch", headers=fetch(srv.url("/redirect/12"), follow=True))
            assert "more than 10 redirects" in r.headers["x-fetch-error"]
            # errors are err(text), never a trap
            r = await http.get("/fetch", headers=fetch(srv.url("/slow"), timeout_ms=300))
            assert "timed out after 300 ms" in r.headers["x-fetch-error"]
            r = await http.get("/fetch", headers=fetch(srv.url(f"/big/{3 * MIB}")))
            assert "over the limit of 2097152" in r.headers["x-fetch-error"]
            r = await http.get("/fetch", headers=fetch("http://127.0.0.1:1/"))
            assert "ConnectError" in r.headers["x-fetch-error"]
            r = await http.get("/fetch", headers=fetch("ftp://127.0.0.1/x"))
            assert "ftp" in r.headers["x-fetch-error"]
            r = await http.get("/fetch", headers=fetch("not a url"))
            assert r.headers["x-fetch-error"]
    health_report = await health(c, host_id, "http-client")
    assert health_report["healthy"]
