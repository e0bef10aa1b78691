"""Byte streams over NATS (interfaces/bytestream.py, trellis/kit/natsstream.py) on a real nats-server:
order and integrity, credit (a slow reader bounds what is in flight), a thread on either end,
aborts both ways, and a dead peer noticed by silence (no hang)."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
from collections.abc import AsyncIterator

import nats
import pytest

from trellis.interfaces import bytestream as bs
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.rpc_client import RpcClient
from trellis.interfaces.rpc_server import EARLY_REPLY, RpcServer
from trellis.kit.natsstream import StreamError, StreamHub


def test_frames_round_trip_and_bad_ones_are_refused():
    assert bs.parse(bs.data_frame(7, b"abc")) == (bs.DATA, 7, b"abc")
    assert bs.parse(bs.end_frame(3)) == (bs.END, 3, b"")
    assert bs.parse(bs.credit_frame(1 << 40)) == (bs.CREDIT, 1 << 40, b"")
    assert bs.parse(bs.PING_FRAME) == (bs.PING, 0, b"")
    assert bs.parse(bs.abort_frame("gone")) == (bs.ABORT, 0, b"gone")
    for bad in (b"", b"D12", b"C123", b"Z", b"E12345"):
        with pytest.raises(bs.FrameError):
            bs.parse(bad)
    assert bs.read_offer(bs.offer(to="a.b", window=5)) == ("a.b", 5)
    assert bs.read_offer(bs.offer(source="a.c")) == "a.c"
    assert bs.read_offer({"to": 3}) is None and bs.read_offer(None) is None


@pytest.fixture
async def hubs(nats_server, lattice) -> AsyncIterator[tuple[StreamHub, StreamHub]]:
    """Two hubs on two connections (two processes, as far as NATS can tell)."""
    a_nc, b_nc = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    a = await StreamHub(a_nc, lattice, keepalive_s=0.05, silence_s=1.5).start()
    b = await StreamHub(b_nc, lattice, keepalive_s=0.05, silence_s=1.5).start()
    yield a, b
    for hub in (a, b):
        await hub.close()
        if not hub.nc.is_closed:
            await hub.nc.close()


async def test_a_large_stream_arrives_whole_and_in_order_with_bounded_buffering(hubs):
    a, b = hubs
    window = 512 * 1024
    rx = b.receiver(window)
    tx = a.sender()
    tx.attach(rx.offer())
    total = 48 * 1024 * 1024
    piece = bytes(range(256)) * 1021  # not a divisor of the chunk: frames split pieces
    sent = hashlib.sha256()

    async def produce() -> None:
        n = 0
        while n < total:
            chunk = piece[: min(len(piece), total - n)]
            await tx.write(chunk)
            sent.update(chunk)
            n += len(chunk)
        tx.end()

    producer = asyncio.create_task(produce())
    got = hashlib.sha256()
    size = most_buffered = most_ahead = 0
    while (chunk := await rx.read()) is not None:
        got.update(chunk)
        size += len(chunk)
        most_buffered = max(most_buffered, rx.buffered)
        most_ahead = max(most_ahead, tx.sent - size)
        if size % (8 * window) < len(chunk):
            await asyncio.sleep(0)  # a reader that also does other things
    await producer
    assert size == total and got.digest() == sent.digest()
    assert most_buffered <= window and most_ahead <= window  # the sender never ran ahead of its credit
    assert not a.ends and not b.ends  # both ends forgotten once over


async def test_a_wasm_thread_on_either_end(hubs):
    """``write_blocking`` and ``read_blocking`` from threads; the sender's offer (credit first)."""
    a, b = hubs
    tx = a.sender()
    rx = b.receiver(256 * 1024)
    data = bytes(range(256)) * 40_000
    got: list[bytes] = []

    def reader() -> None:
        while (piece := rx.read_blocking(100_000)) is not None:
            assert len(piece) <= 100_000
            got.append(piece)

    def writer() -> None:
        for i in range(0, len(data), 300_000):
            tx.write_blocking(data[i:i + 300_000])
        tx.end()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    rx.accept(tx.offer()["from"])  # the receiver announces itself: the sender learns where to send
    def join_all() -> None:
        for t in threads:
            t.join(30)

    await asyncio.get_running_loop().run_in_executor(None, join_all)
    assert b"".join(got) == data


async def test_aborts_reach_the_other_end_both_ways(hubs):
    a, b = hubs
    rx = b.receiver(64 * 1024)
    tx = a.sender()
    tx.attach(rx.offer())
    await tx.write(b"x" * 1000)
    rx.close()  # the reader gives up: the sender's next wait ends
    with pytest.raises(StreamError, match="receiver closed"):
        for _ in range(100):
            await tx.write(b"y" * 64 * 1024)
    rx2 = b.receiver()
    tx2 = a.sender()
    tx2.attach(rx2.offer())
    await tx2.write(b"first")
    tx2.abort("the handler trapped")
    assert await rx2.read() == b"first"
    with pytest.raises(StreamError, match="the handler trapped"):
        await rx2.read()


async def test_a_dead_peer_is_noticed_by_silence(hubs, nats_server):
    a, b = hubs
    rx = b.receiver()
    tx = a.sender()
    tx.attach(rx.offer())
    await tx.write(b"some")
    assert await rx.read() == b"some"
    # the sending process dies without a word (its connection goes, no abort frame)
    a.closed = True
    for end in list(a.ends.values()):
        end.peer = None  # nothing more leaves it
    await a.nc.close()
    with pytest.raises(StreamError, match="gone|silent"):  # NATS says nobody listens there; else silence
        await asyncio.wait_for(rx.read(), 10)
    # a receiver whose sender never said a word: silence counts once it expects one
    rx2 = b.receiver()
    rx2.expect()
    with pytest.raises(StreamError, match="silent"):
        await asyncio.wait_for(rx2.read(), 10)


async def test_a_handler_answers_early_and_streams_the_rest(nats_server, lattice, hubs):
    """``EARLY_REPLY``: the caller gets the head while the handler still runs (on a thread, as a
    Wasm call does), the body follows on a stream, and what the handler returns is dropped."""
    a, b = hubs
    go = threading.Event()

    def on_thread(offer: dict) -> str:
        early = EARLY_REPLY.get()
        assert early is not None and early.send({"status": 200, "stream": True})
        assert not early.send({"twice": True})
        tx = a.sender()
        tx.attach(offer)
        tx.write_blocking(b"first ")
        go.wait(10)
        tx.write_blocking(b"last")
        tx.end()
        return "dropped"

    async def handler(inv: Invocation) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, contextvars.copy_context().run, on_thread, inv.args[0])

    server = RpcServer(a.nc, lattice, "streamer", handler)
    await server.start()
    client = RpcClient(b.nc, lattice)
    try:
        rx = b.receiver()
        head = await client.call("streamer", "t:t/http.handle", [rx.offer()], timeout_s=10)
        assert head == {"status": 200, "stream": True}  # while the handler waits on `go`
        rx.expect()
        assert await rx.read() == b"first "
        go.set()
        assert await rx.read() == b"last" and await rx.read() is None
    finally:
        go.set()
        await server.stop()
        await client.close()
