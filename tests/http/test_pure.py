"""The HTTP front's pure parts: config keys, routing and the listener plan, the wire mapping."""

from __future__ import annotations

import pytest

from trellis.httpfront import wire
from trellis.httpfront.config import RouteConfigError, parse_address, parse_route, parse_server
from trellis.httpfront.routes import RouteTable, normalize_host, plan
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

from .helpers import route

# --- config ----------------------------------------------------------------------------


def test_route_defaults_and_units():
    r = parse_route({})
    assert r.address == ("127.0.0.1", 8000)
    assert (r.host, r.path, r.timeout_ms, r.max_body_bytes, r.instance_wait_ms) == \
        (None, "/", 30_000, MAX_BYTES_PER_CALL, 2000)
    r = parse_route({"address": "0.0.0.0:8080", "host": "API.Example.com", "path": "/api/", "timeout_ms": "1_500",
                     "max_body_bytes": "1024", "instance_wait_ms": "0"})
    assert r.address == ("0.0.0.0", 8080) and r.host == "api.example.com" and r.path == "/api"
    assert (r.timeout_ms, r.max_body_bytes, r.instance_wait_ms) == (1500, 1024, 0)


def test_provider_config_gives_defaults_and_the_link_wins():
    r = parse_route({"path": "/x"}, defaults={"address": "127.0.0.1:9000", "timeout_ms": "5", "idle_timeout_ms": "1"})
    assert r.address == ("127.0.0.1", 9000) and r.timeout_ms == 5 and r.path == "/x"
    assert parse_route({"timeout_ms": "7"}, defaults={"timeout_ms": "5"}).timeout_ms == 7
    s = parse_server({"idle_timeout_ms": "100", "read_timeout_ms": "200", "max_header_bytes": "4096", "path": "/"})
    assert (s.idle_timeout_ms, s.read_timeout_ms, s.max_header_bytes) == (100, 200, 4096)


@pytest.mark.parametrize("config, says", [
    ({"adress": "127.0.0.1:1"}, "unknown key 'adress'"),
    ({"idle_timeout_ms": "5"}, "unknown key 'idle_timeout_ms' in the link's config"),
    ({"address": "8080"}, "expected HOST:PORT"),
    ({"address": "127.0.0.1:http"}, "not a number"),
    ({"address": "127.0.0.1:70000"}, "1-65535"),
    ({"address": "::1:80"}, "brackets"),
    ({"address": "[nope]:80"}, "not an IPv6 address"),
    ({"timeout_ms": "soon"}, "timeout_ms='soon': expected a whole number"),
    ({"timeout_ms": "0"}, "between 1 and"),
    ({"max_body_bytes": "-1"}, "max_body_bytes"),
    ({"host": "exa mple.com"}, "host="),
    ({"path": "api"}, "starting with '/'"),
])
def test_bad_config_names_the_key(config, says):
    with pytest.raises(RouteConfigError) as err:
        parse_route(config)
    assert says in str(err.value)


def test_addresses():
    assert parse_address("[::1]:8080") == ("::1", 8080)
    assert parse_address(" localhost:1 ") == ("localhost", 1)
    with pytest.raises(RouteConfigError):
        parse_server({"bogus": "1"})


# --- routing ---------------------------------------------------------------------------


def test_one_plain_route_matches_everything():
    only = route()
    table = RouteTable([only])
    assert table.match(None, "/") is only and table.match(b"any:1", "/x/y") is only


def test_host_beats_any_host_and_longest_path_wins():
    api = route("api", "a", host="example.com", path="/api")
    site = route("site", "b", host="example.com")
    wild = route("wild", "c", host="*.example.com")
    fallback = route("fallback", "d")
    deep = route("deep", "e", path="/api/v2")
    table = RouteTable([fallback, site, api, wild, deep])
    assert table.match(b"Example.COM:8080", "/api") is api
    assert table.match(b"example.com", "/api/users") is api
    assert table.match(b"example.com", "/apix") is site
    assert table.match(b"example.com", "/") is site
    assert table.match(b"www.example.com", "/api") is wild
    assert table.match(b"example.org", "/api/v2/x") is deep
    assert table.match(b"example.org", "/api/v1") is fallback
    assert table.match(None, "/") is fallback
    assert RouteTable([api]).match(b"other.com", "/api") is None
    assert RouteTable([deep]).match(b"h", "/api") is None


def test_normalize_host():
    assert normalize_host(b"[::1]:8080") == "::1"
    assert normalize_host(b"Example.com") == "example.com"
    assert normalize_host(None) == ""


def test_plan_groups_by_address_and_refuses_the_same_slot_twice():
    a = route("a", "l1", address="127.0.0.1:1001")
    b = route("b", "l2", address="127.0.0.1:1002")
    c = route("c", "l3", address="127.0.0.1:1001", path="/c")
    dup = route("d", "l4", address="127.0.0.1:1001")
    p = plan([dup, c, b, a], {("bad",): "bad config: x"})
    assert set(p.listeners) == {("127.0.0.1", 1001), ("127.0.0.1", 1002)}
    assert len(p.listeners[("127.0.0.1", 1001)]) == 2
    assert list(p.refused) == [("bad",), dup.key]  # l1 sorts before l4: the same winner every time
    assert "already served by the link to a" in p.refused[dup.key]
    assert plan([a, dup]).refused.keys() == plan([dup, a]).refused.keys()


# --- wire ------------------------------------------------------------------------------


def test_origin_form():
    assert wire.origin_form(b"/a/b?c=1") == ("/a/b?c=1", "/a/b")
    assert wire.origin_form(b"http://h:8/p?q") == ("/p?q", "/p")
    assert wire.origin_form(b"http://h?q") == ("/?q", "/")
    assert wire.origin_form(b"*") == ("*", "*")
    with pytest.raises(ValueError):
        wire.origin_form(b"h:443")


def _head(response, **kw):
    opts = {"head_only": False, "keep_alive": True, "http10": False, "date": wire.DateHeader(), **kw}
    return wire.response_head(response, **opts)


def test_response_head_frames_the_body_and_drops_hop_by_hop_headers():
    head, body, keep = _head({"status": 201, "headers": [["X-A", b"1"], ["content-length", b"999"],
                                                          ["transfer-encoding", b"chunked"]], "body": b"hey"})
    assert head.startswith(b"HTTP/1.1 201 Created\r\nx-a: 1\r\ndate: ")
    assert b"content-length: 3\r\n" in head and b"999" not in head and b"chunked" not in head
    assert body == b"hey" and keep
    head, body, keep = _head({"status": 200, "headers": [["connection", b"Close"]], "body": b"x"})
    assert not keep and head.endswith(b"connection: close\r\n\r\n")
    head, body, _ = _head({"status": 200, "headers": [], "body": b"abc"}, head_only=True)
    assert body == b"" and b"content-length: 3" in head
    head, body, _ = _head({"status": 204, "headers": [], "body": b"ignored"})
    assert body == b"" and b"content-length" not in head
    head, _, _ = _head({"status": 200, "headers": [], "body": b""}, http10=True)
    assert b"connection: keep-alive" in head
    head, _, _ = _head({"status": 200, "headers": [["date", b"yesterday"]], "body": b""})
    assert head.count(b"date:") == 1 and b"date: yesterday" in head


@pytest.mark.parametrize("response, says", [
    ({"status": 101, "headers": [], "body": b""}, "not a final status"),
    ({"status": 600, "headers": [], "body": b""}, "not a final status"),
    ({"status": 200, "headers": [["x", b"a\r\nset-cookie: evil"]], "body": b""}, "CR, LF or NUL"),
    ({"status": 200, "headers": [["bad name", b"v"]], "body": b""}, "not a valid token"),
    ({"status": 200, "headers": [["x:y", b"v"]], "body": b""}, "not a valid token"),
    ({"status": 200, "headers": [["é", b"v"]], "body": b""}, "ASCII"),
    ({"status": 200, "headers": [["x", "text"]], "body": b""}, "must be bytes"),
    ({"status": 200, "headers": [], "body": "text"}, "body must be bytes"),
    ({"status": 200, "headers": []}, "lacks 'body'"),
    ("nope", "expected a response record"),
])
def test_a_response_that_cannot_be_sent_as_is_is_invalid(response, says):
    with pytest.raises(wire.InvalidResponse) as err:
        _head(response)
    assert says in str(err.value)


def test_error_head():
    head, body = wire.error_head(504, "too slow", head_only=False, keep_alive=False, http10=False,
                                 date=wire.DateHeader())
    assert head.startswith(b"HTTP/1.1 504 Gateway Timeout\r\ncontent-type: text/plain")
    assert b"connection: close" in head and body == b"504 Gateway Timeout: too slow\n"
    assert f"content-length: {len(body)}".encode() in head
