"""Body sources and sinks (trellis/kit/bodies.py): pipes between an event loop and a Wasm thread,
bounded both ways."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest

from trellis.kit.bodies import BodyError, BytesSource, CollectSink, PipeSink, PipeSource


def test_whole_bodies():
    src = BytesSource(b"abcdef")
    assert (src.read(4), src.read(4), src.read(4)) == (b"abcd", b"ef", None)
    sink = CollectSink(5, "response body")
    sink.write(b"abc")
    with pytest.raises(BodyError, match="would pass 5 bytes"):
        sink.write(b"def")


async def test_a_pipe_source_pauses_its_feeder_and_reads_on_a_thread():
    loop = asyncio.get_running_loop()
    events: list[str] = []
    resumed = asyncio.Event()

    def resume() -> None:
        events.append("resume")
        resumed.set()

    src = PipeSource(loop, lambda: events.append("pause"), resume, high=1000)
    chunk = bytes(range(250))
    for _ in range(5):
        src.feed(chunk)
    assert events == ["pause"] and src.buffered == 1250  # past high: paused once
    digest = hashlib.sha256()

    def reader() -> int:
        n = 0
        while True:
            piece = src.read(300)
            if piece is None:
                return n
            if piece == b"":
                assert src.wait(10)
                continue
            digest.update(piece)
            n += len(piece)

    done = loop.run_in_executor(None, reader)
    await asyncio.wait_for(resumed.wait(), 10)  # read below half: resumed, on the loop
    for _ in range(3):
        src.feed(chunk)
    src.end()
    assert await asyncio.wait_for(done, 10) == 8 * 250
    assert digest.digest() == hashlib.sha256(chunk * 8).digest()
    assert src.peak <= 1250


async def test_a_failed_source_fails_its_reader():
    src = PipeSource(asyncio.get_running_loop(), lambda: None, lambda: None)
    src.feed(b"part")
    src.fail("the client went away")
    assert src.read(100) == b"part"
    with pytest.raises(BodyError, match="went away"):
        src.read(100)


async def test_a_pipe_sink_sends_on_the_loop_and_its_writer_waits_while_held():
    loop = asyncio.get_running_loop()
    sent: list[bytes] = []
    finished = asyncio.Event()
    sink = PipeSink(loop, sent.extend, finished.set, lambda why: None, high=100)
    sink.hold()  # the far side takes nothing for now
    assert sink.capacity() == 0
    released = threading.Event()

    def writer() -> None:
        sink.write(b"a" * 60)
        assert sink.wait(10)  # returns once released
        released.set()
        sink.write(b"b" * 60)
        sink.finish()

    done = loop.run_in_executor(None, writer)
    sink.release()
    await asyncio.wait_for(done, 10)
    await asyncio.wait_for(finished.wait(), 10)
    assert b"".join(sent) == b"a" * 60 + b"b" * 60 and released.is_set()
    sink.fail("the client went away")
    with pytest.raises(BodyError):
        sink.write(b"c")
