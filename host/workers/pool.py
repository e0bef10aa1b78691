"""The host side of its worker processes: spawn, command, supervise, restart."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trellis.interfaces.telemetry import merge
from trellis.kit.procs import death_signal, supervised_env
from trellis.kit.service import TaskGroup

from .forks import ForkedWorker, Zygote
from .messages import Boot, Command, Load, Metrics, Ready, Scale, Shutdown, Stats, Unload, Usage, parse_event

log = logging.getLogger(__name__)
#: how long a worker may take from its start to its Ready
READY_TIMEOUT_S = 30.0


def split_share(max_instances: int, workers: int) -> list[int]:
    """Split a component's concurrency cap across workers; the shares add up exactly."""
    base, extra = divmod(max_instances, workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


class WorkerError(RuntimeError):
    pass


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | ForkedWorker | None = None
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0


class WorkerPool:
    def __init__(self, boot: Boot, count: int, tasks: TaskGroup, log_dir: Path | None = None,
                 log_env: dict[str, str] | None = None) -> None:
        self.boot = boot
        self.count = max(1, count)
        self.tasks = tasks
        self.log_dir = log_dir
        #: TRELLIS_LOG_FORMAT / TRELLIS_LOG_TO for the workers (interfaces/logs.py)
        self.log_env = log_env or {}
        self.workers = [_Worker(i) for i in range(self.count)]
        self._ids = itertools.count(1)
        self._closing = False
        # component_id -> load command (without the per-worker share), replayed on restart
        self.loaded: dict[str, Load] = {}
        #: each worker's last metrics; the counters of workers that died, so the host's totals never go back
        self._last_metrics: dict[int, list[dict[str, Any]]] = {}
        self._retired: list[dict[str, Any]] = []
        #: the workers' pre-loaded parent (forks.py, zygote.py); None: each worker a process of its own
        process = boot.tuning.process
        self.zygote = (Zygote(log_dir, supervised_env({**os.environ, **self.log_env}), process.zygote_lean_after_s)
                       if process.worker_zygote else None)

    async def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)), timeout_s)

    async def _spawn(self, w: _Worker) -> None:
        w.ready = asyncio.Event()
        stderr: Any = None
        to = self.log_env.get("TRELLIS_LOG_TO")
        if to == "stdout":
            stderr = sys.stdout  # the worker's log lines on the host's stdout (its own is our channel)
        elif self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            # with files, the worker writes (and rotates) worker-N.log itself; its crash output goes here
            name = f"worker-{w.index}.stderr.log" if to == "files" else f"worker-{w.index}.log"
            stderr = open(self.log_dir / name, "ab")  # noqa: SIM115 (closed once the child has it)
        env = supervised_env({**os.environ, **self.log_env})  # it goes when the host does
        try:
            if self.zygote is not None:
                w.proc = await self.zygote.spawn(env, stderr)
            else:
                w.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-m", "trellis.host.workers", stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env, limit=16 * 1024 * 1024,
                    preexec_fn=death_signal(),  # and its stdin closing: it does not outlive the host
                )
        finally:
            if stderr is not None and stderr is not sys.stdout:
                stderr.close()
        assert w.proc.stdin is not None
        w.proc.stdin.write(self.boot.model_copy(update={"worker_index": w.index}).line())
        await w.proc.stdin.drain()
        self.tasks.spawn(self._read(w, w.proc), f"worker-{w.index}-reader")

    async def _read(self, w: _Worker, proc: asyncio.subprocess.Process | ForkedWorker) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                msg = parse_event(line)
            except ValueError:
                log.warning("worker %d said something that is not a message: %.200r", w.index, line)
                continue
            if isinstance(msg, Ready):
                w.ready.set()
                continue
            fut = w.pending.pop(msg.id, None)
            if fut is not None and not fut.done():
                if msg.ok:
                    fut.set_result(msg.result)
                else:
                    fut.set_exception(WorkerError(msg.error or "worker command failed"))
        code = await proc.wait()
        for fut in w.pending.values():
            if not fut.done():
                fut.set_exception(WorkerError(f"worker {w.index} exited with {code}"))
        w.pending.clear()
        if not self._closing:
            log.warning("worker %d exited with %s; restarting", w.index, code)
            self.tasks.spawn(self._restart(w), f"worker-{w.index}-restart")

    async def _restart(self, w: _Worker) -> None:
        w.restarts += 1
        last = self._last_metrics.pop(w.index, [])
        if last:
            self._retired = merge([self._retired, [s for s in last if s["kind"] in ("counter", "histogram")]])
        await asyncio.sleep(min(5.0, 0.1 * 2 ** min(w.restarts, 6)))
        if self._closing:
            return
        await self._spawn(w)
        await asyncio.wait_for(w.ready.wait(), READY_TIMEOUT_S)
        for cid, cmd in list(self.loaded.items()):
            share = split_share(cmd.max_instances, self.count)[w.index]
            try:
                await self._command(w, cmd.for_worker(share))
            except WorkerError as exc:
                log.error("worker %d could not reload %s: %s", w.index, cid, exc)

    async def _command(self, w: _Worker, cmd: Command, timeout_s: float = 900.0) -> Any:
        if w.proc is None or w.proc.returncode is not None or w.proc.stdin is None:
            raise WorkerError(f"worker {w.index} is not running")
        if not w.ready.is_set():  # (re)starting: a command goes after its boot has been read, never with it
            wait_s = min(timeout_s, READY_TIMEOUT_S)
            try:
                await asyncio.wait_for(w.ready.wait(), wait_s)
            except TimeoutError:
                raise WorkerError(f"worker {w.index} did not start within {wait_s:.0f}s") from None
            if w.proc is None or w.proc.returncode is not None or w.proc.stdin is None:
                raise WorkerError(f"worker {w.index} is not running")
        cid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        w.pending[cid] = fut
        w.proc.stdin.write(cmd.model_copy(update={"id": cid}).line())
        await w.proc.stdin.drain()
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            w.pending.pop(cid, None)
            raise WorkerError(f"worker {w.index} did not finish '{cmd.op}' of "
                              f"{getattr(cmd, 'component_id', '')} within {timeout_s:.0f}s") from None

    async def _all(self, make: Callable[[_Worker], Command]) -> list[Any]:
        return await asyncio.gather(*(self._command(w, make(w)) for w in self.workers))

    # --- what the host asks for ------------------------------------------------------

    async def load(self, cmd: Load) -> dict[str, Any]:
        """Serve a component (or a new version of it) with ``cmd.max_instances`` per host."""
        shares = split_share(cmd.max_instances, self.count)
        # One worker compiles (or reads the compile cache); the others then load from the cache
        # rather than compiling the same code side by side on every core.
        first, *rest = self.workers
        result = await self._command(first, cmd.for_worker(shares[first.index]))
        await asyncio.gather(*(self._command(w, cmd.for_worker(shares[w.index])) for w in rest))
        self.loaded[cmd.component_id] = cmd
        return dict(result)

    async def scale(self, component_id: str, max_instances: int) -> None:
        shares = split_share(max_instances, self.count)
        await self._all(lambda w: Scale(component_id=component_id, share=shares[w.index]))
        self.loaded[component_id].max_instances = max_instances

    async def unload(self, component_id: str, grace_s: float = 10.0) -> None:
        self.loaded.pop(component_id, None)
        await self._all(lambda w: Unload(component_id=component_id, grace_s=grace_s))

    async def stats(self) -> list[Any]:
        return await self._all(lambda w: Stats())

    async def metrics(self) -> list[list[dict[str, Any]]]:
        """Each worker's metrics, a series list (``host/workers/metrics.py``); a worker that is
        restarting gives none."""
        async def one(w: _Worker) -> list[dict[str, Any]]:
            try:
                got = list(await self._command(w, Metrics(), timeout_s=5.0))
            except WorkerError:
                return []
            self._last_metrics[w.index] = got
            return got

        return [self._retired, *await asyncio.gather(*(one(w) for w in self.workers))]

    async def usage(self) -> list[dict[str, Any]]:
        """Each worker's usage tally per component (``usage.py``), cumulative since it started."""
        return await self._all(lambda w: Usage())

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc and w.proc.returncode is None]

    async def close(self, grace_s: float = 10.0) -> None:
        self._closing = True
        for w in self.workers:
            if w.proc and w.proc.returncode is None:
                try:
                    await self._command(w, Shutdown(grace_s=grace_s), timeout_s=2)
                except Exception:
                    pass
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                await asyncio.wait_for(w.proc.wait(), grace_s + 5)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
        if self.zygote is not None:
            await self.zygote.close()
