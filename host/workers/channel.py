"""The worker's end of the host channel: commands in on stdin, answers out on stdout.

One message a line (``messages.py``). Commands are handled one after the other,
in the order the host sent them; each gets exactly one :class:`Answer`, a failure
as its one-line error. A line that is not a command is logged and skipped. The
host closing the pipe (it went away) ends the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .messages import Answer, Command, Ready, parse_command

log = logging.getLogger("trellis.worker")


def send(msg: Ready | Answer) -> None:
    """One message to the host (stdout is the channel: logging goes to stderr)."""
    sys.stdout.buffer.write(msg.line())
    sys.stdout.flush()


def read_boot_line() -> bytes:
    """The host's first line (the boot message), read from stdin without reading past it.

    Python's ``sys.stdin`` reads ahead: a command the host wrote right behind the boot line
    would sit in its buffer, never seen by :func:`stdin_reader` (which reads the pipe itself),
    and the host would wait forever for its answer."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(sys.stdin.fileno(), 1)
        if not byte:  # the host went away before booting us
            break
        line += byte
    return bytes(line)


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve(reader: asyncio.StreamReader, handle: Callable[[Command], Awaitable[Any]]) -> None:
    """Answer commands until the host closes the channel."""
    while True:
        line = await reader.readline()
        if not line:  # the host went away
            return
        try:
            cmd = parse_command(line)
        except ValueError as exc:
            why = str(exc).splitlines()[0]
            log.warning("not a worker command: %s", why)
            ident = _id_of(line)
            if ident is not None:  # the host waits for its answer: it gets the reason
                send(Answer(id=ident, ok=False, error=f"not a worker command: {why}"))
            continue
        try:
            result = await handle(cmd)
        except Exception as exc:
            send(Answer(id=cmd.id, ok=False, error=f"{exc.__class__.__name__}: {exc}"))
        else:
            send(Answer(id=cmd.id, ok=True, result=result))


def _id_of(line: bytes) -> int | None:
    try:
        ident = json.loads(line).get("id")
    except (ValueError, AttributeError):
        return None
    return ident if isinstance(ident, int) else None
