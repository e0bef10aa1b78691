"""The RPC layer: envelope codec, queue groups, busy, failover on silence and no responders."""

from __future__ import annotations

import asyncio
import time

import msgpack
import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.interfaces import subjects
from trellis.interfaces.envelope import MAX_FRAME, EnvelopeError, Invocation, Reply
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcClient, RpcError
from trellis.interfaces.rpc_server import RpcServer


def test_envelope_round_trip():
    inv = Invocation("comp", "ns:pkg/iface", "f", [1, "x", b"\x00", {"a": [None]}], deadline_ms=123,
                     trace={"traceparent": "00-x"})
    assert Invocation.decode(inv.encode()) == inv
    r = Reply(id="i", ok=True, result={"k": b"v"})
    assert Reply.decode(r.encode()).result == {"k": b"v"}


@pytest.mark.parametrize("frame,words", [
    (b"", "not valid msgpack"),
    (b"\x93\x01\x02\x03", "must be a msgpack map"),
    (msgpack.packb({"v": 99}), "unsupported envelope version 99"),
    (msgpack.packb({"v": 1, "id": "x"}), "'source' is missing"),
    (msgpack.packb({"v": 1, "id": 5, "source": "", "target": "", "interface": "", "function": "f", "args": [],
                    "deadline_ms": 1}), "'id' must be str"),
    (msgpack.packb({"v": 1, "id": "x", "source": "", "target": "", "interface": "", "function": "f", "args": [],
                    "deadline_ms": True}), "'deadline_ms' must be int"),
])
def test_envelope_rejects_bad_frames(frame, words):
    with pytest.raises(EnvelopeError) as err:
        Invocation.decode(frame)
    assert words in str(err.value)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_envelope_never_crashes_on_garbage(frame):
    try:
        Invocation.decode(frame)
    except EnvelopeError:
        pass


async def _server(nc, lattice, target, handler, **kw):
    s = RpcServer(nc, lattice, target, handler, **kw)
    await s.start()
    return s


async def test_call_spreads_over_queue_group_and_returns(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    seen = []

    def make(name):
        async def handler(inv):
            seen.append(name)
            return {"sum": sum(inv.args), "by": name}
        return handler

    servers = [await _server(nc, lattice, "adder", make(n), served_by=n) for n in ("a", "b")]
    client = RpcClient(nc, lattice)
    try:
        for _ in range(40):
            assert (await client.call("adder", "t:t/math.add", [1, 2], timeout_s=5))["sum"] == 3
        assert set(seen) == {"a", "b"}
    finally:
        for s in servers:
            await s.stop()
        await client.close()
        await nc.close()


async def test_errors_are_typed_and_not_retried(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    calls = 0

    async def handler(inv):
        nonlocal calls
        calls += 1
        raise RpcError("it trapped", ErrorCode.INVOCATION_FAILED, "trap")

    s = await _server(nc, lattice, "boom", handler)
    client = RpcClient(nc, lattice)
    try:
        with pytest.raises(RpcError) as err:
            await client.call("boom", "x:y/z.f", [], timeout_s=5)
        assert err.value.kind == "trap" and "it trapped" in err.value.message and calls == 1
    finally:
        await s.stop()
        await client.close()
        await nc.close()


async def test_no_responders_waits_for_an_instance_then_times_out(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    client = RpcClient(nc, lattice)
    try:
        with pytest.raises(RpcError) as err:
            await client.call("nobody", "x:y/z.f", [], timeout_s=0.5)
        assert err.value.code == ErrorCode.TIMEOUT and "nobody serves 'nobody'" in err.value.message
        assert client.stats["no_responders"] >= 1

        # an instance that appears while the caller retries is found
        async def start_later():
            await asyncio.sleep(0.3)
            return await _server(nc, lattice, "late", _echo)
        starter = asyncio.create_task(start_later())
        assert await client.call("late", "x:y/z.f", ["hi"], timeout_s=5) == ["hi"]
        await (await starter).stop()
    finally:
        await client.close()
        await nc.close()


async def _echo(inv):
    return inv.args


async def test_busy_beyond_queue_and_failover_to_free_instance(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    gate = asyncio.Event()

    async def slow(inv):
        await gate.wait()
        return "slow"

    s = await _server(nc, lattice, "svc", slow, max_concurrent=1, max_queue=0, served_by="slow")
    client = RpcClient(nc, lattice)
    try:
        first = asyncio.create_task(client.call("svc", "x:y/z.f", timeout_s=10))
        await asyncio.sleep(0)  # let it be sent
        await _wait(lambda: s.inflight == 1)
        # only a busy instance: the caller keeps trying, then reports busy at the deadline
        with pytest.raises(RpcError) as err:
            await client.call("svc", "x:y/z.f", timeout_s=0.5)
        assert "busy" in err.value.message
        # a free instance appears: busy replies are retried elsewhere
        other = await _server(nc, lattice, "svc", _echo, served_by="free")
        assert await client.call("svc", "x:y/z.f", ["ok"], timeout_s=10) == ["ok"]
        gate.set()
        assert await first == "slow"
        await other.stop()
    finally:
        gate.set()
        await s.stop()
        await client.close()
        await nc.close()


async def _wait(cond, timeout=5.0):
    from ..harness import eventually
    await eventually(cond, timeout)


async def test_in_flight_loss_is_retried_unless_non_retryable(nats_server, lattice):
    """An instance that goes silent mid-call (its host died) is given up on; another answers."""
    dead_nc = await nats.connect(nats_server.url)
    nc = await nats.connect(nats_server.url)
    hang = asyncio.Event()

    async def swallow(inv):
        hang.set()
        await asyncio.Event().wait()  # never answers

    _dying = await _server(dead_nc, lattice, "svc2", swallow, served_by="dying")  # held until the test ends
    client = RpcClient(nc, lattice, silence_s=0.6)
    try:
        call = asyncio.create_task(client.call("svc2", "x:y/z.f", ["v"], timeout_s=10))
        await asyncio.wait_for(hang.wait(), 5)
        healthy = await _server(nc, lattice, "svc2", _echo, served_by="healthy")
        await dead_nc.close()  # the host vanishes: no progress frames any more
        assert await call == ["v"]
        assert client.stats["lost"] >= 1

        # non-retryable: lost in flight is reported, not repeated
        dead2 = await nats.connect(nats_server.url)
        hang.clear()
        await healthy.stop()
        d2 = await _server(dead2, lattice, "svc2", swallow)
        call = asyncio.create_task(client.call("svc2", "x:y/z.f", [], timeout_s=10, retryable=False))
        await asyncio.wait_for(hang.wait(), 5)
        await dead2.close()
        with pytest.raises(RpcError) as err:
            await call
        assert err.value.kind == "lost"
        del d2
    finally:
        await client.close()
        await nc.close()


async def test_a_lost_attempts_late_answer_ends_the_call(nats_server, lattice):
    """A callee too slowed to send progress frames (a loaded machine) is given up after the
    silence window and the call is sent again; its answer to the first attempt, when it comes,
    ends the call. It used to be dropped, so a slowed callee ran the call again and again, each
    copy answered too late, until the deadline."""
    nc = await nats.connect(nats_server.url)
    attempts: list[int] = []
    unanswered: list[tuple[str, int]] = []

    async def answers_each_attempt_once_the_next_came(msg):
        inv = Invocation.decode(msg.data)
        attempts.append(inv.attempt)
        for reply_to, attempt in unanswered:
            await nc.publish(reply_to, Reply(id=inv.id, result=f"attempt {attempt}").encode())
        unanswered[:] = [(msg.reply, inv.attempt)]

    sub = await nc.subscribe(subjects.rpc(lattice, "slowed"), queue=subjects.rpc_queue_group("slowed"),
                             cb=answers_each_attempt_once_the_next_came)
    client = RpcClient(nc, lattice, silence_s=0.3)
    try:
        assert await client.call("slowed", "x:y/z.f", [], timeout_s=10) == "attempt 1"
        assert attempts == [1, 2] and client.stats["lost"] == 1
        assert not client._pending  # every attempt's inbox entry is gone with the call
    finally:
        await sub.unsubscribe()
        await client.close()
        await nc.close()


async def test_a_stall_of_the_callers_own_loop_is_not_taken_for_a_lost_call(nats_server, lattice):
    """The caller's loop blocked past the silence window (here by the handler sharing it): the
    reply that came meanwhile is read before the silence is judged, so there is no second attempt."""
    nc = await nats.connect(nats_server.url)
    calls = []

    async def blocking(inv):
        calls.append(inv.attempt)
        time.sleep(0.8)  # blocks the one loop the server and the caller share
        return "done"

    s = await _server(nc, lattice, "stalls", blocking)
    client = RpcClient(nc, lattice, silence_s=0.3)
    try:
        assert await client.call("stalls", "x:y/z.f", [], timeout_s=10) == "done"
        assert calls == [1] and client.stats["lost"] == 0
    finally:
        await s.stop()
        await client.close()
        await nc.close()


async def test_a_stall_right_after_the_send_leaves_the_callee_its_whole_silence_window(nats_server, lattice):
    """The caller's loop blocks past the silence window before the request has reached the callee
    (which shares the loop): the callee's progress and reply come well after the stall ends, and
    still count, because the window starts again when the stall is seen."""
    nc = await nats.connect(nats_server.url)
    calls = []

    async def slowish(inv):
        calls.append(inv.attempt)
        await asyncio.sleep(0.2)  # longer than the caller's look right after a stall used to be
        return "done"

    s = await _server(nc, lattice, "late", slowish)
    client = RpcClient(nc, lattice, silence_s=0.3)
    try:
        await client.call("late", "x:y/z.f", [], timeout_s=10)  # inbox and caches ready
        calls.clear()
        loop = asyncio.get_running_loop()
        call = asyncio.ensure_future(client.call("late", "x:y/z.f", [], timeout_s=10))
        loop.call_soon(time.sleep, 0.5)  # the process stalls before the request has left it
        assert await call == "done"
        assert calls == [1] and client.stats["lost"] == 0
    finally:
        await s.stop()
        await client.close()
        await nc.close()


async def test_malformed_frames_answered_and_server_survives(nats_server, lattice):
    nc = await nats.connect(nats_server.url)
    s = await _server(nc, lattice, "tough", _echo)
    try:
        for frame in (b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": 2}), b"x" * 100_000):
            msg = await nc.request(subjects.rpc(lattice, "tough"), frame, timeout=2)
            rep = Reply.decode(msg.data)
            assert not rep.ok and rep.error.code == ErrorCode.BAD_REQUEST
        client = RpcClient(nc, lattice)
        assert await client.call("tough", "a:b/c.d", [1]) == [1]
        await client.close()
    finally:
        await s.stop()
        await nc.close()


async def test_a_reply_larger_than_one_nats_message_arrives_in_parts(nats_server, lattice):
    """Past the server's max payload a reply crosses NATS in parts and arrives whole; past the
    frame limit it is an error that says so, not a lost instance."""
    nc = await nats.connect(nats_server.url)
    big = bytes(range(256)) * (nc.max_payload // 256 * 3 + 7)  # three messages and a bit

    async def huge(inv):
        return big if inv.function == "big" else b"x" * (MAX_FRAME + 1)

    s = await _server(nc, lattice, "huge", huge)
    client = RpcClient(nc, lattice)
    try:
        assert await client.call("huge", "a:b/c.big", timeout_s=10) == big
        results = await asyncio.gather(*(client.call("huge", "a:b/c.big", timeout_s=10) for _ in range(3)))
        assert results == [big] * 3  # parts of replies to concurrent calls do not mix
        with pytest.raises(RpcError) as err:
            await client.call("huge", "a:b/c.too_big", timeout_s=10)
        assert err.value.kind == "too_large" and "frame limit" in err.value.message
        assert client.stats["lost"] == 0 and client.stats["attempts"] == 5
    finally:
        await s.stop()
        await client.close()
        await nc.close()
