"""Fixtures for the built-in providers: real Redis and PostgreSQL servers, test components."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trellis.providers.builtin._common import links

from .backends import PostgresServer, RedisServer
from .components.build import build


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A database of this test's own."""
    return postgres_server.create_database("t" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="session")
def kvtool() -> Path:
    return build("kvtool")


@pytest.fixture(scope="session")
def kvstore() -> Path:
    return build("kvstore")


@pytest.fixture(scope="session")
def publisher() -> Path:
    return build("publisher")


@pytest.fixture(scope="session")
def subscriber() -> Path:
    return build("subscriber")


@pytest.fixture(scope="session")
def sqltool() -> Path:
    return build("sqltool")


@pytest.fixture(autouse=True)
def short_link_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process providers refuse unlinked callers after 50 ms instead of 1 s (tests of the grace set it)."""
    monkeypatch.setattr(links, "LINK_GRACE_S", 0.05)
