"""What a `trellis up` killed without a goodbye left on its state directory, found and stopped.

A run records its children (name, pid, start time) in its lock file and nats-server writes
its pid file (``nats.pid``) in the state directory. A clean stop empties the lock file; a run
that was SIGKILLed leaves both behind. Its children normally die with it (Linux death
signal), but one that did not (started by an older version, or stuck) would hold the NATS
port and the JetStream store: the next `trellis up` on the same state directory stops it and
says so in one line, instead of failing with "port already in use".
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

#: nats-server's pid file in the state directory
NATS_PID_FILE = "nats.pid"


@dataclass(frozen=True)
class Recorded:
    name: str
    pid: int
    started: float  # psutil create_time, so a reused pid is not mistaken for ours

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started}


def record(name: str, pid: int) -> Recorded:
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = 0.0
    return Recorded(name, pid, started)


def _ours(r: Recorded) -> psutil.Process | None:
    try:
        p = psutil.Process(r.pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        if r.started and abs(p.create_time() - r.started) > 0.5:
            return None
        return p
    except psutil.Error:
        return None


def _nats_from_pid_file(state: Path) -> psutil.Process | None:
    path = state / NATS_PID_FILE
    try:
        pid = int(path.read_text().strip())
        p = psutil.Process(pid)
        cmd = p.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    # the pid file's own path on its command line: this is the server a run on `state` started
    if p.status() != psutil.STATUS_ZOMBIE and any("nats-server" in c for c in cmd[:1]) and str(path) in cmd:
        return p
    return None


def find(state: Path, previous: dict[str, Any] | None) -> list[tuple[str, psutil.Process]]:
    """The processes an earlier run on ``state`` left running: (name, process)."""
    found: dict[int, tuple[str, psutil.Process]] = {}
    for entry in (previous or {}).get("children", []):
        try:
            r = Recorded(str(entry["name"]), int(entry["pid"]), float(entry.get("started", 0.0)))
        except (KeyError, TypeError, ValueError):
            continue
        p = _ours(r)
        if p is not None and p.pid != os.getpid():
            found[p.pid] = (r.name, p)
    nats = _nats_from_pid_file(state)
    if nats is not None:
        found.setdefault(nats.pid, ("nats-server", nats))
    return list(found.values())


def stop(state: Path, previous: dict[str, Any] | None, say: Callable[[str], None], grace_s: float = 5.0) -> int:
    """Stop what an earlier run on ``state`` left (TERM, then KILL after ``grace_s``); say so in one line."""
    left = find(state, previous)
    if not left:
        return 0
    for _, p in left:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs([p for _, p in left], timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    what = ", ".join(f"{name} (pid {p.pid})" for name, p in left)
    say(f"Stopped what an earlier trellis up on {state} left running: {what}.")
    return len(left)


def wait_port_free(is_free: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """A port its process just released can take a moment to bind again."""
    deadline = time.monotonic() + timeout_s
    while not is_free():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
