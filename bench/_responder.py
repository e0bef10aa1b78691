"""Baseline responders, one nats-py (uvloop) process each, no Trellis RPC layer.

``python -m bench._responder echo NATS_URL SUBJECT``
    answers each request with its own payload: the bare NATS round trip.

``python -m bench._responder invoke NATS_URL LATTICE TARGET WASM CACHE_DIR [REUSE]``
    the least a Python worker can do to serve a component: subscribe to the
    target's Trellis RPC subject, decode the ``Invocation``, run it inline with
    ``Invoker.invoke`` (a fresh instance per call, or one instance reused for
    up to REUSE calls), publish the ``Reply``. No tasks, no
    thread pool, no admission, no progress frames, no spans. A Trellis client
    calls it exactly as it calls a component on a host.

Prints ``ready`` once subscribed; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import nats


async def serve(url: str, subject: str, queue: str, on_data: Any) -> None:
    nc = await nats.connect(url, name="bench-responder")

    async def on_msg(msg: Any) -> None:
        await nc.publish(msg.reply, on_data(msg.data))

    await nc.subscribe(subject, queue=queue, cb=on_msg, pending_msgs_limit=65536)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await nc.drain()


def invoke_handler(wasm: str, cache_dir: str, reuse: int) -> Any:
    from trellis.host.runtime import (
        CompileCache,
        InvocationError,
        Invoker,
        ReusePolicy,
        load_component,
        make_engine,
        wasmtime_patches,
    )
    from trellis.host.runtime.engine import EngineSettings
    from trellis.interfaces.envelope import Invocation, Reply

    # the engine a worker runs a component without a fuel budget on (unmetered where supported)
    unmetered = "consume_fuel" in EngineSettings.__dataclass_fields__
    wasmtime_patches.apply()  # this process runs Wasm as a worker does
    engine = make_engine(EngineSettings(consume_fuel=False) if unmetered else None)
    invoker = Invoker(load_component(engine, Path(wasm).read_bytes(), CompileCache(cache_dir)),
                      reuse=ReusePolicy(max_invocations=reuse))

    def on_data(data: bytes) -> bytes:
        inv = Invocation.decode(data)
        try:
            reply = Reply(id=inv.id, ok=True, result=invoker.invoke(inv.operation, inv.args))
        except InvocationError as exc:
            reply = Reply.failure(inv.id, "invocation_failed", exc.message, exc.kind.value)
        return reply.encode()

    return on_data


def main(argv: list[str]) -> None:
    import uvloop

    mode = argv[0]
    if mode == "echo":
        url, subject = argv[1:3]
        uvloop.run(serve(url, subject, "bench-echo", lambda data: data))
    elif mode == "invoke":
        from trellis.interfaces import subjects

        url, lattice, target, wasm, cache_dir = argv[1:6]
        reuse = int(argv[6]) if len(argv) > 6 else 1
        uvloop.run(serve(url, subjects.rpc(lattice, target), subjects.rpc_queue_group(target),
                         invoke_handler(wasm, cache_dir, reuse)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
