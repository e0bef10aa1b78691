"""What a host's workloads used since it started: the ``usage`` control operation.

Components: their workers' invocation tallies added up (``host/workers/tally.py``:
invocations, errors, cold starts, Wasm CPU, wall time, memory-seconds, fuel) and the
instances that exist now. Providers: their process's CPU time (``psutil``), resident
memory times uptime as memory-seconds, and the calls they answered by caller (from the
provider's own metrics), so ``trellis app usage`` can split a provider's CPU across the
links that used it. Each entry carries its app (the ``trellis.app`` annotation).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import psutil

from trellis.interfaces import subjects
from trellis.interfaces.annotations import APP_ANNOTATION

if TYPE_CHECKING:
    from .host import Host

_SUMMED = ("invocations", "errors", "cold_starts", "cpu_s", "wall_s", "memory_byte_s", "fuel")


async def host_usage(host: Host) -> dict[str, Any]:
    components, providers = await asyncio.gather(_components(host), _providers(host))
    return {"host_id": host.id, "host_name": host.friendly_name, "at": time.time(),
            "components": components, "providers": providers}


async def _components(host: Host) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for desc in host.components.describe():  # running here, called or not
        out[desc.id] = {"app": desc.annotations.get(APP_ANNOTATION, ""), **{k: 0 for k in _SUMMED},
                        "peak_memory_bytes": 0, "instances": 0}
    pool = host.components.pool
    if pool is None:
        return out
    for per_worker in await pool.usage():
        for cid, u in per_worker.items():
            into = out.setdefault(cid, {"app": u.get("app", ""), **{k: 0 for k in _SUMMED},
                                        "peak_memory_bytes": 0, "instances": 0})
            if u.get("app"):
                into["app"] = u["app"]
            for key in _SUMMED:
                into[key] += u.get(key, 0)
            into["instances"] += u.get("instances", 0)
            into["peak_memory_bytes"] = max(into["peak_memory_bytes"], u.get("peak_memory_bytes", 0))
    return out


async def _providers(host: Host) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    now = time.time()
    for pid, sup in list(host.providers.running.items()):
        entry: dict[str, Any] = {"app": sup.spec.annotations.get(APP_ANNOTATION, ""), "cpu_s": 0.0,
                                 "memory_bytes": 0, "memory_byte_s": 0.0, "calls": 0, "callers": {}}
        proc = sup.proc
        # in the host's own process (sharing 0): its CPU and memory are counted with the host's
        if proc is not None and proc.returncode is None and host.providers.sharing(proc.pid):
            try:
                p = psutil.Process(proc.pid)
                with p.oneshot():
                    t = p.cpu_times()
                    rss = p.memory_info().rss
                    uptime = max(0.0, now - p.create_time())
                share = host.providers.sharing(proc.pid)  # built-in providers share one process: split evenly
                entry.update(cpu_s=(t.user + t.system) / share, memory_bytes=rss // share,
                             memory_byte_s=rss * uptime / share)
            except psutil.Error:
                pass
        out[pid] = entry
    if host.nc is None or not out:
        return out

    async def calls(pid: str) -> None:
        try:
            msg = await host.nc.request(subjects.provider_metrics(host.lattice, pid, host.id), b"", timeout=2.0)  # type: ignore[union-attr]  # nc is set once the host has started
            series = json.loads(msg.data)
        except Exception:
            return
        callers: dict[str, dict[str, float]] = out[pid]["callers"]
        for s in series:
            if s["name"] == "trellis.provider.caller.calls":
                for attrs, v in s["points"]:
                    callers.setdefault(attrs.get("caller", ""), {"calls": 0, "busy_s": 0.0})["calls"] += v
                    out[pid]["calls"] += v
            elif s["name"] == "trellis.provider.caller.busy":
                for attrs, v in s["points"]:
                    callers.setdefault(attrs.get("caller", ""), {"calls": 0, "busy_s": 0.0})["busy_s"] += v

    await asyncio.gather(*(calls(pid) for pid in out))
    return out
