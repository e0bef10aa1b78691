"""Fixtures of the HTTP tests: an in-process front with a fake caller, the test component."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from trellis.httpfront.config import ServerConfig
from trellis.httpfront.routes import Route
from trellis.providers.builtin.http_server.front import HttpFront

from .components.build import build_component
from .helpers import Conn

Serve = Callable[..., Awaitable[HttpFront]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(caller, route, ..., settings=ServerConfig(...))``: a running front; closed after."""
    fronts: list[HttpFront] = []

    async def start(caller: Any, *routes: Route, settings: ServerConfig | None = None) -> HttpFront:
        front = HttpFront(caller, settings)
        fronts.append(front)
        await front.start()
        for r in routes:
            front.put(r.key, r)
        await front.reconcile()
        assert front.health()[0], front.health()
        return front

    yield start
    for front in fronts:
        await front.close(reason="test teardown")
        assert len(front.tasks) == 0


@pytest.fixture(scope="session")
def httpapp() -> Path:
    """The `httpapp` test component (tests/http/components/httpapp), built once."""
    return build_component("httpapp")


@pytest.fixture(scope="session")
def bodyapp() -> Path:
    """The `bodyapp` test component: reads and writes bodies of any size in pieces."""
    return build_component("bodyapp")


@pytest.fixture(autouse=True)
async def close_client_connections() -> AsyncIterator[None]:
    """Connections a test opened with ``Conn.open`` are closed when it ends, pass or fail."""
    yield
    while Conn.opened:
        await Conn.opened.pop().close()
