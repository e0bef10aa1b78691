"""Child processes that die with their parent and stop along a ladder (TERM → wait → KILL)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


#: resolved once here, so the child does no library loading between fork and exec
_prctl = _load_prctl() if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive us: SIGTERM when our thread dies (Linux)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: list[str], *, log: Path | None = None, env: dict[str, str] | None = None,
          stdin: Any = subprocess.DEVNULL, new_session: bool = True, inherit: bool = False) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C reaches only the supervisor) that dies with us.
    Its output goes to ``log``, or (``inherit``) to our stdout, else nowhere."""
    out: IO[bytes] | int | None = None if inherit else subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT if (log or inherit) else subprocess.DEVNULL,
            env=env, start_new_session=new_session,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        if out is not None and not isinstance(out, int):
            out.close()


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> int:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL. Returns the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def trellis_argv(*args: str) -> list[str]:
    """Run a trellis subcommand with this interpreter (no reliance on PATH).

    ``-P``: the working directory is not put first on sys.path, so a folder there named like one
    of Trellis's packages (``trellis/``, ``providers/``) cannot shadow them.
    """
    return [sys.executable, "-P", "-m", "trellis.cli.main", *args]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
