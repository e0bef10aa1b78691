"""The worker's Wasm threads (``host/workers/wasm_threads.py``): a call handed from the loop to a
thread answers the loop's future; failures, cancellation, the Executor interface, growth and
shutdown behave as ``run_in_executor`` on a ``ThreadPoolExecutor`` did."""

from __future__ import annotations

import asyncio
import threading

import pytest

from trellis.host.workers.wasm_threads import WasmThreads


def test_results_failures_and_the_executor_interface() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = WasmThreads(2)
        names: set[str] = set()

        def work(x: int) -> int:
            names.add(threading.current_thread().name)
            return x * 2

        assert await asyncio.gather(*(pool.run(loop, work, i) for i in range(50))) == [i * 2 for i in range(50)]
        assert names <= {"wasm_0", "wasm_1"}  # never more threads than allowed

        def boom() -> None:
            raise ValueError("bad argument")

        with pytest.raises(ValueError, match="bad argument"):
            await pool.run(loop, boom)
        assert await loop.run_in_executor(pool, work, 21) == 42  # the worker's parking uses this way in
        with pytest.raises(ValueError):
            await loop.run_in_executor(pool, boom)
        pool.shutdown(wait=True)
        with pytest.raises(RuntimeError):
            pool.run(loop, work, 1)
        with pytest.raises(RuntimeError):
            pool.submit(work, 1)

    asyncio.run(main())


def test_a_cancelled_call_does_not_run_and_queued_calls_get_threads_as_they_grow() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = WasmThreads(1)
        release = threading.Event()
        ran: list[str] = []

        def hold() -> str:
            release.wait(10)
            return "held"

        first = pool.run(loop, hold)  # takes the only thread
        cancelled = pool.run(loop, ran.append, "cancelled")
        cancelled.cancel()
        # a call that needs another thread while the first waits (a call waiting on a call of its
        # worker): it gets one once the pool may grow
        pool.grow(2)
        def second_call() -> str:
            release.set()
            return "second"

        second = pool.run(loop, second_call)
        assert await asyncio.wait_for(second, 10) == "second"
        assert await asyncio.wait_for(first, 10) == "held"
        assert await asyncio.wait_for(pool.run(loop, ran.append, "after"), 10) is None
        assert ran == ["after"]  # the cancelled call never ran
        pool.shutdown(wait=True)

    asyncio.run(main())


def test_shutdown_cancels_queued_calls() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = WasmThreads(1)
        release, started = threading.Event(), threading.Event()

        def hold() -> bool:
            started.set()
            return release.wait(10)

        running = pool.run(loop, hold)
        assert started.wait(10)  # the thread has taken it: shutdown does not cancel it
        queued = [pool.run(loop, lambda: "never") for _ in range(3)]
        pool.shutdown(wait=False, cancel_futures=True)
        release.set()
        assert await asyncio.wait_for(running, 10) is True  # the running call finishes
        for fut in queued:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(fut, 10)

    asyncio.run(main())
