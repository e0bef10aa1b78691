"""A provider written here, run in-process on a real lattice and called with RpcClient."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from trellis.interfaces.control import CtlReply
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.links import Link
from trellis.interfaces.rpc_client import RpcClient, RpcError
from trellis.interfaces.rpc_server import RpcServer
from trellis.interfaces.store import LatticeStore
from trellis.providers.sdk import (
    Bootstrap,
    Provider,
    ProviderError,
    ProviderRuntime,
    ProviderStartError,
    nats_connection,
    provider_health,
    provider_ping,
)

from ..harness import eventually

API = "example:echo/api"


class Recorder:
    """What the provider under test saw; gates let a test hold a call in flight."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.nats_url: str | None = None


def make_provider(rec: Recorder) -> Provider:
    p = Provider("echo", imports=["example:notify/sink"])

    @p.export(API)
    async def echo(value, *, ctx, **kwargs):
        return {"value": value, "source": ctx.source, "link_name": ctx.link_name, "config": dict(ctx.config),
                "link": ctx.link.target if ctx.link else None, "trace": dict(ctx.trace),
                "invocation_id": ctx.invocation_id, "remaining": ctx.remaining_s(), "host": ctx.host_id,
                "attempt": ctx.attempt}

    @p.export(API)
    def add(a, b, *, ctx, **kwargs):  # sync: runs in a thread
        return {"sum": a + b, "host": ctx.host_id}

    @p.export(API)
    async def fail(code, **kwargs):
        raise ProviderError(code, f"failed: {code}")

    @p.export(API)
    async def crash(**kwargs):
        raise KeyError("oops")

    @p.export(API)
    async def hold(*, ctx, **kwargs):
        rec.entered.set()
        await rec.release.wait()
        return ctx.host_id

    @p.export(API)
    async def slow(seconds, **kwargs):
        await asyncio.sleep(seconds)
        return "done"

    @p.export(API)
    async def notify(target, *, ctx, **kwargs):
        return await ctx.call(target, "example:notify/sink.note", "from provider")

    @p.export(API)
    async def undeclared(target, *, ctx, **kwargs):
        return await ctx.call(target, "example:other/api.f")

    @p.export(API)
    def max_payload(**kwargs):  # the escape hatch for providers that speak NATS themselves
        return nats_connection().max_payload

    @p.on_start
    def started(*, info, **kwargs):
        rec.events.append(("start", info.host_id, dict(info.config)))
        rec.nats_url = info.nats.url if info.nats else None

    @p.on_link_put
    def link_put(link, config, **kwargs):
        rec.events.append(("put", link.source_id, link.target, config))

    @p.on_link_deleted
    async def link_deleted(link, **kwargs):
        rec.events.append(("deleted", link.source_id, link.target))

    @p.on_config_updated
    def config_updated(name, values, **kwargs):
        rec.events.append(("config", name, values))

    @p.health
    def health(*, info, **kwargs):
        return True, f"{len(info.links)} links"

    @p.on_shutdown
    def shutdown(grace_s, **kwargs):
        rec.events.append(("shutdown",))

    return p


def link(source="comp", target="echo", **kw) -> Link:
    return Link(source_id=source, target=target, wit_namespace="example", wit_package="echo",
                interfaces=["api"], **kw)


@pytest.fixture
async def nc(nats_server):
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


@pytest.fixture
def boot(nats_server, lattice):
    def make(host_id="host-a", **kw) -> Bootstrap:
        return Bootstrap(lattice=lattice, provider_id=kw.pop("provider_id", "echo"), host_id=host_id,
                         nats={"url": nats_server.url}, shutdown_grace_s=kw.pop("shutdown_grace_s", 2.0), **kw)
    return make


@pytest.fixture
async def client(nc, lattice):
    c = RpcClient(nc, lattice, source="comp")
    yield c
    await c.close()


async def test_calls_reach_sync_and_async_handlers_with_context(boot, client, nc, lattice):
    store = LatticeStore(nc, lattice)
    await store.put_config("echo-cfg", {"greeting": "hi"})
    await store.put_config("echo-more", {"greeting": "hello", "lang": "en"})
    await store.put_link(link(target_config=["echo-cfg", "echo-more"]))
    rec = Recorder()
    async with ProviderRuntime(make_provider(rec), boot(config={"mode": "x"})) as rt:
        r = await client.call("echo", f"{API}.echo", [7], timeout_s=5,
                              trace={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
        assert r["value"] == 7 and r["source"] == "comp" and r["link_name"] == "default" and r["link"] == "echo"
        assert r["config"] == {"greeting": "hello", "lang": "en"}  # merged in order, later wins
        assert r["trace"]["traceparent"].startswith("00-" + "a" * 32)
        assert len(r["invocation_id"]) == 32 and 0 < r["remaining"] <= 5 and r["host"] == "host-a"
        assert r["attempt"] == 1
        assert await client.call("echo", f"{API}.add", [2, 3], timeout_s=5) == {"sum": 5, "host": "host-a"}
        other = RpcClient(nc, lattice, source="stranger")
        try:  # a caller without a link still gets through; ctx.link tells the provider
            r = await other.call("echo", f"{API}.echo", [1], timeout_s=5)
            assert r["link"] is None and r["config"] == {}
        finally:
            await other.close()
        assert rt.info.config == {"mode": "x"}
        assert rec.nats_url == rt.bootstrap.nats.url
        assert await client.call("echo", f"{API}.max-payload", [], timeout_s=5) >= 1024 * 1024
    assert rec.events[0] == ("start", "host-a", {"mode": "x"})
    assert rec.events[-1] == ("shutdown",)


async def test_handler_errors_reach_the_caller_typed(boot, client):
    async with ProviderRuntime(make_provider(Recorder()), boot()):
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.fail", ["no-such-bucket"], timeout_s=5)
        assert (err.value.code, err.value.kind, err.value.message) == (
            ErrorCode.INVOCATION_FAILED, "no-such-bucket", "failed: no-such-bucket")
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.fail", ["not_found"], timeout_s=5)
        assert (err.value.code, err.value.kind) == (ErrorCode.NOT_FOUND, "not_found")
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.crash", [], timeout_s=5)
        assert err.value.code == ErrorCode.INTERNAL and "KeyError" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.add", [1], timeout_s=5)
        assert err.value.code == ErrorCode.BAD_REQUEST and "takes 2 arguments (a, b), got 1" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.missing", [], timeout_s=5)
        assert err.value.code == ErrorCode.UNKNOWN_OPERATION and "does not export" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.slow", [3], timeout_s=0.5)
        assert err.value.code == ErrorCode.TIMEOUT
        with pytest.raises(RpcError) as err:
            await client.call("echo", f"{API}.undeclared", ["comp"], timeout_s=5)
        assert "does not import example:other/api" in err.value.message


async def test_link_callbacks_fire_with_resolved_config(boot, nc, lattice, client):
    store = LatticeStore(nc, lattice)
    await store.put_config("cfg-a", {"k": "1"})
    first = await store.put_link(link(target_config=["cfg-a"]))
    rec = Recorder()
    # the host hands over current links and their configs in the bootstrap
    b = boot(links=[first], configs={"cfg-a": {"k": "1"}})
    async with ProviderRuntime(make_provider(rec), b) as rt:
        assert rec.events == [("start", "host-a", {}), ("put", "comp", "echo", {"k": "1"})]
        rec.events.clear()

        await store.put_link(link(source="comp2", target_config=["cfg-b"]))  # config not there yet
        await eventually(lambda: ("put", "comp2", "echo", {}) in rec.events, what="link put")
        await store.put_config("cfg-b", {"x": "y"})  # now it is: the link is put again with it
        await eventually(lambda: ("put", "comp2", "echo", {"x": "y"}) in rec.events, what="link put with config")
        await store.put_config("cfg-a", {"k": "2"})
        await eventually(lambda: ("put", "comp", "echo", {"k": "2"}) in rec.events, what="config change")
        assert ("config", "cfg-a", {"k": "2"}) in rec.events
        await store.put_link(link(source="comp3", target="someone-else"))  # not ours: ignored
        await store.put_link(Link(source_id="echo", target="comp", wit_namespace="example",
                                  wit_package="notify", interfaces=["sink"]))  # from us: ours too
        await eventually(lambda: ("put", "echo", "comp", {}) in rec.events, what="outgoing link put")
        assert not any(e[1] == "comp3" for e in rec.events)

        await store.delete_link("comp", "example", "echo")
        await eventually(lambda: ("deleted", "comp", "echo") in rec.events, what="link deleted")
        assert sorted(lk.source_id for lk in rt.info.links) == ["comp2", "echo"]
        r = await client.call("echo", f"{API}.echo", [1], timeout_s=5)
        assert r["link"] is None  # the call's link is gone


async def test_each_call_sees_the_links_and_config_of_the_moment(boot, nc, lattice, client):
    """The per-call link lookup is an index rebuilt on changes: a change shows in the very next call,
    whatever spelling of the interface (with a version) the caller uses."""
    store = LatticeStore(nc, lattice)
    await store.put_config("cfg-a", {"k": "1"})
    await store.put_link(link(target_config=["cfg-a"]))
    async with ProviderRuntime(make_provider(Recorder()), boot()) as rt:
        versioned = "example:echo/api@0.1.0.echo"
        for op in (f"{API}.echo", versioned):
            r = await client.call("echo", op, [1], timeout_s=5)
            assert (r["link"], r["config"]) == ("echo", {"k": "1"}), op
        await store.put_config("cfg-a", {"k": "2"})
        await eventually(lambda: [a.config for a in rt.state.applied.values()] == [{"k": "2"}],
                         what="the link applied again with the new config")
        r = await client.call("echo", versioned, [1], timeout_s=5)
        assert r["config"] == {"k": "2"}
        await store.put_link(link(name="other", target_config=[]))
        await eventually(lambda: len(rt.info.links) == 2, what="second link")
        other = await client.call("echo", f"{API}.echo", [1], timeout_s=5, link="other")
        assert (other["link"], other["link_name"], other["config"]) == ("echo", "other", {})
        await store.delete_link("comp", "example", "echo")
        await eventually(lambda: len(rt.info.links) == 1, what="link deleted")
        r = await client.call("echo", f"{API}.echo", [1], timeout_s=5)
        assert (r["link"], r["config"]) == (None, {})


async def test_deadlines_of_calls_in_flight_are_kept_by_one_timer(boot, client):
    """Calls with different deadlines at once: each times out at its own, the others are untouched."""
    async with ProviderRuntime(make_provider(Recorder()), boot()) as rt:
        async def slow(timeout_s: float, seconds: float) -> object:
            try:
                return await client.call("echo", f"{API}.slow", [seconds], timeout_s=timeout_s)
            except RpcError as exc:
                return exc.code

        results = await asyncio.gather(slow(0.6, 30), slow(0.3, 30), slow(5, 0.01), slow(0.9, 30), slow(5, 1.2))
        assert list(results) == [ErrorCode.TIMEOUT, ErrorCode.TIMEOUT, "done", ErrorCode.TIMEOUT, "done"]
        assert not rt._deadlines._calls  # nothing left behind
        assert await client.call("echo", f"{API}.add", [2, 2], timeout_s=5) == {"sum": 4, "host": "host-a"}


async def test_two_instances_share_load_and_fail_over(boot, nc, lattice, client):
    rec_a, rec_b = Recorder(), Recorder()
    a = await ProviderRuntime(make_provider(rec_a), boot("host-a")).start()
    b = await ProviderRuntime(make_provider(rec_b), boot("host-b")).start()
    try:
        served = [(await client.call("echo", f"{API}.add", [1, i], timeout_s=5))["host"] for i in range(40)]
        assert set(served) == {"host-a", "host-b"}

        # a call in flight on the instance that stops still completes (drain), new calls go to the other
        held = asyncio.create_task(client.call("echo", f"{API}.hold", [], timeout_s=10))
        await asyncio.wait_for(asyncio.wait([asyncio.create_task(rec_a.entered.wait()),
                                             asyncio.create_task(rec_b.entered.wait())],
                                            return_when=asyncio.FIRST_COMPLETED), 5)
        stopping, other = (a, b) if rec_a.entered.is_set() else (b, a)
        closing = asyncio.create_task(stopping.close(reason="test"))
        await eventually(lambda: stopping.server is not None and stopping.server._sub is None, what="unsubscribed")
        served_after = {(await client.call("echo", f"{API}.add", [1, 1], timeout_s=5))["host"] for _ in range(20)}
        assert served_after == {other.host_id}
        (rec_a if stopping is a else rec_b).release.set()
        assert await held == stopping.host_id
        await closing
    finally:
        await a.close()
        await b.close()


async def test_health_and_ping(boot, nc, lattice):
    async with ProviderRuntime(make_provider(Recorder()), boot("host-a")):
        msg = await nc.request(provider_health(lattice, "echo", "host-a"), b"", timeout=5)
        reply = CtlReply.model_validate_json(msg.data)
        assert reply.success and reply.response["healthy"] is True and reply.response["message"] == "0 links"
        assert reply.response["host_id"] == "host-a" and f"{API}.echo" in reply.response["exports"]
        assert reply.response["imports"] == ["example:notify/sink"]

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(provider_ping(lattice, "echo"), b"", reply=inbox)
        first = json.loads((await sub.next_msg(timeout=5)).data)
        assert first["response"]["provider_id"] == "echo"
        await sub.unsubscribe()


async def test_provider_calls_linked_component_with_the_callers_trace(boot, nc, lattice, client):
    seen: list[Invocation] = []

    async def component(inv: Invocation):
        seen.append(inv)
        return f"noted {inv.args[0]}"

    comp = RpcServer(nc, lattice, "listener", component)
    await comp.start()
    store = LatticeStore(nc, lattice)
    await store.put_link(Link(source_id="echo", target="listener", name="events", wit_namespace="example",
                              wit_package="notify", interfaces=["sink"]))
    try:
        async with ProviderRuntime(make_provider(Recorder()), boot()):
            trace = {"traceparent": "00-" + "c" * 32 + "-" + "d" * 16 + "-01"}
            assert await client.call("echo", f"{API}.notify", ["listener"], timeout_s=5, trace=trace) == \
                "noted from provider"
        inv = seen[0]
        assert inv.source == "echo" and inv.link == "events" and inv.operation == "example:notify/sink.note"
        assert inv.trace.get("traceparent", "").startswith("00-" + "c" * 32)  # same trace as the caller
    finally:
        await comp.stop()


async def test_on_start_failure_fails_the_start(boot):
    p = Provider("broken")

    @p.on_start
    def start(**kwargs):
        raise RuntimeError("no database")

    rt = ProviderRuntime(p, boot(provider_id="broken"))
    with pytest.raises(ProviderStartError, match="on_start failed"):
        await rt.start()
    assert rt.status.value == "closed"
    assert len(rt.tasks) == 0


async def test_provider_rides_out_a_nats_restart(fresh_nats, lattice):
    rec = Recorder()
    b = Bootstrap(lattice=lattice, provider_id="echo", host_id="host-a", nats={"url": fresh_nats.url},
                  shutdown_grace_s=1.0)
    async with ProviderRuntime(make_provider(rec), b):
        fresh_nats.stop()
        fresh_nats.start()
        nc = await nats.connect(fresh_nats.url)
        client = RpcClient(nc, lattice, source="comp")
        try:
            await LatticeStore(nc, lattice).put_link(link())
            await eventually(lambda: ("put", "comp", "echo", {}) in rec.events, timeout=10,
                             what="link put seen after the restart")
            r = await client.call("echo", f"{API}.echo", [1], timeout_s=10)
            assert r["link"] == "echo"
        finally:
            await client.close()
            await nc.close()
