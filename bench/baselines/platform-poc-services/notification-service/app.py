"""notification-service: logs every order announced on the notification subject (core NATS).

The baseline of the Trellis component ``examples/platform-poc/notification-service``, which
``builtin:messaging-nats`` calls for each message of its subscription. Here the service
subscribes itself, in a queue group (so replicas would share the messages, as the
provider's instances do), and logs the same banner to stderr.

    GET /healthz

Environment: ``PORT``, ``NATS_URL``, ``NOTIFICATION_SUBJECT`` (default
``platform-poc.order-notification``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "common"), str(HERE.parents[1] / "common")]

from baseline_service import (  # noqa: E402 (after the sys.path or timing lines above)
    connect_nats,
    env,
    healthz,
    serve,
    settings_or_exit,
    setup_logging,
)
from starlette.applications import Starlette  # noqa: E402 (after the sys.path or timing lines above)
from starlette.routing import Route  # noqa: E402 (after the sys.path or timing lines above)

SERVICE = "notification-service"
BANNER = "*" * 76

log = setup_logging(SERVICE)
SUBJECT = settings_or_exit(SERVICE, lambda: env("NOTIFICATION_SUBJECT", "platform-poc.order-notification"))


async def on_message(msg: Any) -> None:
    try:
        order_number = json.loads(msg.data)["order_number"]
    except (ValueError, KeyError, TypeError) as exc:
        log.error("%s: not an order notification (%s: %s)", msg.subject, type(exc).__name__, exc)
        return
    log.info("\n%s\n****** Received order number %s\n%s", BANNER, order_number, BANNER)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    nc = await connect_nats(SERVICE)
    await nc.subscribe(SUBJECT, queue=SERVICE, cb=on_message)
    await nc.flush(timeout=5)
    try:
        yield
    finally:
        await nc.drain()


app = Starlette(lifespan=lifespan, routes=[Route("/healthz", healthz, methods=["GET"])])

if __name__ == "__main__":
    serve(app, SERVICE)
