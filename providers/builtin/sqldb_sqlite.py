"""``builtin:sqldb-sqlite``: ``trellis:sql/query`` on embedded SQLite databases, the default SQL backend.

Each database is one ``sqlite3`` connection in autocommit mode, served by its
own thread (SQLite work never blocks the event loop; statements on one
database run one at a time). Files use WAL, ``foreign_keys`` is on (as in
PostgreSQL), and ``busy_timeout`` waits for other processes' locks. SQL is
written with ``$1, $2, ...`` placeholders, rewritten to SQLite's ``?1, ?2, ...``.

A link's database is ``path`` from its config (relative paths live under
``data_dir``), ``:memory:`` for a private in-memory database, or by default
``DATA_DIR/<lattice>/<component>.db``: each component its own file. See
docs/builtin-providers.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from providers.builtin._common import config as cfgs
from providers.builtin._common.health import probe_each
from providers.builtin._common.lifecycle import LinkedBackend
from providers.builtin._common.shared import Shared
from providers.builtin._common.sql import (
    CONNECTION_FAILED,
    CONSTRAINT_VIOLATION,
    INVALID_QUERY,
    OTHER,
    SqlError,
    SqlFront,
    row,
    sqlite_placeholders,
)
from providers.sdk import Link, Provider, run

log = logging.getLogger("providers.builtin.sqldb_sqlite")

NAME = "sqldb-sqlite"
MEMORY = ":memory:"
KEYS = ("path", "data_dir", "busy_timeout_ms", "journal_mode", "synchronous", "foreign_keys")
T = TypeVar("T")


def default_data_dir(info: Any) -> Path:
    """Where databases live unless ``data_dir`` says: the host's state dir when the SDK passes it,
    else ``$TRELLIS_STATE_DIR``, else ``~/.trellis`` (the host's default), plus ``sqlite``."""
    state = getattr(info, "state_dir", None) or os.environ.get("TRELLIS_STATE_DIR") or "~/.trellis"
    return Path(state).expanduser() / "sqlite"


@dataclass(frozen=True)
class DbKey:
    """One database connection: links with equal keys share it."""

    path: str
    busy_timeout_ms: int = 5000
    journal_mode: str = "wal"
    synchronous: str = "normal"
    foreign_keys: bool = True
    #: ``:memory:`` databases belong to one link
    owner: tuple[str, ...] = ()


def db_key(cfg: Mapping[str, str], link: Link, lattice: str, data_dir: Path) -> DbKey:
    cfgs.unknown_keys(cfg, KEYS, NAME)
    path = cfgs.text(cfg, "path")
    base = Path(cfgs.text(cfg, "data_dir") or data_dir).expanduser()
    owner: tuple[str, ...] = ()
    if path == MEMORY:
        resolved, owner = MEMORY, link.identity
    elif path is None:
        name = link.source_id if link.name == "default" else f"{link.source_id}.{link.name}"
        resolved = str(base / lattice / f"{name}.db")
    else:
        p = Path(path).expanduser()
        resolved = str(p if p.is_absolute() else base / p)
    return DbKey(
        path=resolved,
        busy_timeout_ms=cfgs.integer(cfg, "busy_timeout_ms", 5000, minimum=0),
        journal_mode=cfgs.choice(cfg, "journal_mode", "wal", ("wal", "delete", "truncate", "persist", "memory")),
        synchronous=cfgs.choice(cfg, "synchronous", "normal", ("off", "normal", "full", "extra")),
        foreign_keys=cfgs.boolean(cfg, "foreign_keys", True),
        owner=owner,
    )


def classify(exc: Exception) -> SqlError:
    """A sqlite3 exception → the WIT ``sql-error`` case."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    message = str(exc) or exc.__class__.__name__
    if isinstance(exc, sqlite3.IntegrityError) or name.startswith("SQLITE_CONSTRAINT"):
        return SqlError(CONSTRAINT_VIOLATION, message)
    if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError, OverflowError)):
        return SqlError(INVALID_QUERY, message)  # placeholders vs parameters, several statements, bad value
    if name in ("SQLITE_ERROR", "SQLITE_RANGE"):
        return SqlError(INVALID_QUERY, message)  # syntax errors, unknown tables and columns
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB", "SQLITE_PERM")):
        return SqlError(CONNECTION_FAILED, message)
    return SqlError(OTHER, message)


def split_statements(sql: str) -> list[str]:
    """The statements of a script (``CREATE TRIGGER ... END;`` stays whole); empty ones dropped."""
    out: list[str] = []
    buf = ""
    pieces = sql.split(";")
    for n, piece in enumerate(pieces):
        if n == len(pieces) - 1:
            buf += piece
            break
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if _has_code(buf):
                out.append(buf)
            buf = ""
    if _has_code(buf):
        out.append(buf)
    return out


def _has_code(text: str) -> bool:
    """Whether ``text`` holds more than whitespace, semicolons and comments."""
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    return bool("".join(lines).replace(";", "").strip())


class SqliteDb:
    """One connection and the thread that serves it."""

    def __init__(self, key: DbKey) -> None:
        self.key = key
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{Path(key.path).name}")
        self.conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, key: DbKey) -> "SqliteDb":
        db = cls(key)
        try:
            await db.run(db._connect)
        except BaseException:
            db._thread.shutdown(wait=False)
            raise
        return db

    def _connect(self) -> None:
        k = self.key
        if k.path != MEMORY:
            Path(k.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(k.path, isolation_level=None, check_same_thread=False,
                               timeout=k.busy_timeout_ms / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(k.busy_timeout_ms)}")
            conn.execute(f"PRAGMA foreign_keys = {'ON' if k.foreign_keys else 'OFF'}")
            if k.path != MEMORY:
                conn.execute(f"PRAGMA journal_mode = {k.journal_mode.upper()}").fetchall()
                conn.execute(f"PRAGMA synchronous = {k.synchronous.upper()}")
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the database's thread; cancelling interrupts the statement it is running."""
        future = self._thread.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel() and self.conn is not None:
                self.conn.interrupt()  # running: stop it (thread-safe), so the thread is free again
            raise

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await asyncio.wrap_future(self._thread.submit(conn.close))
        self._thread.shutdown(wait=False)

    # --- on the database's thread ----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise SqlError(CONNECTION_FAILED, f"database {self.key.path} is closed")
        return self.conn

    def query_sync(self, sql: str, params: list[Any]) -> list[list[list[Any]]]:
        try:
            cur = self._conn().execute(sqlite_placeholders(sql), params)
            columns = [d[0] for d in cur.description or ()]
            return [row(columns, r) for r in cur.fetchall()]
        except (sqlite3.Error, OverflowError) as exc:
            raise classify(exc) from None

    def execute_sync(self, sql: str, params: list[Any]) -> int:
        conn = self._conn()
        try:
            statements = split_statements(sql)
            if len(statements) > 1 and not params:
                return self._script(conn, statements)
            cur = conn.execute(sqlite_placeholders(sql), params)
            cur.fetchall()  # RETURNING rows: the count is known once they are read
            return max(cur.rowcount, 0)
        except (sqlite3.Error, OverflowError) as exc:
            raise classify(exc) from None

    @staticmethod
    def _script(conn: sqlite3.Connection, statements: list[str]) -> int:
        """Several statements, one transaction (as PostgreSQL runs a multi-statement string)."""
        conn.execute("BEGIN")
        try:
            count = 0
            for statement in statements:
                cur = conn.execute(statement)
                cur.fetchall()
                count = max(cur.rowcount, 0)
            conn.execute("COMMIT")
            return count
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class SqliteLink:
    """One link's database."""

    def __init__(self, key: DbKey, dbs: Shared[DbKey, SqliteDb]) -> None:
        self.key = key
        self._dbs = dbs

    async def _db(self) -> SqliteDb:
        try:
            return await self._dbs.get(self.key)
        except (sqlite3.Error, OSError) as exc:
            raise SqlError(CONNECTION_FAILED, f"cannot open {self.key.path}: {exc}") from None

    async def query(self, sql: str, params: list[Any]) -> list[list[list[Any]]]:
        db = await self._db()
        return await db.run(db.query_sync, sql, params)

    async def execute(self, sql: str, params: list[Any]) -> int:
        db = await self._db()
        return await db.run(db.execute_sync, sql, params)


class SqldbSqlite(LinkedBackend[SqliteLink]):
    name = NAME

    def __init__(self) -> None:
        self.dbs: Shared[DbKey, SqliteDb] = Shared(f"{NAME} database", SqliteDb.open, lambda db: db.close())
        self.lattice = "default"
        self.data_dir = default_data_dir(None)
        super().__init__()

    async def started(self, info: Any) -> None:
        self.lattice = info.lattice
        self.data_dir = default_data_dir(info)

    async def build_link(self, link: Link, config: dict[str, str]) -> SqliteLink:
        key = db_key(config, link, self.lattice, self.data_dir)
        self.dbs.attach(key)
        return SqliteLink(key, self.dbs)

    async def teardown_link(self, state: SqliteLink) -> None:
        await self.dbs.detach(state.key)

    async def probe(self) -> tuple[bool, str]:
        keys = self.dbs.keys()

        async def check(k: DbKey) -> None:
            db = await self.dbs.get(k)
            await db.run(lambda: db._conn().execute("SELECT 1").fetchall())

        down = await probe_each([(k.path, partial(check, k)) for k in keys])
        summary = f"{len(self.links)} link(s), {len(keys)} database(s)"
        return not down, "; ".join([summary, *down, *self.link_problems()])

    async def close_backends(self) -> None:
        await self.dbs.close_all()


def build() -> Provider:
    """A fresh provider (each test builds its own, so no state leaks between them)."""
    impl = SqldbSqlite()
    return impl.provider([SqlFront(NAME, impl.links)], "trellis:sql on embedded SQLite databases")


provider = build()

if __name__ == "__main__":
    run(provider)
