"""What every baseline service shares: settings from the environment, logging, NATS, and uvicorn.

A service is one process serving one Starlette app under uvicorn (uvloop, httptools), the
way a container would run it: everything it needs comes from environment variables, read
once at start-up. A missing or bad variable stops the process with a one-line error.

Variables every service reads:

* ``PORT`` (required): the HTTP port; ``HOST`` (default ``127.0.0.1``) the address.
* ``LOG_LEVEL`` (default ``info``): the services' own log level; uvicorn logs warnings only
  and keeps no access log (as a service under load would be run).
* ``NATS_URL``: for the services that use NATS.

When started by the launcher (``bench/baselines/services.py``), a service also stops when its
parent dies (see ``exit_with_parent``); run by hand or in a container, it does not need Trellis.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: NATS KV bucket names and app names: what JetStream takes in a stream's name
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class SettingsError(Exception):
    """An environment variable is missing or unusable (the message says which and why)."""


def env(name: str, default: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(name, default)
    if value is None or value == "":
        raise SettingsError(f"{name} is not set")
    return value


def env_port(name: str = "PORT", environ: Mapping[str, str] = os.environ) -> int:
    raw = env(name, environ=environ)
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={port} is not a port number (1-65535)")
    return port


def env_name(name: str, default: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    value = env(name, default, environ)
    if not NAME_RE.match(value):
        raise SettingsError(f"{name}={value!r}: use letters, digits, '-' and '_'")
    return value


def env_url(name: str, environ: Mapping[str, str] = os.environ) -> str:
    value = env(name, environ=environ).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={value!r} is not an http:// or https:// URL")
    return value


def setup_logging(service: str) -> logging.Logger:
    level = os.environ.get("LOG_LEVEL", "info").upper()
    logging.basicConfig(level=level if level in logging.getLevelNamesMapping() else "INFO", stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {service}: %(message)s")
    return logging.getLogger(service)


def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 once the service has started (uvicorn answers only after start-up)."""
    return JSONResponse({"status": "ok"})


def text(status: int, body: str) -> Response:
    """A plain-text answer, as the Trellis components write theirs (``text/plain; charset=utf-8``)."""
    return Response(body.encode(), status_code=status, media_type="text/plain; charset=utf-8")


def failure(case: str, message: str, status: int = 500) -> Response:
    """An internal service's error: the WIT error case and its text (see rpc.py in platform-poc-services)."""
    return JSONResponse({"error": case, "message": message}, status_code=status)


#: how long a service waits for NATS at start-up before it gives up (and exits 1, to be restarted)
NATS_START_TIMEOUT_S = 10.0


async def connect_nats(service: str) -> Any:
    """A NATS connection to ``NATS_URL`` that, once made, reconnects for ever (a service outlives
    NATS restarts). At start-up NATS must answer within ``NATS_START_TIMEOUT_S``: if not, the
    service logs one line and exits with status 1, as a container does for its runtime to restart it."""
    import asyncio

    import nats

    url = env("NATS_URL")
    log = logging.getLogger(service)

    async def error(exc: Exception) -> None:  # one line, not nats-py's traceback per attempt
        log.warning("NATS %s: %s: %s", url, type(exc).__name__, exc)

    try:
        return await asyncio.wait_for(nats.connect(url, name=f"baseline-{service}", max_reconnect_attempts=-1,
                                                   reconnect_time_wait=0.5, connect_timeout=2, error_cb=error),
                                      NATS_START_TIMEOUT_S)
    except Exception as exc:  # TimeoutError, or nats-py giving up
        sys.stderr.write(f"{service}: cannot reach NATS at {url} within {NATS_START_TIMEOUT_S:.0f}s "
                         f"({type(exc).__name__})\n")
        sys.stderr.flush()
        os._exit(1)


def serve(app: Any, service: str) -> None:
    """Run ``app`` on ``HOST:PORT`` until SIGTERM/SIGINT (uvicorn's graceful stop, then the lifespan's)."""
    try:
        host, port = os.environ.get("HOST", "127.0.0.1"), env_port()
    except SettingsError as exc:
        sys.exit(f"{service}: {exc}")
    exit_with_parent()
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on", proxy_headers=False,
                log_level="warning", access_log=False, server_header=False, timeout_graceful_shutdown=5)


#: set by a Trellis supervisor in its children's environment (trellis.kit.procs.EXIT_WITH_PARENT_ENV)
EXIT_WITH_PARENT_ENV = "TRELLIS_EXIT_WITH_PARENT"
ORPHAN_GRACE_S = 1.0


def exit_with_parent() -> None:
    """Started by a supervisor (the launcher): stop when it is gone, as ``trellis.kit.procs.exit_with_parent``
    does, but waiting on the parent's pidfd instead of polling, so an idle service wakes up for nothing.

    The death signal the launcher sets (``trellis.kit.procs.spawn``) usually comes first; this covers a
    launcher that started us from another thread. Run by hand or in a container, it does nothing.
    """
    if os.environ.get(EXIT_WITH_PARENT_ENV) != "1":
        return
    parent = os.getppid()
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux >= 5.3: the project's polling watch
        from trellis.kit import procs

        procs.exit_with_parent()
        return

    def watch() -> None:
        if os.getppid() == parent:  # else it died before we opened its pidfd
            select.select([fd], [], [])  # readable once the parent has exited
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful stop
        time.sleep(ORPHAN_GRACE_S)  # then go, whatever the stop is waiting on
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def settings_or_exit(service: str, read: Any) -> Any:
    """``read()`` (the service's settings from the environment), or exit with its one-line error."""
    try:
        return read()
    except SettingsError as exc:
        sys.exit(f"{service}: {exc}")
