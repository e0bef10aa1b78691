"""The SQLite database inventory-service, orders-service and data-init share: one file, three processes.

Opened as Trellis's ``builtin:sqldb-sqlite`` opens it (WAL, ``synchronous=NORMAL``,
``foreign_keys`` on, a 5 s ``busy_timeout`` for the other processes' locks), so both
systems pay for the same durability. Each process keeps one connection and runs its
statements on one thread of its own, one at a time (what aiosqlite does), so the event
loop never waits on the disk. The tables are the Trellis app's own
(``examples/platform-poc/common/schema.py``, loaded by path: one definition for both).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from baseline_service import SettingsError

REPO = Path(__file__).resolve().parents[4]
SCHEMA_FILE = REPO / "examples" / "platform-poc" / "common" / "schema.py"
DB_FILE = "platform-poc.db"


def _load_schema() -> ModuleType:
    spec = importlib.util.spec_from_file_location("platform_poc_schema", SCHEMA_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SCHEMA_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schema = _load_schema()


def db_path() -> Path:
    """``DATA_DIR/platform-poc.db`` (``DATA_DIR`` required; created if missing)."""
    raw = os.environ.get("DATA_DIR")
    if not raw:
        raise SettingsError("DATA_DIR is not set")
    data_dir = Path(raw).expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"DATA_DIR={raw!r}: {exc.strerror}") from None
    return data_dir / DB_FILE


Params = Sequence[Any]


class Database:
    """One connection in autocommit mode, used from one thread; every method is a coroutine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> Database:
        await self._run(self._open)
        return self

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "Database.open() first"
        return self._conn

    async def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._run(lambda: self.conn.execute(sql, params).fetchall())

    async def execute(self, sql: str, params: Params = ()) -> None:
        await self._run(lambda: self.conn.execute(sql, params).fetchall())

    async def transaction(self, statements: list[tuple[str, Params]]) -> None:
        """All of ``statements`` or none (BEGIN IMMEDIATE: the write lock first, so no upgrade deadlock)."""
        def run() -> None:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        await self._run(run)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)


def marks(count: int, width: int = 1) -> str:
    """``count`` groups of ``width`` ``?`` placeholders: ``marks(2, 3)`` is ``(?, ?, ?), (?, ?, ?)``;
    with ``width=1`` the groups are bare: ``marks(3)`` is ``?, ?, ?`` (for ``IN (...)``)."""
    if width == 1:
        return ", ".join(["?"] * count)
    group = "(" + ", ".join(["?"] * width) + ")"
    return ", ".join([group] * count)


def describe(exc: BaseException) -> str:
    """A sqlite3 error as the Trellis SQL provider's error text reads (its kind, then the message)."""
    name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    return f"{name}: {exc}"
