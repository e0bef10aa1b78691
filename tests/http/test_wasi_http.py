"""Unmodified `wasi:http` proxy components on Trellis (issue 14, part 1).

The `wasihttp` test component (tests/components/python/wasihttp: componentize-py against the
wasi:http@0.2.0 WIT spin-sdk ships, nothing Trellis-specific) behind builtin:http-server on a
real host: linked as wadm manifests link wasmCloud components (`wasi:http/incoming-handler`),
served through the host's own wasi:http/types (host/runtime/wasi_http), its outgoing requests
through builtin:http-client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.components.build import build_python
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link

from ..harness import eventually
from .helpers import LocalServer, free_port
from .test_lattice import big_nats, front_path, lattice_client, port_open, start_app  # noqa: F401 (pytest fixtures imported by name)

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def wasihttp() -> Path:
    return build_python("wasihttp")


async def wasi_route(c: LatticeClient, target: str, name: str, **config: str) -> int:
    """Link http-server to ``target`` for wasi:http/incoming-handler on a fresh port."""
    port = free_port()
    await c.put_config(f"http-{name}", {"address": f"127.0.0.1:{port}", **config})
    await c.put_link(Link(source_id="http-server", target=target, name=name, wit_namespace="wasi",
                          wit_package="http", interfaces=["incoming-handler"], source_config=[f"http-{name}"]))
    await eventually(lambda: port_open(port), 15, what=f"a listener on port {port}")
    return port


async def test_a_wasi_http_component_serves_requests(front_path, lattice_client, wasihttp):  # noqa: F811 (fixtures)
    c, host_id = lattice_client
    await start_app(c, host_id, wasihttp, "wasihttp")
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    port = await wasi_route(c, "wasihttp", "web", max_body_bytes=str(8 * MIB))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        # method, path and query, headers (repeated ones in order)
        r = await http.get("/hello?name=a%20b&x=1", headers=[("x-test", "one"), ("x-test", "two")])
        assert r.status_code == 200, r.text
        assert r.text == "GET /hello?name=a%20b&x=1 x-test=one,two"
        assert r.headers.get_list("x-echo") == ["one", "two"] and r.headers["content-type"] == "text/plain"
        r = await http.request("PATCH", "/hello")
        assert r.text.startswith("PATCH /hello")
        # bodies streamed both ways, past what one call carries into Wasm (~2.6 MB)
        big = bytes(range(256)) * (5 * MIB // 256) + b"tail"
        r = await http.post("/echo?x=1", content=big, headers={"content-type": "app/bin"})
        assert r.status_code == 200 and r.content == big, r.text[:300]
        assert r.headers["content-type"] == "app/bin" and r.headers["x-body-bytes"] == str(len(big))
        r = await http.get(f"/big?n={6 * MIB + 7}")
        assert r.status_code == 200 and len(r.content) == 6 * MIB + 7
        assert r.content[:300] == (bytes(range(256)) * 2)[:300]
        # the component's statuses pass through
        for status in (201, 404, 418, 503):
            r = await http.get(f"/status/{status}")
            assert r.status_code == status and r.text == "status"
        # a trap, and a handler that never sets its response-outparam: 500, not a hung connection
        r = await http.get("/trap")
        assert r.status_code == 500 and "the component failed (trap)" in r.text
        assert "on purpose" not in r.text  # details go to the log, not to the client
        r = await http.get("/drop")
        assert r.status_code == 500 and "response-outparam not set" in r.text
        # and the component keeps serving; wasi:logging goes to the host's log (no link needed)
        r = await http.get("/log")
        assert (r.status_code, r.text) == (200, "logged")
        r = await http.get("/hello")
        assert r.status_code == 200


async def test_outgoing_requests_and_keyvalue_through_links(lattice_client, wasihttp):  # noqa: F811 (fixture)
    """wasi:http/outgoing-handler goes through builtin:http-client (failures as error-code cases),
    and the same component's wasi:keyvalue import through builtin:keyvalue-nats, both linked."""
    c, host_id = lattice_client
    await start_app(c, host_id, wasihttp, "wasihttp")
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    port = await wasi_route(c, "wasihttp", "web")
    with LocalServer() as srv:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            # no link for wasi:http/outgoing-handler: no egress (HTTP-request-denied), not a trap
            r = await http.get("/fetch", params={"url": srv.url("/hello")})
            assert (r.status_code, r.text) == (502, "error-code: ErrorCode_HttpRequestDenied")
            await c.start_provider("builtin:http-client", "http-client", host_id=host_id)
            await c.put_link(Link(source_id="wasihttp", target="http-client", wit_namespace="wasi",
                                  wit_package="http", interfaces=["outgoing-handler"]))
            r = await http.get("/fetch", params={"url": srv.url("/hello")})
            assert r.status_code == 200 and r.text == "hello"
            assert r.headers["x-upstream-x-server"] == "local"
            body = bytes(range(256)) * 4096  # 1 MiB streamed out and back
            r = await http.post("/fetch", params={"url": srv.url("/echo")}, content=body,
                                headers={"content-type": "app/x"})
            assert r.status_code == 200 and r.content == body and r.headers["x-upstream-x-method"] == "POST"
            assert srv.seen[-1][0] == "POST" and srv.seen[-1][2]["content-type"] == "app/x"
            r = await http.get("/fetch", params={"url": srv.url("/status/404")})
            assert r.status_code == 404
            # failures are error-code cases
            closed = free_port()
            r = await http.get("/fetch", params={"url": f"http://127.0.0.1:{closed}/"})
            assert (r.status_code, r.text) == (502, "error-code: ErrorCode_ConnectionRefused")
            r = await http.get("/fetch", params={"url": srv.url("/slow"), "timeout_ms": "300"})  # answers in 3 s
            assert (r.status_code, r.text) == (502, "error-code: ErrorCode_ConnectionReadTimeout")
            # wasi:keyvalue through its link, as for a trellis:http component
            r = await http.get("/kv/greeting")
            assert r.status_code == 500 and "missing_link" in r.text  # no link yet: a trap, answered 500
            await c.start_provider("builtin:keyvalue-nats", "kv", host_id=host_id)
            await c.put_link(Link(source_id="wasihttp", target="kv", wit_namespace="wasi", wit_package="keyvalue",
                                  interfaces=["store"]))
            r = await http.put("/kv/greeting", content=b"hello from wasi:http")
            assert r.status_code == 204, r.text
            r = await http.get("/kv/greeting")
            assert (r.status_code, r.content) == (200, b"hello from wasi:http")
            assert (await http.get("/kv/nothing")).status_code == 404
    # a streamed upload longer than the route's timeout, then a call to a link: the calls a
    # handler makes are not cut by the route's timeout once its body has moved past it
    slow = await wasi_route(c, "wasihttp", "slow", timeout_ms="800")

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 1000
            await asyncio.sleep(0.25)  # a slow client's pace (2 s in all), not a synchronisation
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{slow}", timeout=60) as http:
        r = await http.put("/kv/slow", content=trickle())
        assert r.status_code == 204, r.text
        assert (await http.get("/kv/slow")).content == b"x" * 8000
