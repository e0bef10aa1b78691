"""The processes a benchmark runs: nats-server, `trellis host`, baseline responders.

Everything listens on 127.0.0.1 only. Each process is started by the
benchmark, owned by a :class:`Processes` stack and stopped by pid when the
benchmark ends (SIGTERM, grace, SIGKILL), whatever happened.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from trellis.kit import procs
from trellis.natsserver import NatsServer

from ._context import ensure_compiled

BENCH_ENV = {"TRELLIS_LOG_LEVEL": "WARNING", "OTEL_TRACES_EXPORTER": "none"}


@functools.cache
def host_has_workers_flag() -> bool:
    """Whether `trellis host` takes ``--workers`` (else bench/_host_main.py runs the host)."""
    out = subprocess.run(procs.trellis_argv("host", "--help"), capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=60)
    return "--workers" in out.stdout


def host_embeds_wadm(env: dict[str, str] | None = None) -> bool:
    """Whether a lattice with this environment runs its wadm controller in the host's process, as
    `trellis up` does (`trellis host --with-wadm`): unless ``TRELLIS_UP_WADM_PROCESS=1`` asks for a
    process of its own, as before, or the checkout the environment runs (an A/B twin's PYTHONPATH)
    has no such flag."""
    env = {**os.environ, **(env or {})}
    if env.get("TRELLIS_UP_WADM_PROCESS", "0").lower() not in ("", "0", "false", "no"):
        return False
    out = subprocess.run(procs.trellis_argv("host", "--help"), capture_output=True, text=True,
                         env={**env, "COLUMNS": "200"}, timeout=60)
    return "--with-wadm" in out.stdout


def new_lattice() -> str:
    return "bench" + uuid.uuid4().hex[:8]


class HostProc:
    """A host in its own process: `trellis host --workers N`, or the fallback script.

    Both print one JSON line ``{"event": "host_started", "host_id": …}`` when
    they have joined the lattice; ``boot_s`` is the time from spawn to that line.
    """

    def __init__(self, nats_url: str, lattice: str, state_dir: Path, workers: int, log: Path,
                 threads: int | None = None, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        args = ["--nats-url", nats_url, "--lattice", lattice, "--state-dir", str(state_dir),
                "--workers", str(workers), "--log-level", "warning", *(extra_args or [])]
        if threads is not None:
            args += ["--worker-threads", str(threads)]
        if host_has_workers_flag():
            argv = procs.trellis_argv("host", *args)
        else:
            argv = [sys.executable, "-m", "bench._host_main", *args]
        self.workers = workers
        self.state_dir = state_dir
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as err:
            self._t0 = time.perf_counter()
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **BENCH_ENV, **(env or {})}, start_new_session=True)
        self.id = ""
        self.boot_s = float("nan")

    def wait_started(self, timeout_s: float = 60.0) -> HostProc:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        try:
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
                    self.id = msg["host_id"]
                    self.boot_s = time.perf_counter() - self._t0
                    return self
        finally:
            sel.close()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"host did not start (exit {self.proc.poll()}):\n{tail}")

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (the host's `python -m trellis.host.workers` children)."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        pids = []
        for k in kids:
            try:
                cmd = " ".join(k.cmdline())
                # not the workers' zygote, their parent (the host's child; its forks have its command line)
                zygote = "workers.zygote" in cmd and k.ppid() == self.proc.pid
                if "trellis.host.workers" in cmd and not zygote:
                    pids.append(k.pid)
            except psutil.Error:
                continue
        return sorted(pids)

    def wait_workers(self, timeout_s: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= self.workers:
                return pids
            time.sleep(0.05)
        raise RuntimeError(f"host has {len(self.worker_pids())} worker processes, expected {self.workers}")

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            procs.stop(self.proc, grace_s)
        if self.proc.poll() is None:  # pragma: no cover - procs.stop kills
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        # workers die with the host; make sure none outlives a benchmark
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Processes:
    """Starts the processes of one benchmark and stops all of them, newest first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._stack: list[object] = []

    def nats(self) -> NatsServer:
        server = NatsServer(host="127.0.0.1", port=0, store_dir=self.workdir / "nats",
                            log_file=self.workdir / "logs" / "nats.log")
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        server.start()
        self._stack.append(server)
        return server

    def host(self, nats_url: str, lattice: str, workers: int, state_dir: Path | None = None,
             label: str = "host", warm_cache: bool = True, threads: int | None = None,
             env: dict[str, str] | None = None) -> HostProc:
        """Start a host; with ``warm_cache`` its compile cache starts as a copy of the bench's; ``env`` is
        added to its environment."""
        state = state_dir or self.workdir / f"state-{label}"
        if warm_cache:
            compiled = state / "compiled"
            compiled.mkdir(parents=True, exist_ok=True)
            for art in ensure_compiled().glob("*.cwasm"):
                if not (compiled / art.name).exists():
                    shutil.copyfile(art, compiled / art.name)
        h = HostProc(nats_url, lattice, state, workers, self.workdir / "logs" / f"{label}.log", threads, env)
        self._stack.append(h)
        return h.wait_started()

    def responders(self, *arglists: list[str]) -> list[subprocess.Popen[bytes]]:
        """Baseline responders (bench/_responder.py), started in parallel: ``["echo", URL, SUBJECT]``
        or ``["invoke", …]``. Returns once each has subscribed."""
        started = []
        for args in arglists:
            argv = [sys.executable, "-m", "bench._responder", *args]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **BENCH_ENV}, start_new_session=True)
            self._stack.append(proc)
            started.append((args, proc))
        for args, proc in started:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "ready" once subscribed and flushed
            if b"ready" not in line:
                raise RuntimeError(f"responder {args[:1]} did not start (exit {proc.poll()})")
        return [proc for _, proc in started]

    def stop(self, item: object) -> None:
        if item in self._stack:
            self._stack.remove(item)
        _stop(item)

    def close(self) -> None:
        while self._stack:
            _stop(self._stack.pop())


def _stop(item: object) -> None:
    if isinstance(item, (HostProc, NatsServer)):
        item.stop()
    elif isinstance(item, subprocess.Popen):
        procs.stop(item, 5.0)
        if item.stdout and not item.stdout.closed:
            item.stdout.close()

