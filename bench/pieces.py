"""What each piece of the RPC layer costs per call, in process, and what a leaner form costs.

Each entry times one step the worker (``RpcServer`` + ``Worker._invoke``) or
the client (``RpcClient``) performs per call, on uvloop, next to a cheaper way
to do the same thing. The sum of the savings is an estimate of what the
suggested changes in docs/performance.md would take off each call's CPU.
No NATS, no Wasm: only the Python around them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import trace as otel_trace

from interfaces import tracing
from interfaces.envelope import Invocation, Reply

from ._context import Context

_CACHED_TRACER = tracing.tracer()


async def _time_async(step: Callable[[], Awaitable[Any]], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            await step()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return round(best, 2)


async def _pieces(n: int) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    inv = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                     deadline_ms=int((time.time() + 30) * 1000), trace={})
    frame = inv.encode()
    executor = ThreadPoolExecutor(8, thread_name_prefix="wasm")
    sem = asyncio.Semaphore(20)

    async def decode_encode() -> None:
        i = Invocation.decode(frame)
        Reply(id=i.id, ok=True, result=3).encode()

    async def span_now() -> None:
        ctx = tracing.extract(inv.trace)
        with tracing.tracer().start_as_current_span(
                f"serve {inv.target} {inv.operation}", context=ctx, kind=otel_trace.SpanKind.SERVER,
                attributes={"trellis.invocation_id": inv.id, "trellis.source": inv.source,
                            "trellis.attempt": inv.attempt}):
            pass

    async def span_lean() -> None:
        if inv.trace:  # pragma: no cover - empty here, as without a tracing SDK
            tracing.extract(inv.trace)
        with _CACHED_TRACER.start_as_current_span("serve", kind=otel_trace.SpanKind.SERVER):
            pass

    async def sleeper() -> None:
        while True:
            await asyncio.sleep(0.25)

    async def keepalive_task() -> None:
        t = loop.create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel()

    async def keepalive_timer() -> None:
        h = loop.call_later(0.25, lambda: None)
        await asyncio.sleep(0)
        h.cancel()

    async def sem_wait_for() -> None:
        await asyncio.wait_for(sem.acquire(), 10)
        sem.release()

    async def sem_plain() -> None:
        await sem.acquire()
        sem.release()

    def noop() -> int:
        return 3

    async def in_executor() -> None:
        await loop.run_in_executor(executor, noop)

    async def inline() -> None:
        noop()

    async def serve_task() -> None:
        await loop.create_task(inline())

    async def inject_eager() -> None:
        tracing.inject()

    async def nothing() -> None:
        pass

    async def client_envelope() -> None:
        i = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                       deadline_ms=int((time.time() + 30) * 1000))
        with tracing.tracer().start_as_current_span("call adder add", attributes={"trellis.invocation_id": i.id}):
            i.trace = tracing.inject()
            i.encode()

    seq = [0]

    async def client_envelope_lean() -> None:
        seq[0] += 1
        i = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                       deadline_ms=int((time.time() + 30) * 1000), id=f"{_PREFIX}{seq[0]:x}")
        i.encode()

    async def reply_queue_wait_for() -> None:
        q: asyncio.Queue[int] = asyncio.Queue()
        loop.call_soon(q.put_nowait, 1)
        await asyncio.wait_for(q.get(), 1.0)

    async def reply_future_timer() -> None:
        fut = loop.create_future()
        h = loop.call_later(1.0, lambda: None)
        loop.call_soon(fut.set_result, 1)
        await fut
        h.cancel()

    pairs = [
        ("worker", "decode Invocation + encode Reply (necessary)", decode_encode, None, ""),
        ("worker", "server span: tracing.tracer() per call + extract({})", span_now, span_lean,
         "module-level tracer, skip extract when trace is empty"),
        ("worker", "progress keepalive: a task per call, cancelled", keepalive_task, keepalive_timer,
         "loop.call_later timer, re-armed only if the call runs 250 ms"),
        ("worker", "admission: asyncio.wait_for(semaphore.acquire())", sem_wait_for, sem_plain,
         "acquire directly when a slot is free (wait_for only when queued)"),
        ("worker", "Wasm call handed to the 8-thread pool (no-op function)", in_executor, inline,
         "inline on the event loop, as the minimal worker does (for short, import-free calls)"),
        ("worker", "trace context for imports computed for every call (Worker._invoke)", inject_eager, nothing,
         "compute it in the import handler, only when an import is called"),
        ("worker", "a task per message (RpcServer._on_msg)", serve_task, inline, "(kept: needed for concurrency)"),
        ("client", "Invocation with uuid4 + client span + inject + encode", client_envelope, client_envelope_lean,
         "per-client id prefix + counter, span only when tracing is configured"),
        ("client", "reply wait: asyncio.Queue + wait_for per attempt", reply_queue_wait_for, reply_future_timer,
         "one future per call + a call_later silence timer"),
    ]
    rows = []
    for side, what, now, lean, how in pairs:
        t_now = await _time_async(now, n)
        t_lean = await _time_async(lean, n) if lean is not None else None
        rows.append({"side": side, "step": what, "now_us": t_now, "lean_us": t_lean, "lean_is": how,
                     "saves_us": round(t_now - t_lean, 2) if t_lean is not None else None})
    executor.shutdown()
    return rows


_PREFIX = uuid.uuid4().hex[:12]


def run(ctx: Context) -> None:
    import uvloop

    rows = uvloop.run(_pieces(ctx.pick(2000, 10000)))
    ctx.details["pieces"] = rows
    for r in rows:
        ctx.row(f"{r['side']}: {r['step']}", "µs/call", r["now_us"], r["lean_us"], r["lean_is"] or "-")
    for side in ("worker", "client"):
        saved = sum(r["saves_us"] or 0 for r in rows if r["side"] == side and not r["lean_is"].startswith("(kept"))
        ctx.details[f"{side}_saving_us_per_call"] = round(saved, 1)
