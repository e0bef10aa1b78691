"""The front's call over NATS: results, and how each way of failing becomes an HTTP status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest

from trellis.httpfront.gateway import CallFailed, NatsCaller
from trellis.interfaces import subjects
from trellis.interfaces.envelope import Invocation, Reply, progress_frame
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.rpc_server import RpcServer

REQUEST = {"method": "GET", "path-with-query": "/", "headers": [], "body": b""}
OK = {"status": 200, "headers": [["x", b"1"]], "body": b"hi"}


@pytest.fixture
async def nc(nats_server) -> AsyncIterator[nats.NATS]:
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.drain()


@pytest.fixture
async def caller(nc, lattice) -> AsyncIterator[NatsCaller]:
    c = NatsCaller(nc, lattice, "http-server", silence_s=0.3)
    await c.start()
    yield c
    await c.close()


async def call(caller: NatsCaller, target: str = "comp", *, timeout_s: float = 5.0, wait_s: float = 0.5,
               retry_lost: bool = True, request: dict | None = None) -> object:
    return await caller.call(target, "default", request or REQUEST, timeout_s=timeout_s, instance_wait_s=wait_s,
                             retry_lost=retry_lost)


async def serving(nc, lattice, handler, **kw) -> RpcServer:
    server = RpcServer(nc, lattice, "comp", handler, **kw)
    await server.start()
    await nc.flush()
    return server


async def test_the_result_and_the_invocation(nc, lattice, caller):
    seen: list[Invocation] = []

    async def handler(inv: Invocation):
        seen.append(inv)
        return OK

    server = await serving(nc, lattice, handler)
    assert await caller.call("comp", "web", REQUEST, timeout_s=5, instance_wait_s=1, retry_lost=True,
                             trace={"traceparent": "00-1-2-01"}) == OK
    inv = seen[0]
    assert (inv.interface, inv.function, inv.source, inv.link) == ("trellis:http/incoming-handler", "handle",
                                                                   "http-server", "web")
    assert inv.args == [REQUEST] and inv.trace == {"traceparent": "00-1-2-01"}
    assert 4 < inv.remaining_s() <= 5
    await server.stop()


async def test_nothing_serving_is_a_prompt_503(caller):
    began = time.monotonic()
    with pytest.raises(CallFailed) as err:
        await call(caller, "nobody", timeout_s=30, wait_s=0.3)
    assert err.value.status == 503 and "no instance of component 'nobody' is running" in err.value.message
    assert time.monotonic() - began < 3
    assert caller.stats["no_responders"] >= 2  # it waited, retrying, for an instance to appear


async def test_an_instance_that_appears_while_waiting_answers(nc, lattice, caller):
    async def handler(inv):
        return OK

    async def start_later():
        await asyncio.sleep(0.3)
        return await serving(nc, lattice, handler)

    later = asyncio.create_task(start_later())
    assert await call(caller, wait_s=3) == OK
    await (await later).stop()


async def test_every_instance_busy_is_503(nc, lattice, caller):
    gate = asyncio.Event()

    async def handler(inv):
        await gate.wait()
        return OK

    server = await serving(nc, lattice, handler, max_concurrent=1, max_queue=0)
    first = asyncio.create_task(call(caller))
    await asyncio.sleep(0.2)
    with pytest.raises(CallFailed) as err:
        await call(caller, wait_s=0.3)
    assert err.value.status == 503 and "busy" in err.value.message
    gate.set()
    assert await first == OK
    await server.stop()


async def test_too_slow_is_504_and_progress_keeps_a_long_call_alive(nc, lattice, caller):
    async def handler(inv):
        await asyncio.sleep(float(inv.args[0]["path-with-query"][1:]))
        return OK

    server = await serving(nc, lattice, handler)
    slow = dict(REQUEST, **{"path-with-query": "/0.8"})
    assert await call(caller, request=slow, timeout_s=5) == OK  # past the 0.3 s silence window
    assert caller.stats["lost"] == 0
    with pytest.raises(CallFailed) as err:
        await call(caller, request=slow, timeout_s=0.3)
    assert err.value.status == 504 and "did not answer within 300 ms" in err.value.message
    await server.stop()


@pytest.mark.parametrize("code, kind, status", [
    (ErrorCode.INVOCATION_FAILED, "trap", 502),
    (ErrorCode.MISSING_LINK, "missing_link", 502),
    (ErrorCode.NOT_FOUND, "no_such_function", 502),
    (ErrorCode.INVOCATION_FAILED, "timeout", 504),
    (ErrorCode.TIMEOUT, "", 504),
])
async def test_component_errors(nc, lattice, caller, code, kind, status):
    async def handler(inv):
        raise RpcError("comp: wasm trap: unreachable (what it said)\nmore lines", code, kind)

    server = await serving(nc, lattice, handler)
    with pytest.raises(CallFailed) as err:
        await call(caller)
    assert err.value.status == status
    assert f"({kind or code})" in err.value.message
    if status == 502:  # the component's own message, in one line (issue 19); the rest is logged
        assert "(what it said)" in err.value.message
    assert "\n" not in err.value.message and "more lines" not in err.value.message
    await server.stop()


@pytest.mark.parametrize("retry_lost", [True, False])
async def test_a_silent_instance_is_retried_only_when_idempotent(nc, lattice, caller, retry_lost):
    attempts: list[int] = []

    async def first_goes_silent(msg):
        inv = Invocation.decode(msg.data)
        attempts.append(inv.attempt)
        if inv.attempt > 1:
            await nc.publish(msg.reply, Reply(id=inv.id, result=OK).encode())

    sub = await nc.subscribe(subjects.rpc(lattice, "comp"), queue=subjects.rpc_queue_group("comp"),
                             cb=first_goes_silent)
    await nc.flush()
    if retry_lost:
        assert await call(caller, retry_lost=True) == OK
        assert attempts == [1, 2]
    else:
        with pytest.raises(CallFailed) as err:
            await call(caller, retry_lost=False)
        assert err.value.status == 502 and "not sent again" in err.value.message
        assert attempts == [1]
    await sub.unsubscribe()


async def test_a_lost_attempts_late_answer_ends_the_call(nc, lattice, caller):
    """An instance too slowed to send progress frames (a loaded machine) is given up after the
    silence window and the call is sent again; its answer to the first attempt, when it comes,
    ends the call. It used to be dropped, so a slowed instance ran the call again and again, each
    copy answered too late, until the deadline (a 2.7 MB echo over NATS at load >= 15: 504)."""
    attempts: list[int] = []
    unanswered: list[tuple[str, int]] = []

    async def answers_each_attempt_once_the_next_came(msg):
        inv = Invocation.decode(msg.data)
        attempts.append(inv.attempt)
        for reply_to, attempt in unanswered:
            await nc.publish(reply_to, Reply(id=inv.id, result=dict(OK, body=b"attempt %d" % attempt)).encode())
        unanswered[:] = [(msg.reply, inv.attempt)]

    sub = await nc.subscribe(subjects.rpc(lattice, "comp"), queue=subjects.rpc_queue_group("comp"),
                             cb=answers_each_attempt_once_the_next_came)
    await nc.flush()
    result = await call(caller, retry_lost=True, timeout_s=5)
    assert result == dict(OK, body=b"attempt 1") and attempts == [1, 2]
    await sub.unsubscribe()


async def test_a_started_at_most_once_function_is_not_sent_again_even_for_an_idempotent_method(nc, lattice, caller):
    """The lattice's call policy, as for every caller: a callee that flagged the call ``nr`` and
    then went silent gets no second attempt (502), whatever the HTTP method."""
    attempts: list[int] = []

    async def starts_then_goes_silent(msg):
        inv = Invocation.decode(msg.data)
        attempts.append(inv.attempt)
        await nc.publish(msg.reply, progress_frame(inv.id, "h/0", no_retry=True))

    sub = await nc.subscribe(subjects.rpc(lattice, "comp"), queue=subjects.rpc_queue_group("comp"),
                             cb=starts_then_goes_silent)
    await nc.flush()
    with pytest.raises(CallFailed) as err:
        await call(caller, retry_lost=True)
    assert err.value.status == 502 and "at-most-once" in err.value.message and attempts == [1]
    await sub.unsubscribe()


async def test_a_request_over_the_message_limit_is_413(caller, nc):
    big = dict(REQUEST, body=b"x" * (nc.max_payload + 1))
    with pytest.raises(CallFailed) as err:
        await call(caller, request=big)
    assert err.value.status == 413 and "max_payload" in err.value.message


async def test_a_response_larger_than_one_nats_message_arrives_whole(nc, lattice, caller):
    big = dict(OK, body=bytes(range(256)) * (nc.max_payload // 256 * 2 + 3))  # three messages

    async def handler(inv: Invocation):
        return big

    server = await serving(nc, lattice, handler)
    try:
        assert await call(caller) == big
    finally:
        await server.stop()
