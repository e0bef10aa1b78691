"""A wasi:http component's streamed request and response (an Exchange, trellis/kit/bodies.py) in one
process: an `Invoker` on a Wasm thread, the bodies piped to and from this test's event loop."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib

import pytest

from tests.components.build import build_python
from tests.harness import COMPILE_CACHE
from trellis.host.runtime import EngineSettings, Invoker, Limits, ReusePolicy, load_component, make_engine
from trellis.host.runtime.cache import CompileCache
from trellis.host.runtime.wasi_http import EXCHANGE
from trellis.kit.bodies import PipeSink, PipeSource

H = "trellis:http/incoming-handler.handle"


@pytest.fixture(scope="module", params=["native", "ctypes"])
def invoker(request):
    """The host's functions with native callbacks (wasi_http/native.py) and with fastcall.py's ctypes ones."""
    from trellis.host.runtime.wasi_http import native

    engine = make_engine(EngineSettings(consume_fuel=False))
    loaded = load_component(engine, build_python("wasihttp").read_bytes(), CompileCache(COMPILE_CACHE))
    native.enabled = request.param == "native"
    try:  # the binding is chosen when the Invoker builds its linker
        inv = Invoker(loaded, reuse=ReusePolicy(max_invocations=100), limits=Limits(timeout_s=30))
    finally:
        native.enabled = True
    assert native.available() or request.param == "ctypes"
    yield inv
    inv.close()


class Exchange:
    """What the HTTP front gives the runtime, with the wire side kept in lists and events."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.paused = 0
        self.reading = asyncio.Event()  # a transport's reading: paused while the reader is behind
        self.reading.set()
        self.body = PipeSource(loop, self._pause, self.reading.set, high=256 * 1024)
        self.head: tuple[int, list] | None = None
        self.sent: list[bytes] = []
        self.got_bytes = asyncio.Event()
        self.ended: asyncio.Future[str] = loop.create_future()
        self.started = False
        self._claimed = False

    def _pause(self) -> None:
        self.paused += 1
        self.reading.clear()

    def claim(self) -> bool:
        claimed, self._claimed = self._claimed, True
        return not claimed

    def start(self, status: int, headers: list) -> PipeSink:
        self.head = (status, headers)
        self.started = True
        return PipeSink(self.loop, self._send, lambda: self.ended.set_result("done"),
                        lambda why: self.ended.set_result("broken"), high=64 * 1024)

    def _send(self, chunks: list[bytes]) -> None:
        self.sent += chunks
        self.got_bytes.set()


async def call(invoker: Invoker, exchange: Exchange, path: str, method: str = "POST"):
    token = EXCHANGE.set(exchange)
    try:
        record = {"method": method, "path-with-query": path, "headers": [], "body": b""}
        return await asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run,
                                                                invoker.invoke, H, [record])
    finally:
        EXCHANGE.reset(token)


async def test_a_request_body_is_read_as_it_arrives_and_the_response_goes_as_written(invoker):
    loop = asyncio.get_running_loop()
    ex = Exchange(loop)
    done = asyncio.ensure_future(call(invoker, ex, "/pieces"))
    await asyncio.wait_for(ex.got_bytes.wait(), 30)  # the first piece, while the handler waits for the body
    assert ex.head is not None and ex.head[0] == 200 and b"".join(ex.sent) == b"first\n" and not done.done()
    ex.body.feed(b"hello")
    ex.body.end()
    result = await asyncio.wait_for(done, 30)
    assert result["status"] == 200 and result["body"] == b""  # the head's record: the body went out
    assert await ex.ended == "done" and b"".join(ex.sent) == b"first\nthen hello"

    # a body fed in pieces, far more than the pipe holds: the feeder is paused, the digest is right
    ex = Exchange(loop)
    done = asyncio.ensure_future(call(invoker, ex, "/sha256"))
    piece = bytes(range(256)) * 1024
    for _ in range(16):
        await asyncio.wait_for(ex.reading.wait(), 30)  # as a paused transport: nothing until resumed
        ex.body.feed(piece)
    ex.body.end()
    await asyncio.wait_for(done, 60)
    assert await ex.ended == "done"
    assert b"".join(ex.sent) == f"{hashlib.sha256(piece * 16).hexdigest()} {16 * len(piece)}".encode()
    assert ex.paused >= 1 and ex.body.peak <= ex.body.high + len(piece)


async def test_a_broken_body_or_a_trap_after_the_head_never_hangs(invoker):
    loop = asyncio.get_running_loop()
    ex = Exchange(loop)
    done = asyncio.ensure_future(call(invoker, ex, "/sha256"))
    ex.body.feed(b"x" * 1000)
    ex.body.fail("the client closed the connection")
    result = await asyncio.wait_for(done, 30)
    assert result["status"] == 500 and not ex.started  # the guest's read failed: it trapped before its head

    ex = Exchange(loop)
    result = await asyncio.wait_for(call(invoker, ex, "/trap-after-head", "GET"), 30)
    assert ex.started and await asyncio.wait_for(ex.ended, 30) == "broken"
    assert b"".join(ex.sent) == b"partial"


@pytest.fixture(scope="module")
def short():
    """The same component with a 1.5 s deadline: a wasi:http handler's is an idle budget."""
    engine = make_engine(EngineSettings(consume_fuel=False))
    loaded = load_component(engine, build_python("wasihttp").read_bytes(), CompileCache(COMPILE_CACHE))
    inv = Invoker(loaded, limits=Limits(timeout_s=1.5))
    yield inv
    inv.close()
    engine.close()


async def feed_slowly(ex: Exchange, pieces: int, gap_s: float) -> bytes:
    """A slow client: ``pieces`` pieces ``gap_s`` apart (its pace is the point, not a synchronisation)."""
    piece = bytes(range(256)) * 64
    for _ in range(pieces):
        await asyncio.wait_for(ex.reading.wait(), 30)
        ex.body.feed(piece)
        await asyncio.sleep(gap_s)
    return piece * pieces


async def test_a_transfer_longer_than_the_deadline_completes_while_the_body_moves(short):
    loop = asyncio.get_running_loop()
    ex = Exchange(loop)
    done = asyncio.ensure_future(call(short, ex, "/sha256"))
    began = loop.time()
    sent = await feed_slowly(ex, 12, 0.25)  # 3 s: twice the deadline
    ex.body.end()
    result = await asyncio.wait_for(done, 30)
    assert loop.time() - began > 1.5 and result["status"] == 200
    assert await ex.ended == "done"
    assert b"".join(ex.sent) == f"{hashlib.sha256(sent).hexdigest()} {len(sent)}".encode()


async def test_a_stalled_client_or_a_spinning_guest_is_still_stopped(short):
    from trellis.host.runtime import InvocationError

    loop = asyncio.get_running_loop()
    ex = Exchange(loop)  # a client that sends a piece, then nothing: the guest waits on it
    done = asyncio.ensure_future(call(short, ex, "/sha256"))
    await feed_slowly(ex, 1, 0)
    with pytest.raises(InvocationError) as caught:
        await asyncio.wait_for(done, 30)
    assert caught.value.kind.value == "timeout" and "request body" in caught.value.message

    ex = Exchange(loop)  # a guest that spins once its body (longer than the deadline) was read
    done = asyncio.ensure_future(call(short, ex, "/spin"))
    await feed_slowly(ex, 8, 0.25)
    ex.body.end()
    with pytest.raises(InvocationError) as caught:
        await asyncio.wait_for(done, 30)
    assert caught.value.kind.value == "timeout" and not ex.started
