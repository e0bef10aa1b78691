"""trellis/kit/eager.py: a coroutine started on the caller's stack, a task only once it waits."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from trellis.kit import eager

VAR: contextvars.ContextVar[int] = contextvars.ContextVar("VAR", default=0)


async def test_a_coroutine_that_does_not_wait_runs_now_in_its_own_context():
    done: list[int] = []

    async def quick() -> None:
        VAR.set(1)
        done.append(VAR.get())

    assert eager.start(asyncio.get_running_loop(), quick()) is None
    assert done == [1] and VAR.get() == 0  # ran before start returned; its context var stayed its own


async def test_one_that_waits_goes_on_in_a_task_with_its_context_results_and_errors():
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    seen: list[object] = []

    async def waits() -> None:
        VAR.set(5)
        seen.append(await first)
        await asyncio.sleep(0)
        try:
            await second
        except ValueError as exc:
            seen.append(str(exc))
        seen.append((VAR.get(), asyncio.current_task() is not None))

    task = eager.start(loop, waits())
    assert task is not None and seen == []
    first.set_result(7)
    await asyncio.sleep(0)
    second.set_exception(ValueError("no"))
    await asyncio.wait_for(task, 5)
    assert seen == [7, "no", (5, True)]


@pytest.mark.parametrize("started", [False, True], ids=["before-its-first-step", "while-it-waits"])
async def test_cancelling_its_task_cancels_what_it_waits_on(started: bool):
    loop = asyncio.get_running_loop()
    waited = loop.create_future()
    seen: list[str] = []

    async def waits() -> None:
        try:
            await waited
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = eager.start(loop, waits())
    assert task is not None
    if started:
        await asyncio.sleep(0)
    task.cancel()
    try:
        await asyncio.wait_for(task, 5)
    except asyncio.CancelledError:
        pass
    assert seen == ["cancelled"] and waited.cancelled() and task.cancelled()


async def test_a_failure_before_any_wait_goes_to_the_loops_exception_handler():
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx["exception"]))
    try:
        async def fails() -> None:
            raise RuntimeError("boom")

        assert eager.start(loop, fails()) is None
    finally:
        loop.set_exception_handler(None)
    assert [str(e) for e in reported] == ["boom"]
