"""``builtin:sqldb-sqlite``: ``trellis:sql/query`` on embedded SQLite databases, the default SQL backend.

Each database is one ``sqlite3`` connection in autocommit mode, kept open
while links use it. Files use WAL with ``synchronous=NORMAL``: a committed
statement survives the provider's process crashing (it is in the WAL when the
call returns); a power cut or an OS crash may lose the last commits but never
corrupts the file. ``foreign_keys`` is on (as in PostgreSQL), and
``busy_timeout`` waits for other processes' locks. SQL is written with
``$1, $2, ...`` placeholders, rewritten to SQLite's ``?1, ?2, ...``;
``sqlite3`` keeps the prepared statements (by SQL text) for reuse.

Where statements run: writes, scripts and anything else that may change the
database run on the database's own thread, one at a time, in the order they
arrive; they wait for other processes' locks there (up to ``busy_timeout_ms``)
and are interrupted at the caller's deadline. A plain read (a query that is a
``SELECT`` or ``VALUES``) is first tried on the event loop, within a budget
(``inline_budget_ms``, checked by SQLite's progress handler) and without
waiting for locks: nearly every read of an application (a few rows) is done
well within it, with no hand-off to another thread. A read that runs longer or
finds the database locked is stopped and run again on the thread. Reads run on
the loop only while the thread has nothing to do, so statements on one
database still run one at a time, in order. Only WAL and ``:memory:``
databases (where readers do not wait for writers) are read on the loop.
Writes stay off the loop however short: a commit writes to the WAL, and a disk
that stalls that write would stall the whole loop (no progress frames: a
caller would presume the call lost and send it again).

A link's database is ``path`` from its config (relative paths live under
``data_dir``), ``:memory:`` for a private in-memory database, or by default
``DATA_DIR/<lattice>/<component>.db``: each component its own file. See
docs/builtin-providers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    sqlite_placeholders,
)
from trellis.providers.sdk import Link, Provider, run

log = logging.getLogger("trellis.providers.builtin.sqldb_sqlite")

NAME = "sqldb-sqlite"
MEMORY = ":memory:"
KEYS = ("path", "data_dir", "busy_timeout_ms", "journal_mode", "synchronous", "foreign_keys", "inline_budget_ms")
#: SQLite virtual-machine steps between two looks at the clock while a read runs on the loop
PROGRESS_STEPS = 1000


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
    #: how long a read may run on the event loop before it moves to the database's thread (0: never)
    inline_budget_ms: int = 1
    #: ``:memory:`` databases belong to one link
    owner: tuple[str, ...] = ()

    @property
    def inline(self) -> bool:
        """Whether reads may run on the loop: only where readers do not wait for writers."""
        return self.inline_budget_ms > 0 and (self.path == MEMORY or self.journal_mode == "wal")


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
        inline_budget_ms=cfgs.integer(cfg, "inline_budget_ms", 1, minimum=0, maximum=1000),
        owner=owner,
    )


def classify(exc: BaseException) -> SqlError:
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


def _interrupted(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", "") == "SQLITE_INTERRUPT" or str(exc) == "interrupted")


def _busy(exc: BaseException) -> bool:
    """Another connection holds a lock the statement needs (it did nothing: it may be run again)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_BUSY") or str(exc).startswith("database is locked")


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


@functools.lru_cache(maxsize=256)
def _script(sql: str) -> tuple[str, ...] | None:
    """The statements of ``sql`` when it holds several (a script), else None."""
    statements = split_statements(sql)
    return tuple(statements) if len(statements) > 1 else None


@functools.lru_cache(maxsize=1024)
def reads_only(sql: str) -> bool:
    """Whether ``sql`` is a plain read: it starts (after blanks, comments and parentheses) with
    ``SELECT`` or ``VALUES``. SQLite's ``SELECT`` cannot write (``WITH`` can lead to an ``INSERT``:
    not counted); anything else, or several statements, is refused or run on the thread."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace() or c == "(":
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            break
    word = sql[i:i + 7].upper()
    return (word.startswith("SELECT") or word.startswith("VALUES")) and (len(word) < 7 or not (
        word[6].isalnum() or word[6] == "_"))


def _has_code(text: str) -> bool:
    """Whether ``text`` holds more than whitespace, semicolons and comments."""
    lines = [ln.split("--", 1)[0] for ln in text.splitlines()]
    return bool("".join(lines).replace(";", "").strip())


# --- statements (on the loop or on the database's thread; they raise sqlite3's errors) ------------

def _query(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[list[list[Any]]]:
    cur = conn.execute(sqlite_placeholders(sql), params)
    description = cur.description
    return rows([d[0] for d in description] if description else (), cur.fetchall())


def _execute(conn: sqlite3.Connection, sql: str, params: list[Any]) -> int:
    cur = conn.execute(sqlite_placeholders(sql), params)
    cur.fetchall()  # RETURNING rows: the count is known once they are read
    return max(cur.rowcount, 0)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN, then COMMIT, or ROLLBACK when the body raises."""
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _run_script(conn: sqlite3.Connection, statements: tuple[str, ...]) -> int:
    """Several statements, one transaction (as PostgreSQL runs a multi-statement string)."""
    count = 0
    with _transaction(conn):
        for statement in statements:
            cur = conn.execute(statement)
            cur.fetchall()
            count = max(cur.rowcount, 0)
    return count


class _Failed(Exception):
    """Statement ``n`` of a batch failed with ``error`` (the transaction is rolled back)."""

    def __init__(self, n: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.n = n
        self.error = error


def _run_batch(conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]]) -> list[int]:
    """Statements in one transaction: all or none. A lock or an interrupt stays as it is (the
    thread runs the whole batch again, or gives up); other failures name their statement."""
    counts = []
    with _transaction(conn):
        for n, (sql, params) in enumerate(statements, start=1):
            try:
                counts.append(_execute(conn, sql, params))
            except (sqlite3.Error, OverflowError) as exc:
                if _busy(exc) or _interrupted(exc):
                    raise
                raise _Failed(n, exc) from None
    return counts


class _Job:
    """Work for the database's thread. ``running``/``cancelled`` are written by one thread and read
    by the other (each writes its own flag before reading the other's, so one of them sees it)."""

    __slots__ = ("fn", "args", "future", "running", "done", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any] | None) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.running = False
        self.done = False
        self.cancelled = False


class SqliteDb:
    """One database: its connection, the loop's fast path for reads, and the thread for the rest.

    The connection is used by one thread at a time: by the loop only while the
    thread has nothing handed to it (``_handed == 0``, counted on the loop), by
    the thread otherwise.
    """

    def __init__(self, key: DbKey) -> None:
        self.key = key
        self.conn: sqlite3.Connection | None = None
        self.inline = key.inline
        self._budget_s = key.inline_budget_ms / 1000
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._handed = 0  # jobs given to the thread and not yet reported back (loop thread only)
        self._until = 0.0
        self._over = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name=f"sqlite-{Path(key.path).name}", daemon=True)
        #: reads answered on the loop, reads it handed to the thread (over budget, locked), waits for locks
        self.stats = {"loop_reads": 0, "moved_reads": 0, "busy_waits": 0}

    @classmethod
    async def open(cls, key: DbKey) -> SqliteDb:
        db = cls(key)
        db._loop = asyncio.get_running_loop()
        db._thread.start()
        try:
            db.conn = await db._hand_off(db._connect, (), None)
        except BaseException:
            db._jobs.put(None)
            raise
        return db

    def _connect(self) -> sqlite3.Connection:
        k = self.key
        if k.path != MEMORY:
            Path(k.path).parent.mkdir(parents=True, exist_ok=True)
        # read on the loop: SQLite itself never waits for a lock; the thread waits (see _run)
        busy_ms = 0 if self.inline else int(k.busy_timeout_ms)
        conn = sqlite3.connect(k.path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000,
                               cached_statements=256)
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            conn.execute(f"PRAGMA foreign_keys = {'ON' if k.foreign_keys else 'OFF'}")
            if k.path != MEMORY:
                conn.execute(f"PRAGMA journal_mode = {k.journal_mode.upper()}").fetchall()
                conn.execute(f"PRAGMA synchronous = {k.synchronous.upper()}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await self._hand_off(conn.close, (), None)
            except Exception as exc:
                log.warning("%s: closing %s: %s", NAME, self.key.path, exc)
        self._jobs.put(None)

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise SqlError(CONNECTION_FAILED, f"database {self.key.path} is closed")
        return self.conn

    # --- statements -------------------------------------------------------------------------------

    async def query(self, sql: str, params: list[Any], timeout_s: float | None) -> list[list[list[Any]]]:
        conn = self._conn()
        if self.inline and not self._handed and reads_only(sql):
            done, result = self._on_loop(conn, _query, sql, params)
            if done:
                self.stats["loop_reads"] += 1
                return result
            self.stats["moved_reads"] += 1
        return await self._on_thread(_query, (sql, params), timeout_s)

    async def execute(self, sql: str, params: list[Any], timeout_s: float | None) -> int:
        self._conn()
        script = _script(sql) if not params and ";" in sql else None
        if script is not None:
            return await self._on_thread(_run_script, (script,), timeout_s)
        return await self._on_thread(_execute, (sql, params), timeout_s)

    async def execute_batch(self, statements: list[tuple[str, list[Any]]], timeout_s: float | None) -> list[int]:
        self._conn()
        try:
            return await self._on_thread(_run_batch, (statements,), timeout_s)
        except _Failed as failed:
            raise numbered(failed.n, classify(failed.error)) from None

    def _on_loop(self, conn: sqlite3.Connection, fn: Callable[..., Any], sql: str,
                 params: list[Any]) -> tuple[bool, Any]:
        """Run a read here, within the budget: (True, result), or (False, None) when it ran out of
        budget or found the database locked (run it on the thread)."""
        self._over = False
        self._until = time.perf_counter() + self._budget_s
        conn.set_progress_handler(self._check_budget, PROGRESS_STEPS)
        try:
            return True, fn(conn, sql, params)
        except sqlite3.OperationalError as exc:
            if self._over or _busy(exc):
                return False, None
            raise classify(exc) from None
        except (sqlite3.Error, OverflowError) as exc:
            raise classify(exc) from None
        finally:
            conn.set_progress_handler(None, 0)

    def _check_budget(self) -> int:
        if time.perf_counter() > self._until:
            self._over = True
            return 1
        return 0

    async def ping(self) -> None:
        await self.query("SELECT 1", [], None)

    # --- the database's thread ----------------------------------------------------------------------

    async def _on_thread(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None) -> Any:
        try:
            return await self._hand_off(lambda *a: fn(self._conn(), *a), args, timeout_s)
        except (sqlite3.Error, OverflowError) as exc:
            raise classify(exc) from None

    async def _hand_off(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None) -> Any:
        """Run ``fn(*args)`` on the thread; past ``timeout_s`` raise TimeoutError and stop it there."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = _Job(fn, args, future)
        self._handed += 1
        self._jobs.put(job)
        timer = loop.call_later(timeout_s, self._expire, job) if timeout_s is not None else None
        try:
            return await future
        except asyncio.CancelledError:
            self._abandon(job)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, job: _Job) -> None:
        if job.future is not None and not job.future.done():
            job.future.set_exception(TimeoutError())
            self._abandon(job)

    def _abandon(self, job: _Job) -> None:
        """Nobody waits for ``job`` any more: skip it if it has not started, interrupt it if it runs."""
        job.cancelled = True
        if job.running and not job.done and self.conn is not None:
            self.conn.interrupt()  # thread-safe; the statement fails with "interrupted", the thread is free

    def _report(self, job: _Job, ok: bool, result: Any) -> None:
        self._handed -= 1
        future = job.future
        if future is not None and not future.done():
            (future.set_result if ok else future.set_exception)(result)

    def _serve(self) -> None:
        """The thread: jobs in order, each result handed straight back to the loop."""
        loop = self._loop
        assert loop is not None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.running = True
            ok, result = (False, TimeoutError()) if job.cancelled else self._run(job)
            job.done = True
            try:
                loop.call_soon_threadsafe(self._report, job, ok, result)
            except RuntimeError:  # the loop is closed: nobody is waiting
                pass

    def _run(self, job: _Job) -> tuple[bool, Any]:
        """Run a job. A statement that finds the database locked is run again (it did nothing) until
        ``busy_timeout_ms`` passed, as SQLite's busy timeout would (that one is off: the loop's reads
        must not wait); one that was interrupted for the job before it (which finished as the
        interrupt came) is run again once."""
        give_up = 0.0
        pause = 0.001
        retried = False
        while True:
            try:
                return True, job.fn(*job.args)
            except BaseException as exc:
                if job.cancelled:
                    return False, exc
                if not retried and _interrupted(exc):
                    retried = True
                    continue
                if self.inline and _busy(exc):
                    now = time.monotonic()
                    give_up = give_up or now + self.key.busy_timeout_ms / 1000
                    if now < give_up:
                        self.stats["busy_waits"] += 1  # this thread's own counter (others only read it)
                        time.sleep(min(pause, give_up - now))
                        pause = min(pause * 2, 0.05)
                        continue
                return False, exc


class SqldbSqlite(SqlBackend[DbKey, SqliteDb]):
    name = NAME

    def __init__(self) -> None:
        self.lattice = "default"
        self.data_dir = default_data_dir(None)
        super().__init__()

    @property
    def dbs(self) -> Any:
        return self.resources

    async def started(self, info: Any) -> None:
        self.lattice = info.lattice
        self.data_dir = default_data_dir(info)

    def link_key(self, link: Link, config: dict[str, str]) -> DbKey:
        return db_key(config, link, self.lattice, self.data_dir)

    async def open(self, key: DbKey) -> SqliteDb:
        return await SqliteDb.open(key)

    async def close(self, resource: SqliteDb) -> None:
        await resource.close()

    def describe(self, key: DbKey) -> str:
        return key.path

    async def ping(self, resource: SqliteDb) -> None:
        await resource.ping()

    def open_error(self, key: DbKey, exc: Exception) -> SqlError | None:
        if isinstance(exc, (sqlite3.Error, OSError)):
            return SqlError(CONNECTION_FAILED, f"cannot open {key.path}: {exc}")
        return None

    async def query(self, resource: SqliteDb, sql: str, params: list[Any], timeout_s: float) -> list[list[list[Any]]]:
        return await resource.query(sql, params, timeout_s)

    async def execute(self, resource: SqliteDb, sql: str, params: list[Any], timeout_s: float) -> int:
        return await resource.execute(sql, params, timeout_s)

    async def execute_batch(self, resource: SqliteDb, statements: list[tuple[str, list[Any]]],
                            timeout_s: float) -> list[int]:
        return await resource.execute_batch(statements, timeout_s)


def build() -> Provider:
    """A fresh provider (each test builds its own, so no state leaks between them)."""
    p = SqldbSqlite().sql_provider("trellis:sql on embedded SQLite databases")
    p.local_state = True  # the database files live under this host's state dir
    return p


provider = build()

if __name__ == "__main__":
    run(provider)
