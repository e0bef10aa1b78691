"""http-server's callbacks under the SDK's test environment: links and config become routes."""

from __future__ import annotations

from trellis.interfaces.links import Link
from trellis.providers.builtin.http_server import HttpServer, build
from trellis.providers.sdk.testing import ProviderEnvironment

from .helpers import Conn, FakeCaller, free_port, get


def web(target: str, name: str, config: str) -> Link:
    return Link(source_id="http-server", target=target, name=name, wit_namespace="trellis", wit_package="http",
                interfaces=["incoming-handler"], source_config=[config])


def environment(caller: FakeCaller, **own: str) -> tuple[HttpServer, ProviderEnvironment]:
    state = HttpServer(lambda info: caller)
    env = ProviderEnvironment(build(state), provider_id="http-server", config_names=("own",),
                              configs={"own": own})
    return state, env


async def test_links_and_config_become_routes():
    caller = FakeCaller()
    state, env = environment(caller, timeout_ms="1234")
    port = free_port()
    async with env:
        assert await env.health() == (True, "no listeners (no links)")
        await env.put_link(web("app", "web", "app-web"), {"address": f"127.0.0.1:{port}", "path": "/app"})
        ok, message = await env.health()
        assert ok and f"listening on 127.0.0.1:{port} (1 route" in message
        conn = await Conn.open(port)
        await conn.send(get("/app/x"))
        assert (await conn.response()).header("x-target") == b"app"
        assert caller.calls[-1]["link"] == "web" and caller.calls[-1]["timeout_s"] == 1.234  # the default applies
        # the provider's own config changes: the default follows
        await env.update_config("own", {"timeout_ms": "99"})
        await conn.send(get("/app"))
        await conn.response()
        assert caller.calls[-1]["timeout_s"] == 0.099
        # the link's config changes: the route moves
        await env.update_config("app-web", {"address": f"127.0.0.1:{port}", "path": "/other"})
        await conn.send(get("/app"))
        assert (await conn.response()).status == 404
        # a bad key refuses the link and says so; fixing it serves it again
        await env.update_config("app-web", {"adress": "127.0.0.1:1"})
        ok, message = await env.health()
        assert not ok and "unknown key 'adress'" in message
        await env.update_config("app-web", {"address": f"127.0.0.1:{port}"})
        assert (await env.health())[0]
        await env.delete_link(web("app", "web", "app-web"))
        assert await env.health() == (True, "no listeners (no links)")
        assert await conn.wait_closed()
    assert state.front is not None and state.front.status.value == "closed"


async def test_links_it_does_not_serve_are_ignored():
    caller = FakeCaller()
    _, env = environment(caller)
    async with env:
        wrong_way = Link(source_id="app", target="http-server", wit_namespace="trellis", wit_package="http",
                         interfaces=["outgoing-handler"], target_config=["x"])
        await env.put_link(wrong_way, {"address": f"127.0.0.1:{free_port()}"})
        assert await env.health() == (True, "no listeners (no links)")


async def test_a_bad_provider_config_is_unhealthy():
    _, env = environment(FakeCaller(), idle_timeout_ms="forever")
    async with env:
        ok, message = await env.health()
        assert not ok and "provider config: idle_timeout_ms='forever'" in message
