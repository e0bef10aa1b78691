"""Workers forked from one pre-loaded parent (host/workers/zygote.py, forks.py), supervised as before."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import psutil

from trellis.host.tuning import ProcessTuning, Tuning
from trellis.host.workers.forks import ZYGOTE_MODULE
from trellis.host.workers.messages import Boot
from trellis.host.workers.pool import WorkerPool
from trellis.kit.service import TaskGroup
from trellis.natsserver import NatsServer

from ..harness import eventually


def _boot(nats_server: NatsServer, lattice: str, zygote: bool, lean_after_s: float | None = None,
          nice: int = 0) -> Boot:
    return Boot(lattice=lattice, host_id="N" + "A" * 55, nats={"url": nats_server.url}, threads=1,
                tuning=Tuning(process=ProcessTuning(worker_zygote=zygote, zygote_lean_after_s=lean_after_s,
                                                    worker_nice=nice)))


def _lean(pid: int) -> bool:
    return any(part.endswith("zygote_lean.py") for part in psutil.Process(pid).cmdline())


async def _answers(pool: WorkerPool) -> bool:
    return await asyncio.wait_for(pool.stats(), 60) == [{}, {}]


async def test_workers_are_forked_from_the_zygote_and_restarted_when_they_or_it_die(nats_server: NatsServer,
                                                                                  lattice: str) -> None:
    tasks = TaskGroup("test")
    pool = WorkerPool(_boot(nats_server, lattice, zygote=True, nice=5), 2, tasks)
    try:
        await pool.start()
        assert pool.zygote is not None and pool.zygote.proc is not None
        zygote = psutil.Process(pool.zygote.proc.pid)
        assert ZYGOTE_MODULE in zygote.cmdline()
        first = pool.pids()
        assert len(first) == 2 and all(psutil.Process(p).ppid() == zygote.pid for p in first)
        # workers yield the CPU to their host's event loop (process.worker_nice; 0 by default)
        assert all(psutil.Process(p).nice() == min(zygote.nice() + 5, 19) for p in first)
        assert await _answers(pool)

        os.kill(first[0], signal.SIGKILL)  # a worker dies: the pool forks another from the same zygote
        await eventually(lambda: pool.restarts == 1 and len(pool.pids()) == 2 and first[0] not in pool.pids(), 60,
                         what="the worker restarted")
        assert all(psutil.Process(p).ppid() == zygote.pid for p in pool.pids())
        assert await _answers(pool)

        zygote.kill()  # the zygote dies, its workers with it: both restarted, through a new zygote
        await eventually(lambda: pool.restarts == 3 and len(pool.pids()) == 2, 60, what="both workers restarted")
        assert pool.zygote.proc is not None and pool.zygote.proc.pid != zygote.pid
        assert all(psutil.Process(p).ppid() == pool.zygote.proc.pid for p in pool.pids())
        assert await _answers(pool)
        last = pool.zygote.proc.pid
    finally:
        await pool.close(grace_s=2)
        await tasks.close()
    assert not psutil.pid_exists(last) or psutil.Process(last).status() == psutil.STATUS_ZOMBIE


async def test_the_zygote_goes_lean_once_its_workers_run_and_comes_back_for_a_fork(nats_server: NatsServer,
                                                                                  lattice: str) -> None:
    """``zygote_lean_after_s``: the zygote exec's ``zygote_lean.py`` (same pid, its workers still its
    children, far less memory); a worker that dies is reported and forked again through the full zygote."""
    tasks = TaskGroup("test")
    pool = WorkerPool(_boot(nats_server, lattice, zygote=True, lean_after_s=0.5), 2, tasks)
    try:
        await pool.start()
        assert pool.zygote is not None and pool.zygote.proc is not None
        zygote = pool.zygote.proc.pid
        await eventually(lambda: _lean(zygote), 30, what="the zygote exec'd its lean copy")
        assert ZYGOTE_MODULE in psutil.Process(zygote).cmdline()  # as tools find it
        # its own memory: ~3 MiB (a full zygote holds its imports and wasmtime: 25 MiB and more)
        assert psutil.Process(zygote).memory_full_info().uss < 10 * 1024 * 1024
        first = pool.pids()
        assert all(psutil.Process(p).ppid() == zygote for p in first)
        assert await _answers(pool)

        os.kill(first[0], signal.SIGKILL)  # reported by the lean zygote; forked by the full one it exec's
        await eventually(lambda: pool.restarts == 1 and len(pool.pids()) == 2 and first[0] not in pool.pids(), 60,
                         what="the worker restarted")
        assert pool.zygote.proc.pid == zygote and all(psutil.Process(p).ppid() == zygote for p in pool.pids())
        assert await _answers(pool)
        await eventually(lambda: _lean(zygote), 30, what="lean again")
    finally:
        await pool.close(grace_s=2)
        await tasks.close()
    assert not psutil.pid_exists(zygote) or psutil.Process(zygote).status() == psutil.STATUS_ZOMBIE


async def test_without_the_zygote_each_worker_is_a_process_of_its_own(nats_server: NatsServer, lattice: str) -> None:
    tasks = TaskGroup("test")
    pool = WorkerPool(_boot(nats_server, lattice, zygote=False), 2, tasks)
    try:
        await pool.start()
        assert pool.zygote is None
        assert [psutil.Process(p).ppid() for p in pool.pids()] == [os.getpid()] * 2
        assert await _answers(pool)
    finally:
        await pool.close(grace_s=2)
        await tasks.close()


_PREFORKED_HOST = r'''
import asyncio, json, os, sys
import psutil
from trellis.host.workers import forks
from trellis.host.tuning import ProcessTuning, Tuning
from trellis.host.workers.messages import Boot
from trellis.host.workers.pool import WorkerPool
from trellis.kit.service import TaskGroup

assert forks.prefork(None), "not forked"
preforked = forks._preforked[0].pid

async def main() -> dict:
    tasks = TaskGroup("test")
    boot = Boot(lattice=sys.argv[2], host_id="N" + "A" * 55, nats={"url": sys.argv[1]}, threads=1,
                tuning=Tuning(process=ProcessTuning(worker_zygote=True)))
    pool = WorkerPool(boot, 2, tasks)
    out = {"preforked": preforked}
    try:
        await pool.start()
        zygote = psutil.Process(pool.zygote.proc.pid)
        out.update(zygote=zygote.pid, zygote_parent=zygote.ppid(), zygote_cmdline=zygote.cmdline(),
                   worker_parents=[psutil.Process(p).ppid() for p in pool.pids()],
                   answers=await asyncio.wait_for(pool.stats(), 60))
        zygote.kill()  # its workers with it: restarted through a zygote started as a process of its own
        for _ in range(600):
            if pool.restarts == 2 and len(pool.pids()) == 2:
                break
            await asyncio.sleep(0.1)
        again = psutil.Process(pool.zygote.proc.pid)
        out.update(again=again.pid, again_cmdline=again.cmdline(),
                   again_answers=await asyncio.wait_for(pool.stats(), 60))
    finally:
        await pool.close(grace_s=2)
        await tasks.close()
    return out

print(json.dumps(asyncio.run(main())))
'''


async def test_trellis_host_forks_the_zygote_from_its_own_process_before_its_threads(nats_server: NatsServer,
                                                                                    lattice: str) -> None:
    """``forks.prefork`` (what ``trellis host`` calls first): the pool takes up that zygote, which
    shows an exec'd zygote's command line; a zygote started again is one of its own."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-P", "-c", _PREFORKED_HOST, nats_server.url, lattice,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0
    got = json.loads(out)
    assert got["zygote"] == got["preforked"] and got["zygote_parent"] == proc.pid
    assert ZYGOTE_MODULE in got["zygote_cmdline"] and got["worker_parents"] == [got["zygote"]] * 2
    assert got["answers"] == [{}, {}]
    assert got["again"] != got["zygote"] and ZYGOTE_MODULE in got["again_cmdline"]
    assert got["again_answers"] == [{}, {}]
