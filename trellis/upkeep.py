"""The lean keeper of a running `trellis up`: what its process becomes once the lattice is up.

`trellis up` starts the lattice with the whole CLI loaded (typer, rich, nats-py, pydantic, the
build and deploy code): ~39 MiB of PSS, held only to watch its children afterwards. Once the
banner is out (and a ``--deploy`` has finished), it replaces itself (``execv``, same pid, same
children) with this module, run as a plain script so that not even the ``trellis`` package is
imported: the standard library and psutil, ~10 MiB (docs/performance.md, "Peak memory, third
session"). ``TRELLIS_UP_LEAN=0`` keeps the full process instead.

It does what `trellis up`'s supervisor did from then on, with the same messages: children that
exit are restarted with the same backoff (one that exits 0, asked to stop, is left stopped);
nats-server is restarted when it dies, and its log lines still reach ``logs/nats.log``; the
lock file keeps naming the children (for the next run's leftovers check); SIGINT or SIGTERM
stops the children in reverse order along the TERM → grace → KILL ladder, then nats-server,
then says "Trellis stopped." and exits 0.

Its one argument, ``--state-fd=N``, names an inherited memory file holding a JSON object
(``Up._hand_over``; not on the command line, where ``ps`` would show nats-server's
environment): ``lock_fd``, ``info`` (the lock file's fields but children), ``grace_s``,
``nats`` (``argv``, ``env``, ``pid``, ``stderr_fd``, ``log_file``) and ``children``
(``name``, ``argv``, ``log``, ``pid``, ``restarts``, ``done``).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
try:
    _prctl: Any = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover (not Linux)
    _prctl = None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def say(text: str) -> None:
    print(text, flush=True)


def _started(pid: int) -> float:
    """psutil's create_time (what `trellis.leftovers` compares); 0.0 if it cannot be read."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return 0.0


class Proc:
    """A child started before the hand-over (only its pid is known) or since (a Popen)."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.popen = popen
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone
                self.returncode = -1
                return self.returncode
            if pid != 0:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def stop(self, grace_s: float) -> None:
        if self.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            while self.poll() is None:
                time.sleep(0.02)


def _copy_log(fd: int, path: str | None) -> None:
    """nats-server's stderr to its log file (it must not write into a closed pipe)."""
    with os.fdopen(fd, "rb", buffering=0) as src, open(path or os.devnull, "ab") as sink:
        while chunk := src.read(65536):
            sink.write(chunk)
            sink.flush()


class Keeper:
    def __init__(self, state: dict[str, Any]) -> None:
        self.lock_fd: int = state["lock_fd"]
        self.info: dict[str, Any] = state["info"]
        self.grace_s: float = state["grace_s"]
        self.nats: dict[str, Any] = state["nats"]
        self.nats_proc = Proc(self.nats["pid"])
        self.children: list[dict[str, Any]] = state["children"]
        self.procs = [Proc(c["pid"]) for c in self.children]
        self.next_start = [0.0 for _ in self.children]
        self.stopping = threading.Event()
        self._reader(self.nats["stderr_fd"])

    def _reader(self, fd: int) -> None:
        threading.Thread(target=_copy_log, args=(fd, self.nats["log_file"]), name="nats-server-log",
                         daemon=True).start()

    def _lock(self) -> None:
        kids = [{"name": "nats-server", "pid": self.nats_proc.pid, "started": _started(self.nats_proc.pid)}]
        kids += [{"name": c["name"], "pid": p.pid, "started": _started(p.pid)}
                 for c, p in zip(self.children, self.procs, strict=True)]
        data = json.dumps({**self.info, "pid": os.getpid(), "children": kids}).encode()
        os.lseek(self.lock_fd, 0, os.SEEK_SET)
        os.ftruncate(self.lock_fd, 0)
        os.write(self.lock_fd, data)

    def _start_nats(self) -> None:
        popen = subprocess.Popen(self.nats["argv"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, env=self.nats["env"], start_new_session=True,
                                 preexec_fn=_die_with_parent)
        assert popen.stderr is not None
        self.nats_proc = Proc(popen.pid, popen)
        self._reader(os.dup(popen.stderr.fileno()))
        popen.stderr.close()

    def _start(self, i: int) -> None:
        c = self.children[i]
        out: IO[bytes] | None = open(c["log"], "ab") if c["log"] else None  # noqa: SIM115 (closed below)
        try:
            popen = subprocess.Popen(c["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "TRELLIS_EXIT_WITH_PARENT": "1"},
                                     start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            if out is not None:
                out.close()
        self.procs[i] = Proc(popen.pid, popen)

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked across the exec
        try:
            while not self.stopping.wait(0.2):
                self._pass()
        finally:
            self._stop_all()
        return 0

    def _pass(self) -> None:
        if self.nats_proc.poll() is not None:
            say("nats-server exited; restarting it")
            self._start_nats()
            self._lock()
        now = time.monotonic()
        for i, (c, p) in enumerate(zip(self.children, self.procs, strict=True)):
            if c["done"] or p.poll() is None:
                continue
            if p.returncode == 0:
                c["done"] = True
                say(f"{c['name']} stopped (exit 0); not restarting it")
                continue
            backoff = min(30.0, 0.5 * (2 ** min(c["restarts"], 6)))
            if self.next_start[i] == 0.0:
                self.next_start[i] = now + backoff
                say(f"{c['name']} exited with {p.returncode}; restarting in {backoff:.1f}s (see {c['log']})")
            elif now >= self.next_start[i]:
                c["restarts"] += 1
                self.next_start[i] = 0.0
                self._start(i)
                self._lock()

    def _stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop(self.grace_s)
        self.nats_proc.stop(10.0)
        say("Trellis stopped.")
        os.lseek(self.lock_fd, 0, os.SEEK_SET)
        os.ftruncate(self.lock_fd, 0)
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        os.close(self.lock_fd)


def _read_state(arg: str) -> dict[str, Any]:
    """``--state-fd=N``: the state `trellis up` wrote into an inherited memory file (kept off ``ps``)."""
    fd = int(arg.removeprefix("--state-fd="))
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    state: dict[str, Any] = json.loads(b"".join(chunks))
    return state


def main(argv: list[str]) -> int:
    return Keeper(_read_state(argv[1])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
