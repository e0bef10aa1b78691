"""A Wasm thread's blocking calls to a provider of its host (``LocalRpcClient``), against a scripted
door on the provider's socket: replies whole or in pieces, a progress frame before the reply, silence
(the call is lost and goes over NATS), and a door that closes mid-call."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from trellis.interfaces.envelope import Invocation, ok_frame, progress_frame
from trellis.samehost import handoff
from trellis.samehost.local_rpc import REMOTE, LocalRpcClient, _Chan, provider_address

pytestmark = pytest.mark.skipif(not handoff.available(), reason="needs Linux abstract Unix sockets")

HOST = "C" * 56
_LEN = struct.Struct(">I")
Script = Callable[[socket.socket, Invocation], None]


def framed(frame: bytes) -> bytes:
    return _LEN.pack(len(frame)) + frame


def read_call(conn: socket.socket) -> Invocation | None:
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = _LEN.unpack(head)
    body = b""
    while len(body) < n:
        body += conn.recv(n - len(body))
    return Invocation.decode(body)


@pytest.fixture
def door(request: pytest.FixtureRequest) -> Iterator[Callable[[Script], str]]:
    """Serves the calls on one provider's socket with a script; yields a function that installs it."""
    lattice = f"lrc{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(provider_address(lattice, HOST, "prov"))
    sock.listen(8)
    scripts: list[Script] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                while (call := read_call(conn)) is not None:
                    scripts[0](conn, call)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def install(script: Script) -> str:
        scripts[:] = [script]
        return lattice

    yield install
    done.set()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    thread.join(5)


def call(client: LocalRpcClient, *args: object, timeout_s: float = 5.0) -> object:
    inv = Invocation("prov", "x:y/z", "f", list(args), "comp", f"id-{time.monotonic_ns()}",
                     int((time.time() + timeout_s) * 1000))
    return client.call(inv, inv.encode())


def test_replies_whole_in_pieces_and_after_progress(door: Callable[[Script], str]) -> None:
    def answer(conn: socket.socket, inv: Invocation) -> None:
        reply = framed(ok_frame(inv.id, ["got", *inv.args]))
        how = inv.args[0]
        if how == "whole":
            conn.sendall(reply)
        elif how == "pieces":  # the head alone, then the body in two writes
            for piece in (reply[:3], reply[3:9], reply[9:]):
                conn.sendall(piece)
                time.sleep(0.01)  # separate reads on the caller's side; the test does not wait on it
        else:  # a progress frame and the reply in one write: the reply is what is left over
            conn.sendall(framed(progress_frame(inv.id)) + reply)

    client = LocalRpcClient(door(answer), HOST, silence_s=1.0)
    try:
        for how in ("whole", "pieces", "progress", "whole"):
            assert call(client, how, 7) == ["got", how, 7]
    finally:
        client.close_thread()
    assert client.stats == {"calls": 4, "remote": 0, "lost": 0}


def test_a_silent_provider_loses_the_call_to_nats_and_a_closed_one_too(door: Callable[[Script], str]) -> None:
    def silent(conn: socket.socket, inv: Invocation) -> None:
        if inv.args[0] == "close":
            conn.shutdown(socket.SHUT_RDWR)
        # "quiet": never answers

    client = LocalRpcClient(door(silent), HOST, silence_s=0.2)
    try:
        assert call(client, "quiet") is REMOTE  # silence for silence_s: lost, may run again over NATS
        assert call(client, "close") is REMOTE
    finally:
        client.close_thread()
    assert client.stats["remote"] == 2 and client.stats["lost"] == 2


def test_large_frames_both_ways(door: Callable[[Script], str]) -> None:
    """Frames past the connection's 64 KiB buffer are sent and read whole (a progress frame in
    front in the same write), and the buffer goes back to its first size after one."""
    big = b"\xab" * (300 * 1024)

    def answer(conn: socket.socket, inv: Invocation) -> None:
        conn.sendall(framed(progress_frame(inv.id)) + framed(ok_frame(inv.id, ["got", inv.args[0]])))

    client = LocalRpcClient(door(answer), HOST, silence_s=1.0)
    try:
        assert call(client, big) == ["got", big]
        assert len(client._tls.conns["prov"].buf) == 64 * 1024
        assert call(client, big[:70000]) == ["got", big[:70000]]
    finally:
        client.close_thread()
    assert client.stats == {"calls": 2, "remote": 0, "lost": 0}


def test_a_read_that_times_out_mid_frame_keeps_what_it_read() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        chan = _Chan(a, 1.0)
        chan.set_timeout(0.05)
        data = framed(b"first frame") + framed(b"second")
        b.sendall(data[:7])
        with pytest.raises(TimeoutError):  # the kernel's timeout, not Python's poll
            chan.read_frame()
        b.sendall(data[7:])
        assert chan.read_frame() == b"first frame"
        assert chan.read_frame() == b"second"
        b.close()
        assert chan.read_frame() is None  # the peer closed
