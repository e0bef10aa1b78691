"""Real Redis and PostgreSQL servers for tests, from Debian's packages, on free ports in temp dirs.

No mocks: the built-in providers are tested against the servers they serve in
production. A missing binary fails the test with the command that installs it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

INSTALL_HINT = "install them with: apt-get install redis-server postgresql"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ready: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {timeout}s:\n{tail}")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


class RedisServer:
    """``redis-server`` without persistence, listening on 127.0.0.1."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(f"redis-server is not installed; {INSTALL_HINT}")
        self.dir = Path(tempfile.mkdtemp(prefix="trellis-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.log), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _accepts(self.port), 15, "redis-server", self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throwaway cluster (``initdb`` + ``pg_ctl``), superuser ``trellis`` with trust auth on 127.0.0.1.

    As root it runs as the ``postgres`` system user (initdb refuses root). The
    postmaster is started by ``pg_ctl``, so it is not a child of the test
    process (its backends come and go with connections, which a leak check
    would otherwise trip over).
    """

    USER = "trellis"

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            pytest.fail(f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); {INSTALL_HINT}")
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="trellis-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(f"running as root needs the 'postgres' system user; {INSTALL_HINT}")
            self.as_user = "postgres"
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--no-instructions"])
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run([str(self.bin / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", "60", "-o", options])
        _wait(lambda: _accepts(self.port), 30, "postgres", self.log)
        self.url = f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, user=self.as_user, cwd=self.dir, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def create_database(self, name: str) -> str:
        """A fresh database; returns its URL."""
        self._run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, name])
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w"])
        shutil.rmtree(self.dir, ignore_errors=True)
