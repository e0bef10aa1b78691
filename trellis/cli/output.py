"""Printing for people (tables) and for scripts (``-o json`` / ``-o yaml``); one error style.

Every command that prints something takes ``-o table|json|yaml`` (`OutputOpt`) and
prints through `emit`: a list is a JSON/YAML array, one kind of thing has one shape
wherever it is printed (the pydantic model of ``interfaces``), and a table shows
the fields the JSON has. Errors go to stderr as ``error: MESSAGE`` (`fail`,
`print_error`), exit code 1.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trellis.interfaces.errors import TrellisError
from trellis.interfaces.subjects import SubjectError

if TYPE_CHECKING:
    from trellis.interfaces.client import LatticeClient

    from .options import Conn

T = TypeVar("T")
# Piped output keeps whole ids on one line rather than folding to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)


class Output(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OUTPUT_HELP = "table for people; json or yaml for scripts"
OutputOpt: Any = typer.Option(Output.table, "-o", "--output", help=OUTPUT_HELP)
"""The ``-o/--output`` option of every command that prints something."""


def to_plain(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [to_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_plain(obj), indent=2, default=str) + "\n")


def print_yaml(obj: Any) -> None:
    import yaml

    plain = json.loads(json.dumps(to_plain(obj), default=str))  # the same values JSON shows
    sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))


def emit(obj: Any, output: Output) -> bool:
    """Print ``obj`` for scripts when ``output`` is json or yaml and say so; False means
    the caller prints its table (made from the same fields)."""
    if output is Output.json:
        print_json(obj)
        return True
    if output is Output.yaml:
        print_yaml(obj)
        return True
    return False


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
          empty: str | None = None) -> None:
    """Rows as a table; none, with ``empty``: that line on stderr instead (what to do next), not an
    empty table."""
    if not rows and empty is not None:
        err_console.print(empty, highlight=False, markup=False)
        return
    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=c in ("ID", "NAME"))
    for r in rows:
        t.add_row(*[("" if v is None else str(v)) for v in r])
    console.print(t)


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr: how every command reports a failure."""
    err_console.print("[red]error:[/red] " + escape(message), highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: MESSAGE`` and return the exit to raise: ``raise fail("...")``."""
    print_error(message)
    return typer.Exit(code)


def run(coro: Coroutine[Any, Any, T], nats_url: str | None = None) -> T:
    """Run a command's coroutine; turn lattice errors into a clear message and exit 1."""
    where = f" at {nats_url}" if nats_url else ""
    # a one-shot command reports a failed connection once, below, not per attempt in the log
    logging.getLogger("trellis.nats").setLevel(logging.ERROR)
    try:
        return asyncio.run(coro)
    except TrellisError as exc:
        raise fail(exc.message) from None
    except SubjectError as exc:  # an id or name no subject can carry: the user's typo
        raise fail(str(exc)) from None
    except ValidationError as exc:  # likewise, refused by a request's model before it was sent
        raise fail(invalid_input(exc)) from None
    except (ConnectionError, OSError) as exc:
        raise fail(f"cannot reach NATS{where}: {exc}") from None
    except Exception as exc:
        if exc.__class__.__module__.startswith("nats"):
            raise fail(f"NATS: {exc.__class__.__name__}: {exc}") from None
        raise


def invalid_input(exc: ValidationError) -> str:
    """A request model's refusal of what was typed, in one line: ``invalid name 'a/b': use ...``."""
    e = exc.errors()[0]
    field = ".".join(str(p) for p in e["loc"]) or "value"
    pattern = str(e.get("ctx", {}).get("pattern", ""))
    plain = e["type"] == "string_pattern_mismatch" and pattern.startswith(r"^[A-Za-z0-9_\-]")
    size = "1-128 " if "{1,128}" in pattern else "only "
    why = f"use {size}letters, digits, '-' and '_'" if plain else e["msg"]
    return f"invalid {field} {e.get('input')!r}: {why}"


def run_on(conn: Conn, fn: Callable[[LatticeClient], Awaitable[T]]) -> T:
    """Connect to the lattice, run ``fn(client)``, disconnect; errors as in :func:`run`."""
    from trellis.interfaces.client import LatticeClient

    async def go() -> T:
        async with LatticeClient(conn.nats, conn.lattice) as c:
            return await fn(c)

    return run(go(), conn.nats.url)


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def shown_path(path: Path) -> str:
    """A path relative to the working directory when below it (shorter, and what people typed),
    else as it is."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except (ValueError, OSError):
        return str(path)


def split_list(values: Sequence[str]) -> list[str]:
    """Repeatable option values, each of which may also be comma-separated."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


#: seconds an operation runs quietly before its progress is shown, and between two looks
PROGRESS_AFTER_S = 1.0
#: seconds one stage may last before it is said again, with the time so far
PROGRESS_REPEAT_S = 10.0


async def with_progress(c: LatticeClient, host_id: str, component_id: str, op: Awaitable[T]) -> T:
    """Await ``op`` (an operation on ``component_id`` at ``host_id``), telling on stderr what
    the host is doing for it (its inventory's ``pending``: fetching, compiling, ...) whenever
    that changes, and again every PROGRESS_REPEAT_S while it does not, so a first start that
    compiles for a minute is neither silent nor looks stuck."""
    task = asyncio.ensure_future(op)
    loop = asyncio.get_running_loop()
    began = loop.time()
    said, said_at = "", began
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=PROGRESS_AFTER_S)
            if done:
                break
            try:
                stage = (await c.get_inventory(host_id)).pending.get(component_id, "")
            except TrellisError:
                continue  # the host is busy or gone: the operation's own outcome will say
            now = loop.time()
            if stage and (stage != said or now - said_at >= PROGRESS_REPEAT_S):
                said, said_at = stage, now
                err_console.print(f"[dim]{escape(component_id)}: {escape(stage)} ({now - began:.0f} s)[/dim]")
        return await task
    finally:
        task.cancel()
