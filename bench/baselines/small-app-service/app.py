"""The small app of the density benchmark as one always-on service: a hit counter in NATS key-value.

    GET /         increments the key ``hits`` of this app's own bucket and answers
                  200 {"app": APP_NAME, "hits": N}
    GET /healthz  200 once started
    anything else 404 (405 for another method on ``/``)

The increment is a compare-and-set on the key's revision, retried on conflict, as
Trellis's ``builtin:keyvalue-nats`` does it, so concurrent requests never lose a count.

Environment: ``PORT``, ``NATS_URL``, ``APP_NAME`` (letters, digits, ``-``, ``_``),
``BUCKET`` (default ``small-app-APP_NAME``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "common"))

from baseline_service import (  # noqa: E402 (after the sys.path or timing lines above)
    connect_nats,
    env_name,
    healthz,
    serve,
    settings_or_exit,
    setup_logging,
    text,
)
from kv import open_bucket  # noqa: E402 (after the sys.path or timing lines above)
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError  # noqa: E402 (after the sys.path or timing lines above)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.requests import Request  # noqa: E402 (after the sys.path or timing lines above)
from starlette.responses import Response  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Route  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "small-app"
KEY = "hits"
MAX_CAS_ATTEMPTS = 1000

log = setup_logging(SERVICE)
APP_NAME, BUCKET = settings_or_exit(SERVICE, lambda: (
    (name := env_name("APP_NAME")), env_name("BUCKET", f"small-app-{name}")))
state: dict[str, Any] = {}


async def increment(kv: Any) -> int:
    for attempt in range(MAX_CAS_ATTEMPTS):
        try:
            entry = await kv.get(KEY)
            current, revision = int(entry.value or b"0"), entry.revision
        except KeyNotFoundError:
            current, revision = 0, None
        try:
            if revision is None:
                await kv.create(KEY, str(current + 1).encode())
            else:
                await kv.update(KEY, str(current + 1).encode(), last=revision)
            return current + 1
        except KeyWrongLastSequenceError:
            await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))  # back off, jittered
    raise RuntimeError(f"increment of {KEY!r} gave up after {MAX_CAS_ATTEMPTS} conflicting writes")


async def hit(request: Request) -> Response:
    try:
        hits = await increment(state["kv"])
    except Exception as exc:
        log.error("incrementing %s in %s: %s: %s", KEY, BUCKET, type(exc).__name__, exc)
        return text(500, f"500 Internal Server Error: {type(exc).__name__}")
    return Response(json.dumps({"app": APP_NAME, "hits": hits}, separators=(",", ":")).encode(),
                    media_type="application/json")


async def not_found(request: Request, exc: Exception) -> Response:
    return text(404, "404 Not Found")


async def not_allowed(request: Request, exc: Exception) -> Response:
    return text(405, "405 Method Not Allowed")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    nc = await connect_nats(f"{SERVICE}-{APP_NAME}")
    state["kv"] = await open_bucket(nc, BUCKET)
    try:
        yield
    finally:
        await nc.drain()


app = Starlette(lifespan=lifespan, routes=[
    Route("/", hit, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
], exception_handlers={404: not_found, 405: not_allowed})

if __name__ == "__main__":
    serve(app, f"{SERVICE}-{APP_NAME}")
