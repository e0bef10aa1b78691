"""What each piece of the RPC layer costs per call, in process, and what a leaner form costs.

Two kinds of rows, on uvloop, no NATS server, no Wasm: only the Python around them.

* **code** rows run the real code of this checkout: ``RpcServer._serve`` on one
  message and ``RpcClient.call`` for one call, against an in-process stand-in for
  the NATS connection (publish is a no-op; the client's replies come back
  through a subscription task as nats-py delivers them), next to the least a
  server or client must do for the same call (decode, handler, encode, publish;
  encode, future, publish, decode). Run it in an old checkout (``git worktree``
  or a copy) to compare versions: the entry points are the same.
* **design** rows time one step as the RPC layer or the worker did it before
  the cheaper version, next to that cheaper version, on the same loop. The
  sum of the savings estimates what the changes in docs/performance.md take
  off each call.

Each figure is the best of 5 batches, wall time and CPU time (process) per call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nats.aio.msg import Msg
from opentelemetry import propagate
from opentelemetry import trace as otel_trace

from trellis.interfaces import tracing
from trellis.interfaces.envelope import Invocation, Reply
from trellis.interfaces.rpc_client import RpcClient
from trellis.interfaces.rpc_server import RpcServer

from ._context import Context

_CACHED_TRACER = tracing.tracer()
#: tracing.enabled() where this checkout has it (an older one, run for comparison, may not)
_tracing_enabled: Callable[[], bool] = getattr(tracing, "enabled", lambda: False)


async def _time_async(step: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    """Best of 5 batches of ``n``: (wall µs, process CPU µs) per call."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(5):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            await step()
        best_cpu = min(best_cpu, (time.process_time() - c) / n * 1e6)
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return round(best, 2), round(best_cpu, 2)


class _StubNats:
    """Stands in for a nats-py ``Client``: publish does nothing (what nats-py costs is not ours)."""

    max_payload = 1024 * 1024

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "", headers: Any = None) -> None:
        pass


class _Loopback(_StubNats):
    """A nats-py ``Client`` stand-in that answers every request with ``reply_frame``, delivered
    to the reply subscription's callback from a task of its own, as nats-py does."""

    def __init__(self, reply_frame: bytes) -> None:
        self.reply_frame = reply_frame
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.cb: Any = None
        self.pump: asyncio.Task[None] | None = None

    def new_inbox(self) -> str:
        return "_INBOX.bench"

    async def subscribe(self, subject: str, queue: str = "", cb: Any = None, **kw: Any) -> _Loopback:
        self.cb = cb
        self.pump = asyncio.get_running_loop().create_task(self._pump())
        return self

    async def unsubscribe(self) -> None:
        if self.pump is not None:
            self.pump.cancel()

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "", headers: Any = None) -> None:
        if reply:
            self.queue.put_nowait(Msg(None, reply, "", self.reply_frame, None))  # type: ignore[arg-type]  # a stand-in message without a client

    async def _pump(self) -> None:
        while True:
            msg = await self.queue.get()
            await self.cb(msg)


async def _code_rows(n: int) -> list[dict[str, Any]]:
    """The real server and client paths of this checkout, next to the least each must do."""
    loop = asyncio.get_running_loop()
    deadline = int((time.time() + 3600) * 1000)
    frame = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                       deadline_ms=deadline, trace={}).encode()
    msg = Msg(None, "trellis.bench.rpc.adder", "_INBOX.x.1", frame, None)  # type: ignore[arg-type]  # a stand-in message without a client

    async def add(inv: Invocation) -> Any:
        return inv.args[0] + inv.args[1]

    stub = _StubNats()
    server = RpcServer(stub, "bench", "adder", add, served_by="host/0", max_concurrent=20)  # type: ignore[arg-type]  # a stub connection answering what the benchmark uses

    async def serve() -> None:
        await server._serve(msg)

    async def serve_minimal() -> None:
        inv = Invocation.decode(frame)
        result = await add(inv)
        await stub.publish(msg.reply, Reply(id=inv.id, ok=True, result=result).encode())

    reply = Reply(id="0" * 32, ok=True, result=3, served_by="host/0").encode()
    lb = _Loopback(reply)
    client = RpcClient(lb, "bench", source="client")  # type: ignore[arg-type]  # a stub connection answering what the benchmark uses

    async def call() -> None:
        await client.call("adder", "add", [1, 2], timeout_s=30)

    pending: dict[str, asyncio.Future[bytes]] = {}
    seq = [0]

    async def on_reply(m: Msg) -> None:
        fut = pending.get(m.subject)
        if fut is not None:
            fut.set_result(m.data)

    lb_min = _Loopback(reply)
    await lb_min.subscribe("_INBOX.min.*", cb=on_reply)

    async def call_minimal() -> None:
        seq[0] += 1
        inbox = f"_INBOX.min.{seq[0]}"
        inv = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                         id=f"{_PREFIX}{seq[0]:020x}", deadline_ms=int((time.time() + 30) * 1000))
        fut = pending[inbox] = loop.create_future()
        try:
            await lb_min.publish("trellis.bench.rpc.adder", inv.encode(), reply=inbox)
            data = await fut
        finally:
            del pending[inbox]
        Reply.decode(data)

    inv = Invocation.decode(frame)

    async def codec_client() -> None:
        inv.encode()
        Reply.decode(reply)

    pairs = [
        ("worker", "RpcServer._serve, one call: decode, admission, keepalive, span, handler, encode, publish",
         serve, serve_minimal, "decode + handler + encode + publish"),
        ("client", "RpcClient.call, one call: id, span, encode, publish, wait, decode", call, call_minimal,
         "encode + future + publish + decode"),
        ("client", "Invocation.encode + Reply.decode", codec_client, None, ""),
    ]
    rows = []
    for side, what, now, lean, how in pairs:
        rows.append(await _measure("code", side, what, now, lean, how, n))
    await client.close()
    await lb_min.unsubscribe()
    return rows


async def _nats_rows(url: str, n: int) -> list[dict[str, Any]]:
    """Client and server of this checkout through a real nats-server, both in this process, 20 calls
    at a time: CPU per call of the whole process (RPC layer + nats-py on both sides), next to raw
    nats-py ``request`` and a responder that decodes the same Invocation and answers with a Reply."""
    import nats

    from trellis.interfaces import subjects

    nc_client, nc_server = await nats.connect(url), await nats.connect(url)
    lattice = "piece" + uuid.uuid4().hex[:8]

    async def add(inv: Invocation) -> Any:
        return inv.args[0] + inv.args[1]

    server = RpcServer(nc_server, lattice, "adder", add, served_by="host/0", max_concurrent=20)
    await server.start()

    async def raw_responder(msg: Msg) -> None:
        inv = Invocation.decode(msg.data)
        await nc_server.publish(msg.reply, Reply(id=inv.id, ok=True, result=await add(inv)).encode())

    raw_sub = await nc_server.subscribe(subjects.rpc(lattice, "raw"), queue="rpc-raw", cb=raw_responder)
    await nc_server.flush()
    client = RpcClient(nc_client, lattice, source="client")
    raw_subject = subjects.rpc(lattice, "raw")

    async def raw_call() -> None:
        frame = Invocation(target="raw", interface="", function="add", args=[1, 2], source="client",
                           id=uuid.uuid4().hex, deadline_ms=int((time.time() + 10) * 1000)).encode()
        Reply.decode((await nc_client.request(raw_subject, frame, timeout=10)).data)

    async def rpc_call() -> None:
        await client.call("adder", "add", [1, 2], timeout_s=10)

    async def batch(call: Callable[[], Awaitable[Any]], k: int) -> None:
        left = [k]

        async def caller() -> None:
            while left[0] > 0:
                left[0] -= 1
                await call()
        await asyncio.gather(*(caller() for _ in range(20)))

    rows = []
    try:
        k = max(n // 2, 1000)
        results: dict[str, list[tuple[float, float]]] = {"rpc": [], "raw": []}
        for f in (rpc_call, raw_call):
            await batch(f, 200)  # warm up
        for _ in range(5):  # alternate, so drifting background load falls on both
            for name, f in (("rpc", rpc_call), ("raw", raw_call)):
                t, c = time.perf_counter(), time.process_time()
                await batch(f, k)
                results[name].append(((time.perf_counter() - t) / k * 1e6, (time.process_time() - c) / k * 1e6))
        best = {name: (round(min(w for w, _ in v), 2), round(min(c for _, c in v), 2)) for name, v in results.items()}
        rows.append({"kind": "code", "side": "both", "unit": "CPU µs/call",
                     "step": "RpcClient.call -> nats-server -> RpcServer, 20 at a time, one process "
                             "(CPU of both sides)",
                     "now_us": best["rpc"][1], "lean_us": best["raw"][1],
                     "lean_is": "raw nats-py request + a responder decoding the Invocation, encoding a Reply",
                     "now_cpu_us": best["rpc"][1], "lean_cpu_us": best["raw"][1],
                     "now_wall_us": best["rpc"][0], "lean_wall_us": best["raw"][0],
                     "saves_us": round(best["rpc"][1] - best["raw"][1], 2)})
    finally:
        await server.stop()
        await raw_sub.unsubscribe()
        await client.close()
        await nc_client.close()
        await nc_server.close()
    return rows


async def _measure(kind: str, side: str, what: str, now: Callable[[], Awaitable[Any]],
                   lean: Callable[[], Awaitable[Any]] | None, how: str, n: int) -> dict[str, Any]:
    t_now, c_now = await _time_async(now, n)
    t_lean, c_lean = await _time_async(lean, n) if lean is not None else (None, None)
    return {"kind": kind, "side": side, "step": what, "now_us": t_now, "lean_us": t_lean, "lean_is": how,
            "now_cpu_us": c_now, "lean_cpu_us": c_lean,
            "saves_us": round(t_now - t_lean, 2) if t_lean is not None else None}


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
        ctx = propagate.extract(inv.trace or {})
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

    live: dict[int, tuple[str, str, float]] = {}

    async def keepalive_timer_only() -> None:
        loop.call_later(0.25, lambda: None).cancel()

    async def keepalive_entry_only() -> None:  # RpcServer now: one timer per server, a dict entry per call
        live[0] = ("_INBOX.x.1", inv.id, loop.time())
        live.pop(0, None)

    async def span_none() -> None:  # RpcServer/RpcClient now, with tracing off
        if _tracing_enabled():  # pragma: no cover - not configured in the bench
            raise RuntimeError("tracing is configured: this row measures it off")

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

    async def inject_eager() -> None:  # what Worker._invoke calls (cheap since tracing.inject checks first)
        tracing.inject()

    async def nothing() -> None:
        pass

    async def client_envelope() -> None:  # as RpcClient.call did it before
        i = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                       deadline_ms=int((time.time() + 30) * 1000), id=uuid.uuid4().hex)
        with tracing.tracer().start_as_current_span("call adder add", attributes={"trellis.invocation_id": i.id}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            i.trace = carrier
            i.encode()

    seq = [0]

    async def client_envelope_lean() -> None:
        seq[0] += 1
        i = Invocation(target="adder", interface="", function="add", args=[1, 2], source="client",
                       deadline_ms=int((time.time() + 30) * 1000), id=f"{_PREFIX}{seq[0]:020x}")
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
        ("worker", "server span: tracing.tracer() per call + propagate.extract({})", span_now, span_lean,
         "module-level tracer, skip extract when trace is empty"),
        ("worker", "progress keepalive: a task per call, cancelled", keepalive_task, keepalive_timer,
         "loop.call_later timer, re-armed only if the call runs 250 ms"),
        ("worker", "progress keepalive, bookkeeping only: call_later + cancel", keepalive_timer_only,
         keepalive_entry_only, "dict entry with the arrival time + pop"),
        ("worker", "server span, tracing off: a no-op span from a cached tracer", span_lean, span_none,
         "no span: tracing.enabled() (a cached flag, re-checked at most every second)"),
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
    rows = await _code_rows(n)
    for side, what, now, lean, how in pairs:
        rows.append(await _measure("design", side, what, now, lean, how, n))
    executor.shutdown()
    return rows


_PREFIX = uuid.uuid4().hex[:12]


def run(ctx: Context) -> None:
    import uvloop

    from ._procs import Processes

    n = ctx.pick(2000, 10000)
    rows = uvloop.run(_pieces(n))
    procs = Processes(ctx.workdir)
    try:
        nats_server = procs.nats()
        rows[2:2] = uvloop.run(_nats_rows(nats_server.url, n))
    finally:
        procs.close()
    ctx.details["pieces"] = rows
    for r in rows:
        ctx.row(f"{r['kind']}, {r['side']}: {r['step']}", r.get("unit", "µs/call"), r["now_us"], r["lean_us"],
                r["lean_is"] or "-",
                cpu_us=r["now_cpu_us"], baseline_cpu_us=r["lean_cpu_us"])
    for side in ("worker", "client"):
        saved = sum(r["saves_us"] or 0 for r in rows
                    if r["kind"] == "design" and r["side"] == side and not r["lean_is"].startswith("(kept"))
        ctx.details[f"{side}_design_saving_us_per_call"] = round(saved, 1)
