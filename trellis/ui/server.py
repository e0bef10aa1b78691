"""`trellis ui`: the read-only dashboard, a Starlette app served by uvicorn.

    GET /             the page (one static file: HTML, CSS and JS, no CDN)
    GET /api/state    the current snapshot (JSON)
    GET /api/events   server-sent events: a ``state`` event with the snapshot on every change
                      (at most ``MAX_RATE_HZ`` a second), a comment every 15 s to keep proxies open
    GET /healthz      ``ok``

Nothing here changes the lattice: there is no route but GET.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from trellis.interfaces.connection import NatsSettings

from .state import LatticeState

PAGE = Path(__file__).with_name("static") / "index.html"
MAX_RATE_HZ = 4.0
KEEPALIVE_S = 15.0


def make_app(nats: NatsSettings, lattice: str, state: LatticeState | None = None) -> Starlette:
    st = state or LatticeState(nats, lattice)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await st.start()
        try:
            yield
        finally:
            await st.close()

    async def page(_: Request) -> FileResponse:
        return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})

    async def state_json(_: Request) -> JSONResponse:
        return JSONResponse(st.snapshot())

    async def healthz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def stream(request: Request) -> StreamingResponse:
        async def frames() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            seen = -1
            while not await request.is_disconnected():
                version = await st.wait_change(seen, KEEPALIVE_S)
                if version == seen:
                    yield ": keepalive\n\n"
                    continue
                seen = version
                yield f"event: state\ndata: {json.dumps(st.snapshot(), separators=(',', ':'), default=str)}\n\n"
                await asyncio.sleep(1 / MAX_RATE_HZ)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app = Starlette(routes=[Route("/", page), Route("/api/state", state_json), Route("/api/events", stream),
                            Route("/healthz", healthz)], lifespan=lifespan)
    app.state.lattice_state = st
    return app


def bind(host: str, port: int) -> socket.socket:
    """The dashboard's listening socket (port 0: any free port); a clear error when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc} "
                      "(pick another port with --port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


async def serve(nats: NatsSettings, lattice: str, sock: socket.socket) -> None:
    """Serve the dashboard on ``sock`` until SIGINT/SIGTERM (which uvicorn handles) or cancelled."""
    import uvicorn

    config = uvicorn.Config(make_app(nats, lattice), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])
