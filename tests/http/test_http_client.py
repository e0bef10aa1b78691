"""builtin:http-client's handler, run by the SDK's test environment against a local server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from trellis.interfaces.links import Link
from trellis.providers.builtin.http_client import ConfigError, Settings, build
from trellis.providers.sdk.testing import ProviderEnvironment

from .helpers import LocalServer

SEND = "trellis:http/outgoing-handler.send"
LINK = Link(source_id="comp", target="http-client", wit_namespace="trellis", wit_package="http",
            interfaces=["outgoing-handler"], target_config=["client"])


@pytest.fixture
def srv() -> Iterator[LocalServer]:
    with LocalServer() as s:
        yield s


@pytest.fixture
async def env() -> AsyncIterator[ProviderEnvironment]:
    e = ProviderEnvironment(build(), provider_id="http-client", config={"timeout_ms": "5000"})
    async with e:
        await e.put_link(LINK, {})
        yield e


def request(url: str, method: str = "GET", headers: list | None = None, body: bytes = b"") -> dict:
    return {"method": method, "url": url, "headers": headers or [], "body": body}


async def send(env: ProviderEnvironment, req: dict, options: dict | None = None, **kw) -> dict:
    return await env.invoke(SEND, req, options, source="comp", **kw)


def test_settings():
    s = Settings.parse({"timeout_ms": "1_000", "allowed_hosts": "example.com, *.example.org"})
    assert s.timeout_ms == 1000 and s.max_redirects == 10
    assert s.allows("EXAMPLE.com") and s.allows("a.example.org") and not s.allows("example.org.evil.com")
    assert Settings.parse({}).allows("anything")
    with pytest.raises(ConfigError, match="unknown config key"):
        Settings.parse({"timeout": "1"})
    with pytest.raises(ConfigError, match="whole number"):
        Settings.parse({"max_redirects": "many"})


async def test_a_request_and_its_response(env, srv):
    result = await send(env, request(srv.url("/echo"), "POST", [["x-one", b"1"], ["content-length", b"999"]],
                                     bytes(range(256))))
    resp = result["ok"]
    assert resp["status"] == 200 and resp["body"] == bytes(range(256))
    headers = dict((k, v) for k, v in resp["headers"])
    assert headers["x-method"] == b"POST" and headers["x-echo-one"] == b"1"
    method, path, sent, body = srv.seen[-1]
    assert sent["content-length"] == "256" and "accept-encoding" not in sent  # bodies travel as received
    assert sent["user-agent"].startswith("trellis-http-client/")


async def test_redirects_are_followed_only_when_asked(env, srv):
    assert (await send(env, request(srv.url("/redirect/1"))))["ok"]["status"] == 302
    follow = {"timeout-ms": None, "follow-redirects": True}
    ok = (await send(env, request(srv.url("/redirect/3")), follow))["ok"]
    assert (ok["status"], ok["body"]) == (200, b"hello")
    # 303: the next request is a GET without the body
    ok = (await send(env, request(srv.url("/see-other"), "POST", body=b"data"), follow))["ok"]
    assert dict(ok["headers"])["x-method"] == b"GET" and ok["body"] == b""
    err = (await send(env, request(srv.url("/redirect/11")), follow))["err"]
    assert "more than 10 redirects" in err


async def test_limits_and_refusals_are_errs(env, srv):
    await env.update_config("client", {"max_response_bytes": "100", "allowed_hosts": "127.0.0.1",
                                       "max_redirects": "1"})
    assert (await send(env, request(srv.url("/big/100"))))["ok"]["body"] == b"b" * 100
    assert "101 bytes, over the limit of 100" in (await send(env, request(srv.url("/big/101"))))["err"]
    assert "'localhost' is not allowed" in (await send(env, request(srv.url("/hello").replace("127.0.0.1",
                                                                                              "localhost"))))["err"]
    follow = {"timeout-ms": None, "follow-redirects": True}
    assert "more than 1 redirects" in (await send(env, request(srv.url("/redirect/2")), follow))["err"]
    assert "unsupported scheme 'file'" in (await send(env, request("file:///etc/passwd")))["err"]
    assert "invalid URL" in (await send(env, request("http://[::1")))["err"]
    await env.update_config("client", {"timeout_ms": "bogus"})
    assert "misconfigured" in (await send(env, request(srv.url("/hello"))))["err"]


async def test_timeouts_are_errs_and_never_outlive_the_caller(env, srv):
    err = (await send(env, request(srv.url("/slow")), {"timeout-ms": 200, "follow-redirects": False}))["err"]
    assert err == "timed out after 200 ms"
    # no option: the provider's 5 s, but the caller's deadline (0.5 s) comes first, and still an err
    err = (await send(env, request(srv.url("/slow")), None, timeout_s=0.5))["err"]
    assert err.startswith("timed out after 4")  # 500 ms less the margin kept for the reply


async def test_no_cookies_are_kept_between_requests(env, srv):
    await send(env, request(srv.url("/set-cookie")))
    await send(env, request(srv.url("/hello"), headers=[["cookie", b"mine=1"]]))
    await send(env, request(srv.url("/hello")))
    assert srv.seen[-2][2].get("cookie") == "mine=1" and "cookie" not in srv.seen[-1][2]
