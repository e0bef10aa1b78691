"""``trellis:sql/query`` on any database: the part both SQL providers share.

* Values: ``sql-value`` on the wire is a one-key dict (``{"int": 5}``,
  ``{"null": None}``, or the bare case name ``"null"``); :func:`params` turns
  them into Python values for the driver and :func:`rows` turns a result back
  (types the WIT has no case for come back as text).
* Placeholders: SQL is written with ``$1, $2, ...`` for every backend
  (PostgreSQL's own style). :func:`sqlite_placeholders` rewrites them to
  SQLite's numbered ``?1, ?2, ...``, leaving string literals, quoted
  identifiers and comments alone, so one SQL text means the same on both.
* Errors: a backend raises :class:`SqlError` with a WIT ``sql-error`` case.
* :class:`SqlBackend`: links mapped to connection settings, a database (or
  pool) per distinct settings shared by its links and opened on first use,
  health probes, shutdown; :class:`SqlFront` holds the exported handlers
  (link lookup, the caller's deadline, errors as WIT values).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, Generic, TypeVar

from trellis.providers.sdk import Context, Link, Provider, export

from .calls import time_left
from .health import probe_each
from .lifecycle import LinkedBackend
from .links import LinkUnusable, NotLinked
from .shared import Shared

log = logging.getLogger("trellis.providers.builtin")

QUERY = "trellis:sql/query"
INVALID_QUERY = "invalid-query"
CONSTRAINT_VIOLATION = "constraint-violation"
CONNECTION_FAILED = "connection-failed"
OTHER = "other"

S64_MIN, S64_MAX = -(2**63), 2**63 - 1

K = TypeVar("K")  # connection settings: links with equal keys share one resource
R = TypeVar("R")  # the resource: a database, a pool


class SqlError(Exception):
    """A failed statement, as a WIT ``sql-error`` case and the database's message."""

    def __init__(self, case: str, message: str) -> None:
        super().__init__(message)
        self.case = case
        self.message = message

    def wire(self) -> dict[str, Any]:
        return {"err": {self.case: self.message}}


# --- values ----------------------------------------------------------------------------

def _no_value(index: int, v: Any) -> SqlError:
    return SqlError(INVALID_QUERY, f"parameter ${index}: {v!r} is not a sql-value")


def param(index: int, v: Any) -> Any:
    """A ``sql-value`` from the wire → a Python value for the driver."""
    if type(v) is dict and len(v) == 1:
        (case, payload), = v.items()
        kind = type(payload)
        if case == "text":
            if kind is str:
                return payload
        elif case == "int":
            if kind is int:
                return payload
        elif case == "null":
            return None
        elif case == "float":
            if kind is float or kind is int:
                return float(payload)
        elif case == "bool":
            if kind is bool:
                return payload
        elif case == "blob":
            if kind is bytes:
                return payload
            if isinstance(payload, (bytes, bytearray, memoryview, list)):
                return bytes(payload)
        raise _no_value(index, v)
    if v is None or v == "null":
        return None
    raise _no_value(index, v)


def params(values: Sequence[Any]) -> list[Any]:
    """The parameters of one statement, for the driver; an invalid one is ``invalid-query``."""
    if not values:
        return []
    return [param(i, v) for i, v in enumerate(values, start=1)]


def batch(statements: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """The statements of a batch (``{sql, params}`` records), bound for the driver; an invalid one
    is ``invalid-query`` naming it."""
    out = []
    for n, st in enumerate(statements, start=1):
        if not (isinstance(st, dict) and isinstance(st.get("sql"), str) and isinstance(st.get("params", []), list)):
            raise SqlError(INVALID_QUERY, f"statement {n}: expected {{sql, params}}, got {st!r}")
        try:
            out.append((st["sql"], params(st.get("params") or [])))
        except SqlError as exc:
            raise SqlError(exc.case, f"statement {n}: {exc.message}") from None
    return out


def numbered(n: int, error: SqlError) -> SqlError:
    """``error`` as the failure of statement ``n`` of a batch."""
    return SqlError(error.case, f"statement {n}: {error.message}")


def value(v: Any) -> dict[str, Any]:
    """A driver's value → a ``sql-value`` for the wire (text for types the WIT has no case for)."""
    kind = type(v)
    if kind is str:
        return {"text": v}
    if kind is int:
        return {"int": v} if S64_MIN <= v <= S64_MAX else {"text": str(v)}
    if v is None:
        return {"null": None}
    if kind is float:
        return {"float": v}
    if kind is bytes:
        return {"blob": v}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": int(v)} if S64_MIN <= v <= S64_MAX else {"text": str(v)}
    if isinstance(v, float):
        return {"float": float(v)}
    if isinstance(v, str):
        return {"text": str(v)}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"blob": bytes(v)}
    if isinstance(v, Decimal):
        return {"text": str(v)}
    if isinstance(v, (list, tuple, dict)):  # arrays, composite types: JSON text
        return {"text": json.dumps(v, default=str)}
    return {"text": str(v)}


def row(columns: Sequence[str], values: Iterable[Any]) -> list[list[Any]]:
    return [[c, value(v)] for c, v in zip(columns, values, strict=True)]


def rows(columns: Sequence[str], records: Iterable[Iterable[Any]]) -> list[list[list[Any]]]:
    """A result for the wire: each row a list of ``[column, sql-value]`` (records are sequences of
    values in column order: sqlite3 tuples, asyncpg Records)."""
    return [[[c, value(v)] for c, v in zip(columns, r, strict=True)] for r in records]


# --- placeholders ------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")


@functools.lru_cache(maxsize=1024)
def sqlite_placeholders(sql: str) -> str:
    """``$1`` → ``?1`` outside literals (``'...'``), identifiers (``"..."``, ``` `...` ```, ``[...]``)
    and comments (``--``, ``/* */``). ``$$`` and ``$name`` are left as they are."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # a doubled quote is an escaped quote
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif c == "[":
            j = sql.find("]", i + 1)
            j = n - 1 if j < 0 else j
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif c == "$" and i + 1 < n and sql[i + 1] in _DIGITS and (i == 0 or not (sql[i - 1].isalnum()
                                                                                   or sql[i - 1] == "_")):
            j = i + 1
            while j < n and sql[j] in _DIGITS:
                j += 1
            out.append("?" + sql[i + 1:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --- the providers --------------------------------------------------------------------------

class SqlBackend(LinkedBackend[K], Generic[K, R]):
    """What both SQL providers do alike around their database driver.

    A link's config becomes a key (the connection settings, no I/O); links with equal
    keys share one resource (a SQLite database, a PostgreSQL pool), opened on first
    use and closed with its last link. Health probes every resource in use.
    Subclasses open, close and ping resources, classify failures to open them, and
    run statements (:meth:`query`, :meth:`execute`), each bounded by ``timeout_s``:
    past it they raise ``TimeoutError``.
    """

    #: what a resource is, in messages ("database", "pool")
    resource_kind = "database"

    def __init__(self) -> None:
        self.resources: Shared[K, R] = Shared(f"{self.name} {self.resource_kind}", self.open, self.close)
        super().__init__()

    # --- what a backend provides -------------------------------------------------------------

    @abstractmethod
    def link_key(self, link: Link, config: dict[str, str]) -> K:
        """The connection settings of a link's merged config; ConfigError if they cannot be used."""

    @abstractmethod
    async def open(self, key: K) -> R: ...

    @abstractmethod
    async def close(self, resource: R) -> None: ...

    @abstractmethod
    def describe(self, key: K) -> str:
        """The resource in health messages (no secrets)."""

    @abstractmethod
    async def ping(self, resource: R) -> None: ...

    @abstractmethod
    def open_error(self, key: K, exc: Exception) -> SqlError | None:
        """The ``sql-error`` for a failure to open ``key`` (None: not the database's fault, re-raised)."""

    @abstractmethod
    async def query(self, resource: R, sql: str, params: list[Any], timeout_s: float) -> list[list[list[Any]]]: ...

    @abstractmethod
    async def execute(self, resource: R, sql: str, params: list[Any], timeout_s: float) -> int: ...

    @abstractmethod
    async def execute_batch(self, resource: R, statements: list[tuple[str, list[Any]]], timeout_s: float) -> list[int]:
        """Run ``statements`` in order in one transaction; all or none. A failure names its
        statement (``statement N: ...``, from 1)."""

    # --- shared --------------------------------------------------------------------------------

    async def build_link(self, link: Link, config: dict[str, str]) -> K:
        key = self.link_key(link, config)
        self.resources.attach(key)
        return key

    async def teardown_link(self, state: K) -> None:
        await self.resources.detach(state)

    async def resource(self, key: K, timeout_s: float) -> R:
        """The open resource of a link: at once when it is open, else opened (within ``timeout_s``)."""
        opened = self.resources.opened(key)
        if opened is not None:
            return opened
        async with asyncio.timeout(timeout_s):  # outside: its TimeoutError is the deadline, not a failure
            try:
                return await self.resources.get(key)
            except Exception as exc:
                error = self.open_error(key, exc)
                if error is None:
                    raise
                raise error from None

    async def probe(self) -> tuple[bool, str]:
        keys = self.resources.keys()

        async def check(k: K) -> None:
            await self.ping(await self.resources.get(k))

        down = await probe_each([(self.describe(k), partial(check, k)) for k in keys])
        summary = f"{len(self.links)} link(s), {len(keys)} database(s)"
        return not down, "; ".join([summary, *down, *self.link_problems()])

    async def close_backends(self) -> None:
        await self.resources.close_all()

    def sql_provider(self, description: str) -> Provider:
        return self.provider([SqlFront(self)], description)


class SqlFront:
    """The exported ``trellis:sql/query`` functions; pass an instance to ``Provider(exports=[...])``."""

    def __init__(self, backend: SqlBackend[Any, Any]) -> None:
        self.backend = backend
        self.name = backend.name
        self.links = backend.links

    async def _run(self, ctx: Context, what: str, bind: Callable[[], Any],
                   run: Callable[[Any, Any, float], Awaitable[Any]]) -> dict[str, Any]:
        """One exported call: the link's database, ``bind()`` the parameters, ``run(resource,
        bound, seconds left)``; failures as WIT ``sql-error`` values."""
        try:
            key = await self.links.for_call(ctx)
            bound = bind()
            left = time_left(ctx)  # answer with a WIT error shortly before the caller gives up
            return {"ok": await run(await self.backend.resource(key, left), bound, left)}
        except SqlError as exc:
            return exc.wire()
        except (NotLinked, LinkUnusable) as exc:
            return SqlError(CONNECTION_FAILED, str(exc)).wire()
        except TimeoutError:
            return SqlError(OTHER, f"{self.name}: the statement did not finish before the caller's deadline "
                                   "and was cancelled").wire()
        except Exception as exc:
            log.warning("%s: %s from %s failed: %r", self.name, what, ctx.source, exc)
            return SqlError(OTHER, f"{exc.__class__.__name__}: {exc}").wire()

    @export(QUERY, "query")
    async def query(self, sql: str, params: list[Any], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        backend = self.backend
        return await self._run(ctx, "query", partial(_bind, params),
                               lambda db, bound, left: backend.query(db, sql, bound, left))

    @export(QUERY, "execute")
    async def execute(self, sql: str, params: list[Any], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        backend = self.backend
        return await self._run(ctx, "execute", partial(_bind, params),
                               lambda db, bound, left: backend.execute(db, sql, bound, left))

    @export(QUERY, "execute-batch")
    async def execute_batch(self, statements: list[Any], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, "execute-batch", partial(batch, statements), self.backend.execute_batch)


#: ``params`` under a name the exported handlers' own ``params`` argument does not hide
_bind = params
