"""A worker that is still starting: what the host sends it then is not lost (host/workers/pool.py,
host/workers/channel.py)."""

from __future__ import annotations

import asyncio
import sys

from trellis.host.workers.messages import Answer, Boot, Ready, Stats, parse_event
from trellis.host.workers.pool import WorkerPool
from trellis.kit.service import TaskGroup
from trellis.natsserver import NatsServer


def _boot(nats_server: NatsServer, lattice: str) -> Boot:
    return Boot(lattice=lattice, host_id="N" + "A" * 55, nats={"url": nats_server.url}, threads=1)


async def test_a_command_written_with_the_boot_line_is_answered(nats_server: NatsServer, lattice: str) -> None:
    """The host's first command can reach the pipe together with the boot line (a start sent to a
    host whose workers were still importing): the worker must not read it into a buffer that its
    command channel never looks at, or the host waits for the answer forever."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-P", "-m", "trellis.host.workers",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_boot(nats_server, lattice).line() + Stats(id=7).line())  # in one write
        await proc.stdin.drain()
        ready = parse_event(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert isinstance(ready, Ready)
        answer = parse_event(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert isinstance(answer, Answer) and answer.id == 7 and answer.ok, answer
    finally:
        proc.stdin.close()  # the host went away: the worker stops
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_a_pool_command_to_a_worker_still_starting_is_answered(nats_server: NatsServer,
                                                                      lattice: str) -> None:
    """The pool sends a worker commands only once it said Ready; before that they wait for it."""
    tasks = TaskGroup("test")
    pool = WorkerPool(_boot(nats_server, lattice), 1, tasks)
    try:
        await pool._spawn(pool.workers[0])  # its boot line written; the worker is still importing
        assert not pool.workers[0].ready.is_set()
        assert await asyncio.wait_for(pool.stats(), 60) == [{}]
        assert pool.workers[0].ready.is_set()
    finally:
        await pool.close(grace_s=2)
        await tasks.close()
