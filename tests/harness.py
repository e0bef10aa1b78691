"""Test harness: real nats-server, hosts in-process and as `trellis host` processes.

Waiting is done on conditions with deadlines (``eventually``), never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trellis.host.host import Host
from trellis.host.settings import HostSettings
from trellis.interfaces.connection import NatsSettings
from trellis.kit import procs

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
#: compiled code is keyed by digest and wasmtime version, so every test host may share it
COMPILE_CACHE = Path(os.environ.get("TRELLIS_TEST_COMPILE_CACHE", Path.home() / ".cache" / "trellis-test-compiled"))


async def eventually(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Poll ``cond`` (a function, sync or async) until it returns something truthy, and return that;
    fail with ``what`` at the deadline. (Typed loosely: a lambda would not infer through overloads.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
            if value:
                return value
            last_exc = None
        except AssertionError as exc:
            last_exc = exc
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last_exc
        await asyncio.sleep(interval)


class HostFactory:
    """Starts in-process hosts on one lattice and closes them all afterwards."""

    def __init__(self, nats_url: str, lattice: str, tmp: Path) -> None:
        self.nats_url = nats_url
        self.lattice = lattice
        self.tmp = tmp
        self.hosts: list[Host] = []

    async def start(self, **overrides: Any) -> Host:
        providers_here = overrides.pop("providers_here", None)  # host/provider_group.py's RunnerFactory
        settings = HostSettings(
            lattice=overrides.pop("lattice", self.lattice),
            nats=NatsSettings(url=overrides.pop("nats_url", self.nats_url)),
            heartbeat_interval_s=overrides.pop("heartbeat_interval_s", 0.5),
            workers=overrides.pop("workers", 1),
            compile_cache_dir=overrides.pop("compile_cache_dir", COMPILE_CACHE),
            state_dir=self.tmp / f"host{len(self.hosts)}",
            **overrides,
        )
        host = Host(settings, providers_here=providers_here)
        self.hosts.append(host)
        await host.start()
        return host

    async def close(self) -> None:
        await asyncio.gather(*(h.close(reason="test teardown") for h in self.hosts))
        for h in self.hosts:
            assert len(h.tasks) == 0, f"host {h.friendly_name} leaked tasks"


class HostProcess:
    """A real `trellis host` child process (optionally inside a network namespace)."""

    def __init__(self, nats_url: str, lattice: str, *args: str, netns: str | None = None,
                 log: Path | None = None, env: dict[str, str] | None = None) -> None:
        argv = procs.trellis_argv("host", "--nats-url", nats_url, "--lattice", lattice, *args)
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.log = log
        err = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (maybe DEVNULL; closed below)
        try:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        finally:
            if not isinstance(err, int):
                err.close()
        self.id = ""
        self.name = ""

    def wait_started(self, timeout: float = 20.0) -> HostProcess:
        """Read the host's first JSON line (its id) from stdout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == "host_started":
                self.id, self.name = msg["host_id"], msg["name"]
                return self
        tail = self.log.read_text()[-2000:] if self.log and self.log.exists() else ""
        raise AssertionError(f"host process did not start (exit {self.proc.poll()}):\n{tail}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self._close_pipe()

    def stop(self, grace: float = 10.0) -> int:
        code = procs.stop(self.proc, grace)
        self._close_pipe()
        return code

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._close_pipe()
        return code

    def _close_pipe(self) -> None:
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
            netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `trellis` command line."""
    argv = [sys.executable, "-m", "trellis.cli.main", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def is_worker(proc: Any) -> bool:
    """Whether a ``psutil.Process`` is a host's worker: ``python -m trellis.host.workers``, or a
    worker forked from the workers' zygote (its command line is the zygote's; the zygote's own
    parent is the host, not another zygote)."""
    import psutil

    try:
        cmd = " ".join(proc.cmdline())
        if "trellis.host.workers" not in cmd:
            return False
        return "workers.zygote" not in cmd or "workers.zygote" in " ".join(proc.parent().cmdline())
    except (psutil.Error, AttributeError):
        return False


def stop_process(proc: subprocess.Popen[Any], *, group: bool = False, grace_s: float = 30.0) -> None:
    """Stop a process started in its own session: SIGTERM (to its whole group with ``group``),
    SIGKILL to the group past ``grace_s``, then close its stdout pipe."""
    import signal

    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
