"""``trellis:sql/query`` on any database: the part both SQL providers share.

* Values: ``sql-value`` on the wire is a one-key dict (``{"int": 5}``,
  ``{"null": None}``, or the bare case name ``"null"``); :func:`param` turns it
  into a Python value for the driver and :func:`value` turns a driver's value
  back. Types the WIT has no case for come back as text.
* Placeholders: SQL is written with ``$1, $2, ...`` for every backend
  (PostgreSQL's own style). :func:`sqlite_placeholders` rewrites them to
  SQLite's numbered ``?1, ?2, ...``, leaving string literals, quoted
  identifiers and comments alone, so one SQL text means the same on both.
* Errors: a backend raises :class:`SqlError` with a WIT ``sql-error`` case.
* :class:`SqlFront` holds the exported handlers: link lookup, deadline, errors.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from providers.sdk import Context, export

from .calls import before_deadline
from .links import LinkTable, LinkUnusable, NotLinked

log = logging.getLogger("providers.builtin")

QUERY = "trellis:sql/query"
INVALID_QUERY = "invalid-query"
CONSTRAINT_VIOLATION = "constraint-violation"
CONNECTION_FAILED = "connection-failed"
OTHER = "other"

S64_MIN, S64_MAX = -(2**63), 2**63 - 1


class SqlError(Exception):
    """A failed statement, as a WIT ``sql-error`` case and the database's message."""

    def __init__(self, case: str, message: str) -> None:
        super().__init__(message)
        self.case = case
        self.message = message

    def wire(self) -> dict[str, Any]:
        return {"err": {self.case: self.message}}


# --- values ----------------------------------------------------------------------------

def param(index: int, v: Any) -> Any:
    """A ``sql-value`` from the wire → a Python value for the driver."""
    if v == "null" or v is None:
        return None
    if isinstance(v, dict) and len(v) == 1:
        (case, payload), = v.items()
        if case == "null":
            return None
        if case == "bool" and isinstance(payload, bool):
            return payload
        if case == "int" and isinstance(payload, int) and not isinstance(payload, bool):
            return payload
        if case == "float" and isinstance(payload, (int, float)) and not isinstance(payload, bool):
            return float(payload)
        if case == "text" and isinstance(payload, str):
            return payload
        if case == "blob" and isinstance(payload, (bytes, bytearray, memoryview, list)):
            return bytes(payload)
    raise SqlError(INVALID_QUERY, f"parameter ${index}: {v!r} is not a sql-value")


def params(values: Sequence[Any]) -> list[Any]:
    return [param(i, v) for i, v in enumerate(values, start=1)]


def value(v: Any) -> dict[str, Any]:
    """A driver's value → a ``sql-value`` for the wire (text for types the WIT has no case for)."""
    if v is None:
        return {"null": None}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v} if S64_MIN <= v <= S64_MAX else {"text": str(v)}
    if isinstance(v, float):
        return {"float": v}
    if isinstance(v, str):
        return {"text": v}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"blob": bytes(v)}
    if isinstance(v, Decimal):
        return {"text": str(v)}
    if isinstance(v, (list, tuple, dict)):  # arrays, composite types: JSON text
        return {"text": json.dumps(v, default=str)}
    return {"text": str(v)}


def row(columns: Sequence[str], values: Sequence[Any]) -> list[list[Any]]:
    return [[c, value(v)] for c, v in zip(columns, values)]


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


# --- the exported functions ------------------------------------------------------------

class SqlBackend(Protocol):
    """One link's database. Raises SqlError for anything that goes wrong."""

    async def query(self, sql: str, params: list[Any]) -> list[list[list[Any]]]: ...
    async def execute(self, sql: str, params: list[Any]) -> int: ...


class SqlFront:
    """The exported ``trellis:sql/query`` functions; pass an instance to ``Provider(exports=[...])``."""

    def __init__(self, name: str, links: LinkTable[Any]) -> None:
        self.name = name
        self.links = links

    async def _run(self, ctx: Context, sql: str, values: list[Any], what: str) -> dict[str, Any]:
        try:
            backend: SqlBackend = await self.links.for_call(ctx)
            bound = params(values)
            async with before_deadline(ctx):
                method = backend.query if what == "query" else backend.execute
                return {"ok": await method(sql, bound)}
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
        return await self._run(ctx, sql, params, "query")

    @export(QUERY, "execute")
    async def execute(self, sql: str, params: list[Any], *, ctx: Context, **kwargs: Any) -> dict[str, Any]:
        return await self._run(ctx, sql, params, "execute")
