"""Connection handoff: http-server hands connections to the host's worker serving the routed component,
which answers them in process; route changes, closing, a busy worker and a component elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from trellis.interfaces.client import LatticeClient

from ..harness import HostFactory, eventually
from ..local_calls.test_colocated import stats
from .helpers import Conn, get
from .test_lattice import big_nats, health, route, start_app, web_link  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
async def hosts(big_nats, lattice, tmp_path):  # noqa: F811 (pytest fixtures imported by name)
    factory = HostFactory(big_nats.url, lattice, tmp_path)
    yield factory
    await factory.close()


def _client(hosts: HostFactory) -> LatticeClient:
    return LatticeClient(hosts.nats_url, hosts.lattice)


async def _front(c: LatticeClient, host_id: str, httpapp, name: str = "web") -> int:
    """httpapp and http-server on one host, linked on a fresh port: the port."""
    await start_app(c, host_id, httpapp)
    await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
    return await route(c, "httpapp", name)


async def _handed(h, port: int, path: str, status: int, host: str = "localhost") -> Conn:
    """A connection whose first request (``path``, answered ``status``) the worker answered."""
    conn = await Conn.open(port)
    await conn.send(get(path, host=host))
    assert (await conn.response()).status == status
    assert (await stats(h, "httpapp"))["handoff"]["served"] == 1
    return conn


@pytest.mark.parametrize("on", [True, False], ids=["handoff", "TRELLIS_HTTP_HANDOFF=0"])
async def test_a_worker_answers_the_connections_it_is_handed(hosts, httpapp, monkeypatch, on):
    monkeypatch.setenv("TRELLIS_HTTP_HANDOFF", "1" if on else "0")
    h = await hosts.start(workers=2)
    async with _client(hosts) as c:
        port = await _front(c, h.id, httpapp)
        conns = [await Conn.open(port) for _ in range(4)]
        for _ in range(5):
            for i, conn in enumerate(conns):
                await conn.send(get(f"/status/{200 + i}"))
        for i, conn in enumerate(conns):
            assert [r.status for r in await conn.responses(5)] == [200 + i] * 5
        counted = (await stats(h, "httpapp"))["handoff"]
        report = await health(c, h.id)
    if on:
        # port_open's probe connection is handed too, but asks nothing
        assert counted == {"served": 20, "failed": 0, "remote": 0}
        assert "connections handed to workers (2/2 reachable)" in report["message"]
    else:
        assert counted == {"served": 0, "failed": 0, "remote": 0}
        assert "0 connections handed to workers (0/2 reachable)" in report["message"]


async def test_route_changes_and_closing_reach_handed_connections(hosts, httpapp):
    h = await hosts.start(workers=1)
    async with _client(hosts) as c:
        port = await _front(c, h.id, httpapp, "one")
        conn = await _handed(h, port, "/status/203", 203, host="example.com")
        # a second link on the same address, for one Host, to a component nothing serves:
        # the connection already in the worker routes by the new table
        await c.put_config("http-ghost", {"address": f"127.0.0.1:{port}", "host": "example.com",
                                          "instance_wait_ms": "200"})
        await c.put_link(web_link("ghost", "ghost", "http-ghost"))

        async def ghost_routed() -> bool:
            await conn.send(get("/", host="example.com"))
            return (await conn.response()).status == 503

        await eventually(ghost_routed, 10, what="the handed connection to route by the new table")
        await conn.send(get("/status/203", host="other.example"))
        assert (await conn.response()).status == 203
        # the listener closes: the worker closes the connection it was handed
        await c.del_link("http-server", "trellis", "http", "ghost")
        await c.del_link("http-server", "trellis", "http", "one")
        assert await conn.wait_closed(10)


async def test_stopping_the_provider_closes_handed_connections(hosts, httpapp):
    h = await hosts.start(workers=1)
    async with _client(hosts) as c:
        port = await _front(c, h.id, httpapp)
        conn = await _handed(h, port, "/count", 200)
        await c.stop_provider("http-server", host_id=h.id)
        assert await conn.wait_closed(15)


async def test_a_busy_worker_sends_the_request_over_nats(hosts, httpapp):
    h = await hosts.start(workers=1)
    async with _client(hosts) as c:
        await c.start_component(str(httpapp), "httpapp", host_id=h.id, max_instances=1)
        await c.start_provider("builtin:http-server", "http-server", host_id=h.id)
        port = await route(c, "httpapp", "web", timeout_ms="20000")
        first, second = await Conn.open(port), await Conn.open(port)
        await first.send(get("/sleep/700"))

        async def slot_taken() -> bool:
            return any(w.get("httpapp", {}).get("slots_in_use") for w in await h.components.pool.stats())

        await eventually(slot_taken, 10, what="the first request to hold the only slot")
        await second.send(get("/status/201"))
        # the worker has no free slot: the request queues at the component's RPC server instead
        assert (await second.response()).status == 201
        assert (await first.response()).status == 200
        counted = (await stats(h, "httpapp"))["handoff"]
    assert counted == {"served": 1, "failed": 0, "remote": 1}


async def test_with_a_bound_per_worker_a_request_waits_in_line_there(hosts, httpapp, monkeypatch):
    """TRELLIS_HTTP_ACTIVE_MAX=1: a second request waits for the first on its worker, though the component
    has a free slot (fewer instances alive under load), and is answered there, not over NATS."""
    monkeypatch.setenv("TRELLIS_HTTP_ACTIVE_MAX", "1")
    h = await hosts.start(workers=1)
    async with _client(hosts) as c:
        await c.start_component(str(httpapp), "httpapp", host_id=h.id, max_instances=2)
        await c.start_provider("builtin:http-server", "http-server", host_id=h.id)
        port = await route(c, "httpapp", "web", timeout_ms="20000")
        first, second = await Conn.open(port), await Conn.open(port)
        await first.send(get("/sleep/700"))

        async def in_use() -> int:
            return sum(w.get("httpapp", {}).get("slots_in_use", 0) for w in await h.components.pool.stats())

        await eventually(lambda: in_use(), 10, what="the first request to take a slot")
        await second.send(get("/status/201"))
        answers = [asyncio.ensure_future(first.response()), asyncio.ensure_future(second.response())]
        done, _ = await asyncio.wait(answers, return_when=asyncio.FIRST_COMPLETED)
        assert answers[0] in done  # the quick one waited for the sleeping one (without the bound: first)
        assert [(await a).status for a in answers] == [200, 201]
        counted = (await stats(h, "httpapp"))["handoff"]
    assert counted == {"served": 2, "failed": 0, "remote": 0}


async def test_a_component_on_another_host_is_reached_over_nats(hosts, httpapp):
    front = await hosts.start(workers=1)
    back = await hosts.start(workers=1)
    async with _client(hosts) as c:
        await start_app(c, back.id, httpapp)
        await c.start_provider("builtin:http-server", "http-server", host_id=front.id)
        port = await route(c, "httpapp", "web")
        conn = await Conn.open(port)
        for _ in range(3):
            await conn.send(get("/status/202"))
            assert (await conn.response()).status == 202
        assert (await stats(back, "httpapp"))["handoff"] == {"served": 0, "failed": 0, "remote": 0}
        assert "0 connections handed" in (await health(c, front.id))["message"]


async def test_a_dead_worker_takes_only_its_own_connections(hosts, httpapp):
    h = await hosts.start(workers=2)
    async with _client(hosts) as c:
        port = await _front(c, h.id, httpapp)
        conns = [await Conn.open(port) for _ in range(2)]  # one per worker: they take turns
        for conn in conns:
            await conn.send(get("/status/200"))
            assert (await conn.response()).status == 200
        per_worker = [w["httpapp"]["handoff"]["served"] for w in await h.components.pool.stats()]
        assert per_worker == [1, 1]
        dead = h.components.pool.workers[0].proc
        dead.kill()
        await dead.wait()
        # one of the two connections dies with its worker; the other keeps being answered
        alive = []
        for conn in conns:
            try:
                await conn.send(get("/status/201"))
                alive.append((await conn.response()).status)
            except (AssertionError, ConnectionError):
                pass
        assert alive == [201]
        # a new connection is answered (by the surviving worker, or by the restarted one)
        fresh = await Conn.open(port)
        await fresh.send(get("/status/202"))
        assert (await fresh.response()).status == 202
