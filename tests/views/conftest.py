"""Fixtures for the lattice views: a following CLI process read line by line, test components."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.components.build import build_wat
from trellis.kit import procs

ECHO_PROVIDER = Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py"


@pytest.fixture(scope="session")
def adder() -> Path:
    return build_wat("adder")


class Following:
    """A long-running `trellis` command (events, spy) whose stdout lines are read as they come."""

    def __init__(self, nats_url: str, lattice: str, *args: str) -> None:
        argv = [sys.executable, "-m", "trellis.cli.main", *args, "--nats-url", nats_url, "--lattice", lattice]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, "COLUMNS": "200"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self._readers = [threading.Thread(target=self._pump, args=(s, q), daemon=True)
                         for s, q in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _pump(stream: Any, q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the command says (on stderr) that it follows the lattice."""
        while True:
            line = self.err.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"command exited ({self.proc.wait()}) before it was ready")
            if line.startswith(("following", "spying")):
                return

    def next_line(self, timeout: float = 20.0) -> str:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"command ended (exit {self.proc.wait()}); stderr: {self.stderr_text()}")
        return line

    def until(self, match: Any, timeout: float = 20.0, json_lines: bool = True) -> Any:
        """Read lines until ``match(obj)`` is true for one; return it."""
        import time

        deadline = time.monotonic() + timeout
        seen: list[Any] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line within {timeout}s; saw {seen[-10:]}")
            try:
                line = self.next_line(left)
            except queue.Empty:
                continue
            obj = json.loads(line) if json_lines else line
            seen.append(obj)
            if match(obj):
                return obj

    async def wait_for(self, match: Any, timeout: float = 20.0, json_lines: bool = True) -> Any:
        """:meth:`until` off the event loop, so in-process hosts keep running meanwhile."""
        import asyncio

        return await asyncio.to_thread(self.until, match, timeout, json_lines)

    def stderr_text(self) -> str:
        out = []
        while True:
            try:
                line = self.err.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                out.append(line)
        return "\n".join(out)

    def stop(self) -> int:
        code = procs.stop(self.proc, 5.0)  # type: ignore[arg-type]  # a Popen by now
        for t in self._readers:
            t.join(5.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


@pytest.fixture
def follow(nats_server, lattice) -> Iterator[Any]:
    started: list[Following] = []

    def start(*args: str) -> Following:
        f = Following(nats_server.url, lattice, *args)
        started.append(f)
        f.wait_ready()
        return f

    yield start
    for f in started:
        f.stop()
