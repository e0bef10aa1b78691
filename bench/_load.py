"""Load generators: sequential latency and closed-loop throughput, bounded in count and time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._machine import CpuMeter, cpu_report
from ._stats import latency_summary_us

Call = Callable[[], Awaitable[Any]]


async def sequential(call: Call, n: int, budget_s: float, roles: dict[str, int] | None = None,
                     keep_raw: bool = False) -> dict[str, Any]:
    """``n`` calls one after another (fewer if ``budget_s`` runs out): latency percentiles."""
    lat: list[float] = []
    errors = 0
    first_error = ""
    deadline = time.perf_counter() + budget_s
    with CpuMeter(roles or {}) as meter:
        for _ in range(n):
            t = time.perf_counter()
            try:
                await call()
            except Exception as exc:
                errors += 1
                first_error = first_error or repr(exc)
                continue
            lat.append(time.perf_counter() - t)
            if t > deadline:
                break
    out: dict[str, Any] = {**latency_summary_us(lat), "errors": errors}
    if first_error:
        out["first_error"] = first_error[:300]
    if roles:
        out["cpu"] = meter.report(len(lat))
    if keep_raw:
        out["_lat"] = lat
    return out


async def closed_loop(call: Call, concurrency: int, duration_s: float, *, warmup_s: float = 0.5,
                      max_calls: int = 500_000, roles: dict[str, int] | None = None,
                      keep_raw: bool = False) -> dict[str, Any]:
    """``concurrency`` callers, each issuing its next call when the last returns.

    A warm-up phase (discarded) precedes a ``duration_s`` measurement window.
    Throughput counts calls completed in the window; the window ends when the
    callers stop issuing and their last calls return.
    """
    lat: list[float] = []
    errors = [0]
    first_error: list[str] = []
    issued = [0]

    async def caller(stop_at: float, record: bool) -> None:
        while time.perf_counter() < stop_at and issued[0] < max_calls:
            issued[0] += 1
            t = time.perf_counter()
            try:
                await call()
            except Exception as exc:
                errors[0] += 1
                if not first_error:
                    first_error.append(repr(exc))
                continue
            if record:
                lat.append(time.perf_counter() - t)

    if warmup_s > 0:
        stop_at = time.perf_counter() + warmup_s
        await asyncio.gather(*(caller(stop_at, False) for _ in range(concurrency)))
    errors[0] = 0
    issued[0] = 0
    with CpuMeter(roles or {}) as meter:
        t0 = time.perf_counter()
        stop_at = t0 + duration_s
        await asyncio.gather(*(caller(stop_at, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "calls": len(lat),
        "elapsed_s": round(elapsed, 3),
        "rps": round(len(lat) / elapsed, 1),
        "latency": latency_summary_us(lat),
        "errors": errors[0],
    }
    if first_error:
        out["first_error"] = first_error[0][:300]
    if roles:
        out["cpu"] = meter.report(len(lat))
    if keep_raw:  # for merge()
        out["_lat"] = lat
        if roles:
            out["_cpu_raw"] = (meter.used_s, meter.other_s)
    return out


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine closed-loop windows of one target.

    ``rps`` is the best window (the one least disturbed by other work on the
    machine), ``rps_mean`` all calls over all windows; CPU is summed.
    """
    calls = sum(r["calls"] for r in runs)
    elapsed = sum(r["elapsed_s"] for r in runs)
    out: dict[str, Any] = {"concurrency": runs[0]["concurrency"], "calls": calls, "elapsed_s": round(elapsed, 3),
                           "rps": max(r["rps"] for r in runs),
                           "rps_mean": round(calls / elapsed, 1) if elapsed else 0.0,
                           "windows": [r["rps"] for r in runs], "errors": sum(r["errors"] for r in runs)}
    lats = [x for r in runs for x in r.pop("_lat", [])]
    out["latency"] = latency_summary_us(lats)
    cpus = [r["_cpu_raw"] for r in runs if "_cpu_raw" in r]
    if cpus:
        used: dict[str, float] = {}
        other = 0.0
        for u, o in cpus:
            other += o
            for k, v in u.items():
                used[k] = used.get(k, 0.0) + v
        out["cpu"] = cpu_report(used, other, elapsed, calls)
    for r in runs:
        r.pop("_cpu_raw", None)
        if "first_error" in r:
            out.setdefault("first_error", r["first_error"])
    return out


async def alternate(targets: dict[str, tuple[Call, dict[str, int]]], concurrency: int, window_s: float,
                    rounds: int, warmup_s: float) -> dict[str, dict[str, Any]]:
    """Closed-loop windows of each target in turn, ``rounds`` times, merged per target.

    Alternating A/B/A/B spreads drifting background load over every target
    alike, which matters on a shared machine.
    """
    per: dict[str, list[dict[str, Any]]] = {k: [] for k in targets}
    for i in range(rounds):
        for name, (call, roles) in targets.items():
            r = await closed_loop(call, concurrency, window_s / rounds, warmup_s=warmup_s if i == 0 else 0.1,
                                  roles=roles, keep_raw=True)
            per[name].append(r)
    return {k: merge(v) for k, v in per.items()}


async def alternate_sequential(targets: dict[str, tuple[Call, dict[str, int]]], n: int, budget_s: float,
                               rounds: int) -> dict[str, dict[str, Any]]:
    """Sequential latency of each target in turn, ``rounds`` times; percentiles over all calls."""
    lats: dict[str, list[float]] = {k: [] for k in targets}
    errors: dict[str, int] = {k: 0 for k in targets}
    last: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for name, (call, roles) in targets.items():
            r = await sequential(call, n // rounds, budget_s / rounds, roles, keep_raw=True)
            lats[name] += r.pop("_lat")
            errors[name] += r["errors"]
            last[name] = r
    return {k: {**latency_summary_us(lats[k]), "errors": errors[k], "cpu_last_round": last[k].get("cpu")}
            for k in targets}
