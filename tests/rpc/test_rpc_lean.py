"""The cheaper RPC bookkeeping keeps every guarantee: unique ids, silence detection,
progress frames for queued and long calls, trace pass-through, the wire format."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import msgpack
import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.interfaces import subjects, tracing
from trellis.interfaces.envelope import EnvelopeError, IdSource, Invocation, Reply, new_id, ok_frame, progress_frame
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcClient, RpcError
from trellis.interfaces.rpc_server import RpcServer

from ..harness import eventually


async def _server(nc, lattice, target, handler, **kw):
    s = RpcServer(nc, lattice, target, handler, **kw)
    await s.start()
    return s


def _deadline(s: float) -> int:
    return int((time.time() + s) * 1000)


# --- ids ------------------------------------------------------------------------

async def test_ids_unique_across_clients_and_calls(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    seen: list[str] = []

    async def record(inv):
        seen.append(inv.id)
        return inv.id

    s = await _server(nc, lattice, "ids", record)
    subs_before = len(nc._subs)
    clients = [RpcClient(nc, lattice, source=f"c{i}") for i in range(3)]
    try:
        # 150 calls at once from three fresh clients: each makes exactly one reply subscription
        results = await asyncio.gather(*(c.call("ids", "f", timeout_s=10) for c in clients for _ in range(50)))
        assert len(nc._subs) == subs_before + 3
        assert len(set(seen)) == 150 and sorted(results) == sorted(seen)
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in seen)  # the shape of uuid4().hex
        assert len({c.new_id.prefix for c in clients}) == 3
        assert {i[:16] for i in seen} == {c.new_id.prefix for c in clients}
    finally:
        await s.stop()
        for c in clients:
            await c.close()
        await nc.close()


def test_id_sources_do_not_repeat():
    a, b = IdSource(), IdSource()
    ids = [a() for _ in range(1000)] + [b() for _ in range(1000)] + [new_id() for _ in range(1000)]
    assert len(set(ids)) == 3000
    assert Invocation("t", "", "f").id != Invocation("t", "", "f").id


def test_a_forked_child_draws_a_new_prefix():
    mine = new_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, new_id().encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        theirs = os.read(r, 64).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert len(theirs) == 32 and theirs[:16] != mine[:16]


# --- silence, progress, deadline ------------------------------------------------

async def test_long_call_is_kept_alive_by_progress_frames(nats_server, lattice):
    """A call running several silence windows is not presumed lost: progress frames reset the timer."""
    nc = await nats.connect(nats_server.url)

    async def slow(inv):
        await asyncio.sleep(1.6)  # the work itself: longer than two silence windows
        return "done"

    s = await _server(nc, lattice, "slow", slow)
    client = RpcClient(nc, lattice, silence_s=0.6)
    try:
        assert await client.call("slow", "f", timeout_s=10) == "done"
        assert client.stats["lost"] == 0 and client.stats["attempts"] == 1
    finally:
        await s.stop()
        await client.close()
        await nc.close()


async def test_call_that_keeps_progressing_times_out_at_its_deadline_not_lost(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    started = asyncio.Event()

    async def forever(inv):
        started.set()
        await asyncio.Event().wait()

    s = await _server(nc, lattice, "forever", forever)
    client = RpcClient(nc, lattice, silence_s=0.6)
    try:
        t0 = time.monotonic()
        with pytest.raises(RpcError) as err:
            await client.call("forever", "f", timeout_s=1.5)
        took = time.monotonic() - t0
        assert err.value.code == ErrorCode.TIMEOUT and err.value.kind == "timeout"
        assert client.stats["lost"] == 0 and client.stats["attempts"] == 1
        assert 1.3 < took < 6.0  # the deadline, not a silence window (0.6 s) or a resend
    finally:
        await s.stop(drain_timeout_s=0.1)
        await client.close()
        await nc.close()


async def test_silence_timer_detects_a_lost_call_within_the_window(nats_server, lattice):
    """An instance that takes the call and then says nothing: lost after ~silence_s, resent, answered."""
    nc = await nats.connect(nats_server.url)
    taken = asyncio.Event()

    async def black_hole(msg):
        taken.set()  # no reply, no progress: as a host that died holding the call

    hole = await nc.subscribe(subjects.rpc(lattice, "flaky"), queue=subjects.rpc_queue_group("flaky"), cb=black_hole)
    client = RpcClient(nc, lattice, silence_s=0.5)
    try:
        call = asyncio.create_task(client.call("flaky", "f", ["x"], timeout_s=10))
        await asyncio.wait_for(taken.wait(), 5)
        await hole.unsubscribe()
        s = await _server(nc, lattice, "flaky", lambda inv: _echo(inv))
        t0 = time.monotonic()
        assert await call == ["x"]
        assert client.stats["lost"] == 1 and client.stats["attempts"] == 2
        assert time.monotonic() - t0 < 5.0  # the silence timer, not the 10 s deadline
        await s.stop()

        # at most once: the same loss is reported, not repeated
        taken.clear()
        hole = await nc.subscribe(subjects.rpc(lattice, "flaky2"), cb=black_hole)
        with pytest.raises(RpcError) as err:
            await client.call("flaky2", "f", timeout_s=10, retryable=False)
        assert err.value.kind == "lost" and client.stats["attempts"] == 3
        await hole.unsubscribe()
    finally:
        await client.close()
        await nc.close()


async def _echo(inv):
    return inv.args


async def test_queued_call_gets_progress_frames_then_its_reply(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    gate = asyncio.Event()

    async def held(inv):
        await gate.wait()
        return inv.args

    s = await _server(nc, lattice, "held", held, max_concurrent=1, max_queue=4, served_by="me")
    client = RpcClient(nc, lattice)
    try:
        first = asyncio.create_task(client.call("held", "f", [1], timeout_s=10))
        await eventually(lambda: s.inflight == 1, 5)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        inv = Invocation("held", "", "f", [2], deadline_ms=_deadline(10))
        await nc.publish(subjects.rpc(lattice, "held"), inv.encode(), reply=inbox)
        rep = Reply.decode((await sub.next_msg(timeout=3)).data)  # while it waits for the slot
        assert rep.progress and rep.id == inv.id and rep.served_by == "me"
        gate.set()
        while rep.progress:
            rep = Reply.decode((await sub.next_msg(timeout=5)).data)
        assert rep.ok and rep.result == [2] and rep.id == inv.id
        assert await first == [1]
        await sub.unsubscribe()
    finally:
        gate.set()
        await s.stop()
        await client.close()
        await nc.close()


# --- replies that are not results -------------------------------------------------

async def test_unreadable_reply_and_unencodable_result_are_errors(nats_server, lattice):
    nc = await nats.connect(nats_server.url)

    async def garbage(msg):
        await nc.publish(msg.reply, b"\xc1")

    raw = await nc.subscribe(subjects.rpc(lattice, "garbled"), cb=garbage)

    async def odd(inv):
        return object()

    s = await _server(nc, lattice, "odd", odd)
    client = RpcClient(nc, lattice)
    try:
        with pytest.raises(RpcError) as err:
            await client.call("garbled", "f", timeout_s=5)
        assert err.value.code == ErrorCode.INTERNAL and "bad reply from garbled" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("odd", "f", timeout_s=5)
        assert err.value.code == ErrorCode.INTERNAL and "cannot be encoded" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("odd", "not an/address.", timeout_s=5)
        assert err.value.code == ErrorCode.BAD_REQUEST
    finally:
        await raw.unsubscribe()
        await s.stop()
        await client.close()
        await nc.close()


# --- tracing off: the caller's context passes through ------------------------------

async def test_trace_context_passes_through_a_server_that_does_not_trace(nats_server, lattice):
    if tracing.enabled():
        pytest.skip("a tracer provider is configured in this process")
    nc = await nats.connect(nats_server.url)
    got: dict[str, object] = {}

    async def tail(inv):
        got["tail"] = dict(inv.trace)
        return "ok"

    inner = RpcClient(nc, lattice, source="middle")

    async def middle(inv):
        got["inject"] = tracing.inject()
        return await inner.call("tail", "f", timeout_s=5)

    servers = [await _server(nc, lattice, "tail", tail), await _server(nc, lattice, "middle", middle)]
    client = RpcClient(nc, lattice)
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    try:
        assert await client.call("middle", "f", timeout_s=5, trace={"traceparent": traceparent}) == "ok"
        assert got == {"inject": {"traceparent": traceparent}, "tail": {"traceparent": traceparent}}
        assert await client.call("middle", "f", timeout_s=5) == "ok"
        assert got == {"inject": {}, "tail": {}}
        # a malformed context is dropped, and the call still works
        assert await client.call("middle", "f", timeout_s=5,
                                 trace={"traceparent": 7}) == "ok"  # type: ignore[dict-item]  # the point: a malformed trace header
        assert got["tail"] == {}
        assert tracing.inject() == {}  # nothing leaks out of the calls served
    finally:
        for s in servers:
            await s.stop()
        await inner.close()
        await client.close()
        await nc.close()


def test_extract_of_a_malformed_carrier_is_a_new_trace():
    assert len(tracing.extract({"traceparent": 7})) == 0  # type: ignore[dict-item]  # the point: a malformed trace header
    assert len(tracing.extract({})) == 0


# --- the envelope ---------------------------------------------------------------

def test_wire_format_is_the_documented_one():
    inv = Invocation("t", "a:b/c", "f", [1, b"\x00"], source="s", id="i", deadline_ms=5, link="l",
                     trace={"traceparent": "x"}, attempt=2)
    assert msgpack.unpackb(inv.encode()) == {
        "v": 1, "id": "i", "source": "s", "target": "t", "interface": "a:b/c", "function": "f",
        "args": [1, b"\x00"], "deadline_ms": 5, "link": "l", "trace": {"traceparent": "x"}, "attempt": 2}
    assert msgpack.unpackb(Reply(id="i", result={"k": 1}, served_by="h").encode()) == {
        "v": 1, "id": "i", "ok": True, "result": {"k": 1}, "by": "h"}
    assert ok_frame("i", 3) == msgpack.packb({"v": 1, "id": "i", "ok": True, "result": 3})
    assert msgpack.unpackb(Reply.failure("i", "busy", "full", "k").encode()) == {
        "v": 1, "id": "i", "ok": False, "error": {"code": "busy", "message": "full", "kind": "k"}}
    assert msgpack.unpackb(progress_frame("i", "h", no_retry=True)) == {
        "v": 1, "id": "i", "progress": True, "nr": True, "by": "h"}
    # optional fields may be left out by a sender
    minimal = msgpack.packb({"v": 1, "id": "i", "source": "s", "target": "t", "interface": "", "function": "f",
                             "args": [], "deadline_ms": 1})
    assert Invocation.decode(minimal) == Invocation("t", "", "f", [], "s", "i", 1, "default", {}, 1)
    assert Reply.decode(msgpack.packb({"v": 1, "id": "i", "ok": False, "error": {"code": "x"}})).error.code == "x"
    assert Reply.decode(progress_frame("i", no_retry=True)).no_retry


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.text(max_size=3), st.binary(max_size=2),
                    st.lists(st.integers(-9, 9), max_size=2),
                    st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2))
_fields = ["v", "id", "source", "target", "interface", "function", "args", "deadline_ms", "link", "trace", "attempt"]


@given(st.dictionaries(st.sampled_from(_fields), _values), st.booleans())
@settings(max_examples=400, deadline=None)
def test_decode_accepts_exactly_the_well_typed_invocations(fields, complete):
    m = dict(fields)
    if complete:  # most frames are well formed: make sure those are generated often
        m = {"v": 1, "id": "i", "source": "s", "target": "t", "interface": "", "function": "f", "args": [],
             "deadline_ms": 1} | {k: v for k, v in fields.items() if k in ("link", "trace", "attempt", "args")}
    types = {"id": str, "source": str, "target": str, "interface": str, "function": str, "args": list,
             "deadline_ms": int}
    optional = {"link": str, "trace": dict, "attempt": int}
    valid = (m.get("v") == 1 and all(k in m and type(m[k]) is t for k, t in types.items()) and m["function"]
             and all(type(m[k]) is t for k, t in optional.items() if k in m))
    try:
        inv = Invocation.decode(msgpack.packb(m, use_bin_type=True))
    except EnvelopeError:
        assert not valid
    else:
        assert valid
        assert (inv.id, inv.function, inv.args, inv.deadline_ms) == \
            (m["id"], m["function"], m["args"], m["deadline_ms"])
        assert (inv.link, inv.trace, inv.attempt) == (m.get("link", "default"), m.get("trace", {}), m.get("attempt", 1))


def test_encoding_from_many_threads_at_once():
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(2000):
            inv = Invocation("t", "", "f", [n, i, "x" * (i % 50)], id=f"{n}-{i}", deadline_ms=i)
            if Invocation.decode(inv.encode()) != inv:
                errors.append(f"{n}-{i}")
                return
            if Reply.decode(ok_frame(inv.id, [n, i])).result != [n, i]:
                errors.append(f"reply {n}-{i}")
                return

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_large_frame_does_not_keep_its_buffer():
    big = Reply(id="i", result=b"x" * (2 << 20)).encode()
    assert Reply.decode(big).result == b"x" * (2 << 20)
    assert Reply.decode(Reply(id="j", result=1).encode()).result == 1
