"""``builtin:sqldb-postgres``: ``trellis:sql/query`` on a PostgreSQL server (asyncpg, pooled).

Parameters are always bound (asyncpg's extended protocol), never spliced into
the SQL text. Each call is its own transaction: one statement with parameters,
or, for ``execute`` without parameters, a script of several statements (one
implicit transaction). Types the WIT has no case for (numeric, dates and times,
uuid, json, network addresses) travel as PostgreSQL's own text form, both ways:
a component passes ``text("2024-05-01 12:00:00+00")`` for a ``timestamptz``.

One pool per distinct connection settings, shared by the links that use them,
opened on first use. See docs/builtin-providers.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from trellis.providers.builtin._common import config as cfgs
from trellis.providers.builtin._common.sql import (
    CONNECTION_FAILED,
    CONSTRAINT_VIOLATION,
    INVALID_QUERY,
    OTHER,
    SqlBackend,
    SqlError,
    numbered,
    rows,
)
from trellis.providers.sdk import Link, Provider, run

log = logging.getLogger("trellis.providers.builtin.sqldb_postgres")

NAME = "sqldb-postgres"
KEYS = ("url", "host", "port", "user", "password", "database", "ssl", "pool_min", "pool_max", "connect_timeout_s",
        "statement_cache_size")
#: types that travel as their PostgreSQL text form (the WIT has no case for them)
TEXT_TYPES = ("numeric", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "uuid", "json", "jsonb",
              "inet", "cidr", "macaddr")
#: command tags whose last number counts changed rows
_CHANGING = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
#: pool.close() waits this long for connections in use before terminating them
POOL_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PoolKey:
    """Connection settings: links with equal keys share one pool."""

    url: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    database: str | None = None
    ssl: str | None = None
    pool_min: int = 1
    pool_max: int = 10
    connect_timeout_s: float = 5.0
    statement_cache_size: int = 100

    def __repr__(self) -> str:  # never a password in logs
        return f"PoolKey({self.describe()})"

    def describe(self) -> str:
        if self.url:
            return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", self.url)
        return f"postgresql://{self.user or ''}@{self.host or 'localhost'}:{self.port or 5432}/{self.database or ''}"


def pool_key(cfg: Mapping[str, str]) -> PoolKey:
    cfgs.unknown_keys(cfg, KEYS, NAME)
    url = cfgs.text(cfg, "url")
    if url is not None and not url.startswith(("postgres://", "postgresql://")):
        raise cfgs.ConfigError(f"url must start with postgresql:// or postgres://; got {url.split('@')[-1]!r}")
    host = cfgs.text(cfg, "host")
    if url is None and host is None:
        raise cfgs.ConfigError("give url=postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or host (with port, "
                               "user, password, database)")
    pool_min = cfgs.integer(cfg, "pool_min", 1, minimum=0)
    return PoolKey(
        url=url, host=host, port=cfgs.integer(cfg, "port", 0, minimum=0, maximum=65535) or None,
        user=cfgs.text(cfg, "user"), password=cfg.get("password") or None, database=cfgs.text(cfg, "database"),
        ssl=cfgs.choice(cfg, "ssl", "", ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"))
        or None,
        pool_min=pool_min, pool_max=cfgs.integer(cfg, "pool_max", max(10, pool_min), minimum=max(1, pool_min)),
        connect_timeout_s=cfgs.number(cfg, "connect_timeout_s", 5.0, minimum=0.1),
        statement_cache_size=cfgs.integer(cfg, "statement_cache_size", 100, minimum=0),
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _number_text(value: object) -> str:
    """numeric accepts int and float parameters too (as their decimal text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"expected text, int or float, got {type(value).__name__}")
    return str(value)


async def _text_codecs(conn: asyncpg.Connection) -> None:
    for name in TEXT_TYPES:
        encoder = _number_text if name == "numeric" else _text
        await conn.set_type_codec(name, schema="pg_catalog", encoder=encoder, decoder=str, format="text")


async def open_pool(k: PoolKey) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn=k.url, host=k.host, port=k.port, user=k.user, password=k.password, database=k.database, ssl=k.ssl,
        min_size=k.pool_min, max_size=k.pool_max, timeout=k.connect_timeout_s,
        statement_cache_size=k.statement_cache_size, init=_text_codecs)
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        pool.terminate()


def classify(exc: BaseException) -> SqlError:
    """An asyncpg (or socket) exception → the WIT ``sql-error`` case, with the server's message."""
    message = str(exc) or exc.__class__.__name__
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, asyncpg.PostgresConnectionError) or state.startswith(("08", "57P", "28")) or state in (
                "3D000", "53300"):
            return SqlError(CONNECTION_FAILED, message)  # cannot connect, auth, no such database, shut down
        if state.startswith("23"):
            return SqlError(CONSTRAINT_VIOLATION, message)
        if state.startswith("42"):
            return SqlError(INVALID_QUERY, message)  # syntax, unknown table or column, wrong types
        if type(exc) is asyncpg.DataError and "query argument" in message:
            return SqlError(INVALID_QUERY, message)  # a parameter that does not fit its placeholder's type
        return SqlError(OTHER, message)
    if isinstance(exc, asyncpg.InterfaceError):
        if "argument" in message:  # "the server expects 2 arguments for this query, 1 was passed"
            return SqlError(INVALID_QUERY, message)
        return SqlError(OTHER, message)
    if isinstance(exc, (OSError, ConnectionError, asyncio.TimeoutError)):
        return SqlError(CONNECTION_FAILED, message)
    return SqlError(OTHER, message)


def rows_changed(status: str) -> int:
    """``"INSERT 0 3"`` → 3, ``"UPDATE 2"`` → 2, ``"CREATE TABLE"`` → 0."""
    parts = status.split()
    if parts and parts[0] in _CHANGING and parts[-1].isdigit():
        return int(parts[-1])
    return 0


#: what a statement can fail with, besides the server's errors
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class SqldbPostgres(SqlBackend[PoolKey, asyncpg.Pool]):
    name = NAME
    resource_kind = "pool"
    #: a manifest secret named `password` (or `url`) sets that key: no password in config
    secret_keys = ("password", "url")

    @property
    def pools(self) -> Any:
        return self.resources

    def link_key(self, link: Link, config: dict[str, str]) -> PoolKey:
        return pool_key(config)

    async def open(self, key: PoolKey) -> asyncpg.Pool:
        return await open_pool(key)

    async def close(self, resource: asyncpg.Pool) -> None:
        await close_pool(resource)

    def describe(self, key: PoolKey) -> str:
        return key.describe()

    async def ping(self, resource: asyncpg.Pool) -> None:
        await resource.fetchval("SELECT 1")

    def open_error(self, key: PoolKey, exc: Exception) -> SqlError | None:
        return classify(exc)

    async def query(self, resource: asyncpg.Pool, sql: str, params: list[Any],
                    timeout_s: float) -> list[list[list[Any]]]:
        async with asyncio.timeout(timeout_s):  # outside: its TimeoutError is the deadline, not a failure
            try:
                async with resource.acquire() as conn:
                    records = await conn.fetch(sql, *params)
            except _FAILURES as exc:
                raise classify(exc) from None
        return rows(list(records[0].keys()) if records else (), records)

    async def execute(self, resource: asyncpg.Pool, sql: str, params: list[Any], timeout_s: float) -> int:
        async with asyncio.timeout(timeout_s):
            try:
                async with resource.acquire() as conn:
                    status = await conn.execute(sql, *params)
            except _FAILURES as exc:
                raise classify(exc) from None
        return rows_changed(status)

    async def execute_batch(self, resource: asyncpg.Pool, statements: list[tuple[str, list[Any]]],
                            timeout_s: float) -> list[int]:
        counts: list[int] = []
        n = 0  # the statement running (0: none yet; == len(counts): committing)
        async with asyncio.timeout(timeout_s):
            try:
                async with resource.acquire() as conn, conn.transaction():
                    for n, (sql, params) in enumerate(statements, start=1):  # noqa: B007 (n: the failing one, below)
                        counts.append(rows_changed(await conn.execute(sql, *params)))
            except _FAILURES as exc:
                error = classify(exc)
                raise (numbered(n, error) if len(counts) < n else error) from None
        return counts


def build() -> Provider:
    """A fresh provider (each test builds its own, so no state leaks between them)."""
    return SqldbPostgres().sql_provider("trellis:sql on PostgreSQL")


provider = build()

if __name__ == "__main__":
    run(provider)
