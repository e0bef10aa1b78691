"""The host's wasi:http (host/runtime/wasi_http) in one process: an `Invoker` serving the unmodified
`wasihttp` proxy component (tests/components/python/wasihttp) with the trellis:http request record."""

from __future__ import annotations

import time

import pytest

from tests.components.build import build_python
from tests.harness import COMPILE_CACHE
from trellis.host.runtime import (
    EngineSettings,
    ErrorKind,
    InvocationError,
    Invoker,
    Limits,
    Reroute,
    ReusePolicy,
    load_component,
    make_engine,
)
from trellis.host.runtime.cache import CompileCache
from trellis.host.runtime.wasi_http import shadowed

H = "trellis:http/incoming-handler.handle"


@pytest.fixture(scope="module")
def loaded():
    engine = make_engine(EngineSettings(consume_fuel=False))
    return load_component(engine, build_python("wasihttp").read_bytes(), CompileCache(COMPILE_CACHE))


def request(path: str, method: str = "GET", body: bytes = b"", headers=()) -> list:
    return [{"method": method, "path-with-query": path, "headers": list(headers), "body": body}]


def test_the_host_answers_wasi_io_and_everything_sharing_its_resources(loaded):
    names = {n.split("@")[0] for n in shadowed(loaded)}
    assert {"wasi:http/types", "wasi:io/streams", "wasi:io/poll", "wasi:cli/stdout", "wasi:cli/stderr",
            "wasi:clocks/monotonic-clock", "wasi:filesystem/preopens", "wasi:sockets/tcp",
            "wasi:sockets/network"} <= names
    assert not names & {"wasi:cli/environment", "wasi:random/random", "wasi:clocks/wall-clock",
                        "wasi:logging/logging", "wasi:keyvalue/store"}


def test_requests_fresh_and_reused(loaded):
    for reuse in (1, 100):
        inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=reuse), limits=Limits(timeout_s=30))
        for _ in range(3):
            r = inv.invoke(H, request("/hello?q=1", headers=[["x-test", b"a"]]))
            assert (r["status"], r["body"]) == (200, b"GET /hello?q=1 x-test=a")
            assert ["x-echo", b"a"] in r["headers"]
        big = bytes(range(256)) * 12_000  # ~3 MB: more than one call carries into Wasm
        r = inv.invoke(H, request("/echo", "POST", big, [["content-type", b"x/y"]]))
        assert r["body"] == big and ["content-type", b"x/y"] in r["headers"]
        assert inv.invoke(H, request("/trap"))["status"] == 500
        assert inv.invoke(H, request("/drop"))["status"] == 500
        assert inv.invoke(H, request("/status/299"))["status"] == 299


def test_a_clock_wait_never_outlasts_the_call(loaded):
    inv = Invoker(loaded, limits=Limits(timeout_s=1.0))
    assert inv.invoke(H, request("/sleep?ms=10"))["body"] == b"slept"
    started = time.monotonic()
    with pytest.raises(InvocationError) as err:
        inv.invoke(H, request("/sleep?ms=600000"))
    assert err.value.kind is ErrorKind.TIMEOUT and time.monotonic() - started < 10


def test_inline_calls_go_to_a_thread_for_large_bodies_and_waits(loaded):
    inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=100))
    assert inv.invoke(H, request("/echo", "POST", b"x" * 1000), inline=True)["body"] == b"x" * 1000
    for req in (request("/echo", "POST", b"x" * 100_000), request("/big?n=100000"), request("/sleep?ms=50")):
        with pytest.raises(Reroute):
            inv.invoke(H, req, inline=True)
        assert inv.invoke(H, req)["status"] == 200  # on a thread, the same call is served


@pytest.mark.parametrize("binding", ["native", "native-python-state", "fast", "wasmtime-py"])
def test_every_binding_of_the_hosts_functions_answers_alike(loaded, monkeypatch, binding):
    """The native callbacks with the request's state in C (wasi_http/native.py, _native_state.c: the
    default), the native callbacks calling the Python implementations (TRELLIS_WASI_HTTP_NATIVE_STATE=0),
    the C-level binding with ctypes callbacks (wasi_http/fastcall.py, TRELLIS_WASI_HTTP_NATIVE=0) and
    wasmtime-py's callbacks (TRELLIS_WASI_HTTP_FAST=0) give the same answers, failures and resource
    bookkeeping; what the C state leaves to Python (a header to refuse, a status out of range, a body
    past the inline bound, a second write) is answered as the Python code answers it."""
    from trellis.host.runtime.wasi_http import fastcall, native

    monkeypatch.setattr(fastcall, "enabled", binding != "wasmtime-py")  # tuning.wasm.wasi_http_fast
    monkeypatch.setattr(native, "enabled", binding.startswith("native"))  # tuning.wasm.wasi_http_native
    monkeypatch.setattr(native, "state_enabled", binding == "native")  # tuning.wasm.wasi_http_native_state
    assert fastcall.active() is (binding != "wasmtime-py")
    assert native.available() is binding.startswith("native")  # the machine has a C compiler: it must build
    inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=100), limits=Limits(timeout_s=30))
    held = []
    for _ in range(2):  # the second time on the same instance: every handle of the first was dropped
        r = inv.invoke(H, request("/hello?q=1", headers=[["x-test", b"a"], ["x-test", b"b"]]))
        assert (r["status"], r["body"]) == (200, b"GET /hello?q=1 x-test=a,b")
        assert ["x-echo", b"a"] in r["headers"] and ["x-echo", b"b"] in r["headers"]
        body = bytes(range(256)) * 300
        r = inv.invoke(H, request("/echo", "PUT", body, [["content-type", b"x/y"]]))
        assert (r["status"], r["body"]) == (200, body)
        assert inv.invoke(H, request("/status/404"))["status"] == 404
        assert inv.invoke(H, request("/status/700"))["status"] == 500  # set-status-code refused it: a trap
        r = inv.invoke(H, request("/hello", headers=[["x-test", b"a\r\nb"]]))  # from-list refuses the echo
        assert r["status"] == 500, r
        r = inv.invoke(H, request("/pieces", "POST", b"x" * 100))
        assert (r["status"], r["body"]) == (200, b"first\nthen " + b"x" * 100)
        r = inv.invoke(H, request("/poll", "POST", b"x", [["host", b"example.com"], ["x-test", b"a"]]))
        assert r["body"] == (b"ready=[0, 1, 3] room=262144 scheme=Scheme_Http authority=example.com now=True"), r
        assert ["x-test", b"a"] in r["headers"]  # the request's headers, cloned
        r = inv.invoke(H, request("/big?n=70000"))  # written past the inline bound
        assert r["body"] == (bytes(range(256)) * 274)[:70000]
        assert inv.invoke(H, request("/trap"))["status"] == 500
        # a record: read the slow way
        for case, text in (("internal", b"internal-error(boom)"), ("dns", b"DNS-error(")):
            r = inv.invoke(H, request(f"/error?case={case}"))
            assert r["status"] == 500 and text in r["body"], r
        assert inv.invoke(H, request("/status/201"))["status"] == 201  # the instance kept after this one
        held.append([len(live.table) for live in inv._idle])
    assert held[0] == held[1] == [0]  # every handle the host gave out came back (dropped)
    inv.close()


def test_without_a_c_compiler_the_ctypes_callbacks_serve(loaded, monkeypatch, tmp_path, caplog):
    """native.py compiles its extension on first use; with no compiler it says so once and the
    ctypes callbacks (fastcall.py) answer the same requests."""
    from trellis.host.runtime.wasi_http import native

    monkeypatch.setattr(native, "_state", {})  # not loaded yet in this process
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built there
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with caplog.at_level("WARNING", logger="trellis.host.runtime.wasi_http"):
        assert not native.available()
    assert "native callbacks unavailable" in caplog.text and "no-such-cc" in caplog.text
    inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=10), limits=Limits(timeout_s=30))
    r = inv.invoke(H, request("/hello?q=1", headers=[["x-test", b"a"]]))
    assert (r["status"], r["body"]) == (200, b"GET /hello?q=1 x-test=a")
    inv.close()


def test_a_reused_instance_does_not_grow_across_requests(loaded):
    """The native callbacks free what they read and take what they hand out: across thousands of
    requests on one instance no Python object, no handle and no native memory is left behind."""
    import gc

    from trellis.host.runtime.wasi_http import native

    assert native.available()
    inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=10**9), limits=Limits(timeout_s=30))
    mix = [request("/hello?q=1", headers=[["x-test", b"a"]]), request("/status/404"),
           request("/poll", "POST", b"x")]  # a list of borrowed handles read natively

    def block() -> tuple[int, int]:
        for i in range(999):
            inv.invoke(H, mix[i % 3])
        gc.collect()
        with open("/proc/self/statm") as f:
            return len(gc.get_objects()), int(f.read().split()[1]) * 4096

    block()  # warm: caches, the allocator's arenas
    objects, rss = block()
    objects2, rss2 = block()
    assert [len(live.table) for live in inv._idle] == [0]
    assert objects2 - objects < 50, objects2 - objects  # a reference kept per request would be 1,000+
    assert rss2 - rss < 256 * 1024, rss2 - rss  # one value slot leaked per call would be ~450 KiB
    inv.close()


def test_the_request_state_in_c_serves_a_held_request_without_the_python_implementations(loaded, monkeypatch):
    """With the request's state in C (the default), a request the host holds whole calls none of the
    Python implementations of the functions _native_state.c has; switched off, it calls them all."""
    from trellis.host.runtime.wasi_http import io, native, types

    calls: list[str] = []

    def counted(name: str, impl):
        def run(args):
            calls.append(name)
            return impl(args)
        return run
    for table in (io.IO, types.HTTP):
        for key, impl in list(table.items()):
            monkeypatch.setitem(table, key, counted(key[1], impl))
    in_c = {"[method]incoming-request.method", "[method]incoming-request.path-with-query",
            "[method]incoming-request.consume", "[method]incoming-body.stream",
            "[method]input-stream.blocking-read", "[static]incoming-body.finish", "[static]fields.from-list",
            "[constructor]outgoing-response", "[method]outgoing-response.set-status-code",
            "[method]outgoing-response.body", "[static]response-outparam.set", "[method]outgoing-body.write",
            "[method]output-stream.write", "[static]outgoing-body.finish"}
    also_in_c = {"now", "[method]input-stream.subscribe", "[method]output-stream.subscribe",
                 "[method]output-stream.check-write", "[method]output-stream.flush",
                 "[method]output-stream.blocking-flush", "[method]fields.clone", "[method]incoming-request.scheme",
                 "[method]incoming-request.authority"}
    for state in (True, False):
        monkeypatch.setattr(native, "state_enabled", state)
        inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=100), limits=Limits(timeout_s=30))
        calls.clear()
        r = inv.invoke(H, request("/echo", "POST", b"order", [["content-type", b"x/y"]]))
        assert (r["status"], r["body"]) == (200, b"order") and ["x-body-bytes", b"5"] in r["headers"]
        if state:
            assert not set(calls) & (in_c | also_in_c), calls
            assert "[method]fields.entries" in calls  # headers().entries stays Python
        else:
            assert in_c <= set(calls), in_c - set(calls)
        calls.clear()
        r = inv.invoke(H, request("/poll", "POST", b"x", [["host", b"h"]]))
        assert r["body"].startswith(b"ready=[0, 1, 3] "), r
        assert "poll" in calls and ("subscribe-duration" in calls)  # (pollables of a clock stay Python)
        assert (not set(calls) & also_in_c) if state else also_in_c <= set(calls), calls
        inv.close()


def _producers_component(tools: list[str]) -> bytes:
    """A component's header and a top-level producers section naming ``tools`` as processed-by."""
    def name(s: str) -> bytes:
        return bytes([len(s)]) + s.encode()
    payload = b"\x01" + name("processed-by") + bytes([len(tools)]) + b"".join(name(t) + name("1.0") for t in tools)
    custom = name("producers") + payload
    other = name("name") + b"\x00"  # another custom section, skipped
    return b"\x00asm\x0d\x00\x01\x00" + b"\x00" + bytes([len(other)]) + other + b"\x00" + bytes([len(custom)]) + custom


def test_a_componentize_js_wasi_http_component_gets_a_fresh_instance_per_request(loaded, monkeypatch, caplog):
    """StarlingMonkey's fetch event answers one request per instance (StarlingMonkey#247): the invoker
    reads the toolchain from the component's producers section and never reuses its instances."""
    from trellis.host.runtime.producers import processed_by

    assert processed_by(_producers_component(["wit-component", "ComponentizeJS"])) == {"wit-component",
                                                                                         "ComponentizeJS"}
    assert processed_by(b"\x00asm\x01\x00\x00\x00") == frozenset()  # a core module: not a component
    assert processed_by(b"garbage") == frozenset() and "ComponentizeJS" not in loaded.tools
    monkeypatch.setattr(loaded, "tools", processed_by(_producers_component(["ComponentizeJS"])))
    with caplog.at_level("WARNING", logger="trellis.host.runtime.wasi_http"):
        inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=100), limits=Limits(timeout_s=30))
    assert inv.reuse.max_invocations == 1 and "fresh instance" in caplog.text and "StarlingMonkey#247" in caplog.text
    for _ in range(3):
        assert inv.invoke(H, request("/status/201"))["status"] == 201
    assert inv.stats.instantiations == 3
    inv.close()
