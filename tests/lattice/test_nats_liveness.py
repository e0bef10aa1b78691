"""When a NATS connection counts as stale (trellis.interfaces.connection.connect).

A PONG comes after everything the server queued before it, so a process reading megabytes on a
slowed loop gets it late while the server keeps talking. That connection is alive and must stay
(it used to be dropped, and a worker's 2.7 MB reply with it: the flaky large-body test over NATS
at load >= 15). A server gone silent must still be noticed. A relay between the client and a
real nats-server plays both: it passes the server's bytes at a slow pace, then not at all.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg

from trellis.interfaces.connection import NatsSettings, connect
from trellis.natsserver import NatsServer

PING_S = 0.1  # pings ten times as often as in production: stale after ~0.3 s without a sign of life
BODY = 6 * 1024 * 1024
PIECE = 64 * 1024
PACE = 4 * 1024 * 1024  # bytes a second the relay passes from the server: the body takes ~1.5 s


class Relay:
    """A TCP relay to nats-server whose server-to-client direction is paced, or cut (a pulled cable:
    the sockets stay open, nothing passes either way)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("nats://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.cut = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(*self.upstream)
        self.tasks += [asyncio.ensure_future(self._pump(creader, swriter, paced=False)),
                       asyncio.ensure_future(self._pump(sreader, cwriter, paced=True))]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, paced: bool) -> None:
        try:
            while not self.cut.is_set():
                data = await reader.read(PIECE)
                if not data or self.cut.is_set():
                    break
                writer.write(data)
                await writer.drain()
                if paced:
                    await asyncio.sleep(len(data) / PACE)  # the pace of a slow reader, not a synchronisation
            await asyncio.Event().wait()  # cut (or closed): silence, the socket left open
        finally:
            writer.close()


async def test_a_server_that_keeps_talking_is_alive_and_a_silent_one_is_not(nats_server: NatsServer, lattice: str):
    subject = f"{lattice}.flood"
    lost = asyncio.Event()

    async def disconnected() -> None:
        lost.set()

    async with Relay(nats_server.url) as relay:
        nc = await connect(NatsSettings(url=relay.url), ping_interval=PING_S, max_outstanding_pings=2,
                           disconnected_cb=disconnected, max_reconnect_attempts=0)
        publisher = await connect(NatsSettings(url=nats_server.url))
        try:
            got = 0
            done = asyncio.Event()

            async def on_msg(msg: Msg) -> None:
                nonlocal got
                got += len(msg.data)
                if got >= BODY:
                    done.set()

            await nc.subscribe(subject, cb=on_msg)
            await nc.flush()
            for _ in range(BODY // PIECE):
                await publisher.publish(subject, b"x" * PIECE)
            await publisher.flush()
            # each ping's PONG waits behind megabytes the relay passes slowly: ~15 pings come late
            waits = {asyncio.ensure_future(e.wait()) for e in (done, lost)}
            await asyncio.wait(waits, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            assert not lost.is_set(), f"dropped as stale after {got} of {BODY} bytes, the server still talking"
            assert done.is_set()
            assert nc.is_connected
            # a pulled cable: nothing arrives any more, and the pings tell
            relay.cut.set()
            await asyncio.wait_for(lost.wait(), 10)
        finally:
            await publisher.close()
            await nc.close()
