"""2. One cross-host call: ``LatticeClient.call`` against a raw nats-py echo.

One nats-server and, each in its own process:

* a `trellis host --workers 1` serving the adder and the greeter
  (``max_instances=20``, a fresh instance per call);
* the **echo** baseline (bench/_responder.py): nats-py answering each request
  with its own payload; the client sends it the bytes of a real Trellis
  invocation with ``nc.request``, so both carry the same payload;
* the **minimal worker** baseline: nats-py decoding the invocation and running
  ``Invoker.invoke`` inline, for the same components (ids ``adder-min``,
  ``greeter-min``). The client calls it with the same ``LatticeClient.call``,
  so Trellis/minimal is what the worker's RPC layer adds on the serving side.

Measured: sequential latency (p50, p99) and throughput of 20 callers in a
closed loop; CPU per call of every process (psutil), to show where it goes.
"""

from __future__ import annotations

import os
from typing import Any

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.envelope import Invocation

from ._context import BENCH_CACHE, CALLS, Context, component_path
from ._load import alternate, alternate_sequential, sequential
from ._procs import Processes, new_lattice

ECHO_SUBJECT = "bench.echo"
CONCURRENCY = 20


async def start_components(c: LatticeClient, host_id: str, names: dict[str, str], max_instances: int,
                           reuse: int | None = None) -> None:
    """Start ``{component_id: test component name}`` on a host and wait until each answers."""
    for cid, comp in names.items():
        spec: dict[str, Any] = {}
        if reuse:
            spec["reuse"] = {"max_invocations": reuse}
        await c.start_component(str(component_path(comp)), cid, max_instances=max_instances, host_id=host_id,
                                timeout_s=180, **spec)
        fn, args = CALLS[comp]
        await c.call(cid, fn, *args, timeout_s=30)


async def run(ctx: Context) -> None:
    procs = Processes(ctx.workdir)
    try:
        nats = procs.nats()
        assert nats.proc is not None
        lattice = new_lattice()
        comps = list(CALLS)
        echo, *mins = procs.responders(["echo", nats.url, ECHO_SUBJECT], *(
            ["invoke", nats.url, lattice, f"{comp}-min", str(component_path(comp)), str(BENCH_CACHE)]
            for comp in comps))
        minimal = dict(zip(comps, mins, strict=True))
        host = procs.host(nats.url, lattice, workers=1)
        [worker] = host.wait_workers()
        async with LatticeClient(nats.url, lattice) as c:
            await start_components(c, host.id, {comp: comp for comp in CALLS}, max_instances=CONCURRENCY)
            assert c.nc is not None
            nc = c.nc
            fn, args = CALLS["adder"]
            payload = Invocation(target="adder", interface="", function=fn, args=args, source="client",
                                 deadline_ms=2**41, trace={}).encode()

            async def echo_call() -> Any:
                return await nc.request(ECHO_SUBJECT, payload, timeout=10)

            def call(cid: str, comp: str) -> Any:
                f, a = CALLS[comp]
                return lambda: c.call(cid, f, *a, timeout_s=10)

            me = os.getpid()
            base_roles = {"client": me, "nats-server": nats.proc.pid}
            targets: dict[str, tuple[Any, dict[str, int]]] = {
                "echo": (echo_call, base_roles | {"echo": echo.pid}),
            }
            for comp in CALLS:
                targets[f"{comp}-min"] = (call(f"{comp}-min", comp), base_roles | {"minimal": minimal[comp].pid})
                targets[comp] = (call(comp, comp), base_roles | {"host": host.proc.pid, "worker": worker})
            for f, _ in targets.values():  # warm up
                await sequential(f, 50, 2.0)
            n = ctx.pick(300, 2000)
            budget = ctx.pick(3.0, 12.0)
            window = ctx.pick(2.0, 6.0)
            lat = await alternate_sequential(targets, n, budget, rounds=ctx.pick(2, 4))
            thr = await alternate({k: targets[k] for k in ("echo", "adder-min", "adder")}, CONCURRENCY, window,
                                  rounds=ctx.pick(2, 3), warmup_s=0.3)
            ctx.details.update(payload_bytes=len(payload), latency=lat, throughput=thr,
                               client_rpc_stats=dict(c.rpc.stats), host_boot_s=round(host.boot_s, 2))
        echo_is = "raw nats-py request → echo responder"
        min_is = "same client → minimal worker (nats-py + inline Invoker)"
        for comp in CALLS:
            t, e, m = lat[comp], lat["echo"], lat[f"{comp}-min"]
            for q in ("p50", "p99"):
                ctx.row(f"cross-host call, {comp} (fresh), sequential {q}", "µs", t[f"{q}_us"], e[f"{q}_us"], echo_is)
            ctx.row(f"cross-host call, {comp} (fresh), sequential p50", "µs", t["p50_us"], m["p50_us"], min_is)
        cpu = {k: v.get("cpu", {}).get("cpu_us_per_call_total") for k, v in thr.items()}
        serving = {k: sum(c for r, c in v.get("cpu", {}).get("cpu_us_per_call", {}).items()
                          if r in ("echo", "minimal", "worker", "host")) for k, v in thr.items()}
        ctx.details["serving_cpu_us_per_call"] = serving
        ctx.row(f"cross-host calls, adder (fresh), concurrency {CONCURRENCY}", "calls/s", thr["adder"]["rps"],
                thr["echo"]["rps"], echo_is, cpu_us_per_call=cpu["adder"], baseline_cpu_us_per_call=cpu["echo"])
        ctx.row(f"cross-host calls, adder (fresh), concurrency {CONCURRENCY}", "calls/s", thr["adder"]["rps"],
                thr["adder-min"]["rps"], min_is, cpu_us_per_call=cpu["adder"],
                baseline_cpu_us_per_call=cpu["adder-min"])
        ctx.row(f"cross-host calls, adder (fresh), concurrency {CONCURRENCY}: serving process CPU per call", "CPU µs",
                round(serving["adder"], 1), round(serving["adder-min"], 1), min_is,
                echo_cpu_us=round(serving["echo"], 1))
    finally:
        procs.close()
