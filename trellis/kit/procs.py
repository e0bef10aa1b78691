"""Child processes that die with their parent and stop along a ladder (TERM → wait → KILL)."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


def death_signal() -> Callable[[], None] | None:
    """The ``preexec_fn`` that ties a child to us, for a child started from the current thread.

    Linux signals the child when the *thread* that forked it ends, not the process: a child
    started from a short-lived thread would be killed with it. So only a child started on the
    main thread (where `trellis up`, hosts and wadm run their loops) gets the death signal;
    others rely on their own watch (a pipe from us closing, `watch_parent`).
    """
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    return die_with_parent


#: set by a Trellis supervisor (`trellis up`, a host) in the environment of the children it starts
EXIT_WITH_PARENT_ENV = "TRELLIS_EXIT_WITH_PARENT"
#: how long a child whose supervisor is gone may take to stop before it exits regardless
ORPHAN_GRACE_S = 1.0


def supervised_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) for a child that must not outlive us (see `exit_with_parent`)."""
    return {**(os.environ if env is None else env), EXIT_WITH_PARENT_ENV: "1"}


def _kill_children() -> None:
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            child.kill()
    except Exception:  # on the way out, whatever happens
        pass


def exit_with_parent(grace_s: float = ORPHAN_GRACE_S, interval_s: float = 0.1) -> threading.Thread | None:
    """In a child a Trellis supervisor started: once that parent is gone, stop, and go within ``grace_s``.

    The death signal (`death_signal`) starts a graceful stop at once on Linux; this watch is
    the fallback where none arrives (another OS, a child started from a thread) and bounds
    the stop: a process whose NATS died with its parent must not wait out drain timeouts.
    Children of ours still running then (a host's workers and providers, told to stop with
    it) are killed on the way out, so a tree goes within one grace, not one per level.
    The parent is gone when our parent pid changes (we were re-parented). Does nothing
    unless `EXIT_WITH_PARENT_ENV` is set: a host a person started from a shell is theirs.
    """
    if os.environ.get(EXIT_WITH_PARENT_ENV) != "1":
        return None
    parent = os.getppid()

    def watch() -> None:
        _wait_for_exit(parent, interval_s)
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop, if no death signal began it
        finally:
            time.sleep(grace_s)
            _kill_children()  # ours were told to stop with us: they go now, not a grace later
            os._exit(0)

    t = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    t.start()
    return t


def _wait_for_exit(parent: int, interval_s: float) -> None:
    """Block until ``parent`` (our parent) has exited: on Linux a pidfd becomes readable then, so
    an idle child wakes for nothing; elsewhere, poll whether we were re-parented."""
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            if os.getppid() == parent:  # not already gone (then the pid may be another process's)
                select.select([fd], [], [])
            return
        finally:
            os.close(fd)
    while os.getppid() == parent:
        time.sleep(interval_s)


def spawn(argv: list[str], *, log: Path | None = None, env: dict[str, str] | None = None,
          stdin: Any = subprocess.DEVNULL, new_session: bool = True, inherit: bool = False) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C reaches only the supervisor) that dies with us.
    Its output goes to ``log``, or (``inherit``) to our stdout, else nowhere."""
    out: IO[bytes] | int | None = None if inherit else subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 (or DEVNULL, or inherited; closed below once the child has it)
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT if (log or inherit) else subprocess.DEVNULL,
            env=supervised_env(env), start_new_session=new_session, preexec_fn=death_signal(),
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
