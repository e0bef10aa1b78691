"""ProviderEnvironment: a provider's handlers and callbacks tested without NATS."""

from __future__ import annotations

import asyncio
import threading

import nats
import pytest

from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.providers.sdk import Link, Provider, ProviderError, context, nats_connection
from trellis.providers.sdk.testing import OutgoingCall, ProviderEnvironment


@pytest.fixture(autouse=True)
def no_nats(monkeypatch):
    async def refuse(*a, **kw):
        raise AssertionError("the test environment must not connect to NATS")

    monkeypatch.setattr(nats, "connect", refuse)
    monkeypatch.setattr("trellis.interfaces.connection.connect", refuse)


def make_provider(events: list) -> Provider:
    p = Provider("echo", imports=["example:notify/sink"])

    @p.export("example:echo/api")
    async def echo(value, *, ctx, **kwargs):
        assert context() is ctx
        return {"value": value, "source": ctx.source, "link": ctx.link_name, "config": dict(ctx.config),
                "trace": dict(ctx.trace), "has_link": ctx.link is not None}

    @p.export("example:echo/api")
    def thread_name(**kwargs):  # sync handlers run in a worker thread, context still visible
        return [threading.current_thread() is not threading.main_thread(), context().function]

    @p.export("example:echo/api")
    async def fail(code, **kwargs):
        raise ProviderError(code, f"failed with {code}")

    @p.export("example:echo/api")
    async def slow(seconds, **kwargs):
        await asyncio.sleep(seconds)

    @p.export("example:echo/api")
    async def unencodable(**kwargs):
        return object()

    @p.export("example:echo/api")
    async def forward(target, *, ctx, **kwargs):
        return await ctx.call(target, "example:notify/sink.note", "hello")

    @p.on_start
    def started(*, info, **kwargs):
        assert info.nats is None and nats_connection() is None  # no lattice here
        events.append(("start", info.provider_id, dict(info.config)))

    @p.on_link_put
    async def link_put(link, config, *, info, **kwargs):
        events.append(("put", link.source_id, config))
        if link.source_id == info.provider_id:  # a link from us: greet the component (outgoing call)
            await p.call(link, "example:notify/sink.note", "linked")

    @p.on_link_deleted
    def link_deleted(link, **kwargs):
        events.append(("deleted", link.source_id))

    @p.on_config_updated
    def config_updated(name, values, **kwargs):
        events.append(("config", name, values))

    @p.health
    def health(*, info, **kwargs):
        return len(info.links) < 2, f"{len(info.links)} links"

    @p.on_shutdown
    def shutdown(grace_s, **kwargs):
        events.append(("shutdown", grace_s))

    return p


LINK = Link(source_id="comp", target="echo", wit_namespace="example", wit_package="echo", interfaces=["api"],
            target_config=["echo-cfg"])


async def test_handlers_get_their_context():
    events: list = []
    env = ProviderEnvironment(make_provider(events), config={"mode": "test"})
    async with env:
        assert events == [("start", "echo", {"mode": "test"})]
        r = await env.invoke("example:echo/api.echo", 5, source="comp-x", link_name="other",
                             trace={"traceparent": "00-abc-def-01"})
        assert r == {"value": 5, "source": "comp-x", "link": "other", "config": {},
                     "trace": {"traceparent": "00-abc-def-01"}, "has_link": False}
        assert await env.invoke("example:echo/api.thread-name") == [True, "thread-name"]
    assert events[-1] == ("shutdown", 1.0)


async def test_errors_are_raised_as_on_the_lattice():
    env = ProviderEnvironment(make_provider([]))
    with pytest.raises(ProviderError) as err:
        await env.invoke("example:echo/api.fail", "no-such-key")
    assert err.value.code == "no-such-key" and err.value.message == "failed with no-such-key"
    with pytest.raises(ProviderError) as err:
        await env.invoke("example:echo/api.echo")
    assert err.value.code == ErrorCode.BAD_REQUEST and "takes 1 argument (value), got 0" in err.value.message
    with pytest.raises(ProviderError) as err:
        await env.invoke("example:echo/api.nope")
    assert err.value.code == ErrorCode.UNKNOWN_OPERATION and "exports example:echo/api.echo" in err.value.message
    with pytest.raises(ProviderError) as err:
        await env.invoke("example:echo/api.slow", 5, timeout_s=0.1)
    assert err.value.code == ErrorCode.TIMEOUT
    with pytest.raises(TypeError, match="cannot travel back to the caller"):
        await env.invoke("example:echo/api.unencodable")


async def test_link_and_config_callbacks_with_resolved_config():
    events: list = []
    env = ProviderEnvironment(make_provider(events))
    await env.put_link(LINK, {"greeting": "hi"})
    assert events == [("put", "comp", {"greeting": "hi"})]
    r = await env.invoke("example:echo/api.echo", 1, source="comp")
    assert r["config"] == {"greeting": "hi"} and r["has_link"] is True

    await env.update_config("echo-cfg", {"greeting": "hello"})
    assert events[-2:] == [("config", "echo-cfg", {"greeting": "hello"}), ("put", "comp", {"greeting": "hello"})]
    await env.update_config("unrelated", {"x": "y"})  # no callback: not this provider's config
    assert len(events) == 3

    await env.delete_link(LINK)
    assert events[-1] == ("deleted", "comp")
    with pytest.raises(ValueError, match="does not involve provider echo"):
        await env.put_link(LINK.model_copy(update={"target": "someone-else"}))


async def test_outgoing_calls_are_recorded_and_answered():
    env = ProviderEnvironment(make_provider([]))
    with pytest.raises(RpcError, match="nobody serves 'comp'"):
        await env.invoke("example:echo/api.forward", "comp")

    @env.on_call
    async def answer(call: OutgoingCall):
        return f"{call.target} got {call.args[0]}"

    assert await env.invoke("example:echo/api.forward", "comp") == "comp got hello"
    out_link = Link(source_id="echo", target="listener", wit_namespace="example", wit_package="notify",
                    interfaces=["sink"], name="events")
    await env.put_link(out_link)  # on_link_put calls provider.call(link, ...)
    assert [(c.target, c.operation, c.args, c.link_name) for c in env.calls][-1] == (
        "listener", "example:notify/sink.note", ["linked"], "events")


async def test_health_reflects_the_callback():
    env = ProviderEnvironment(make_provider([]))
    assert await env.health() == (True, "0 links")
    await env.put_link(LINK)
    await env.put_link(LINK.model_copy(update={"source_id": "comp2"}))
    assert await env.health() == (False, "2 links")

    bare = ProviderEnvironment(Provider("bare"))
    assert await bare.health() == (True, "ok")
