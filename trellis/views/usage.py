"""What an app's components and providers used, and what it cost, from the hosts' usage answers.

Every live host answers with its workloads' usage since it started (``host/usage.py``);
the figures of the app's components are added up over hosts, and each provider's process
CPU is split across the links that called it (by the time it spent answering each). Energy
and carbon follow ``interfaces/carbon.py``. Pure (no I/O): `trellis app usage` prints it and
the dashboard (`trellis ui`) shows its totals.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3


def app_usage(hosts: list[dict[str, Any]], app: str, model: Any) -> dict[str, Any]:
    """The report of ``app`` from the hosts' usage answers (pure: no I/O)."""
    comps: dict[str, dict[str, Any]] = {}
    for h in hosts:
        for cid, u in h.get("components", {}).items():
            if u.get("app") != app:
                continue
            c = comps.setdefault(cid, {"id": cid, "invocations": 0, "errors": 0, "cold_starts": 0, "cpu_seconds": 0.0,
                                       "wall_seconds": 0.0, "memory_byte_seconds": 0.0, "fuel": 0, "instances": 0,
                                       "hosts": 0})
            c["invocations"] += u.get("invocations", 0)
            c["errors"] += u.get("errors", 0)
            c["cold_starts"] += u.get("cold_starts", 0)
            c["cpu_seconds"] += u.get("cpu_s", 0.0)
            c["wall_seconds"] += u.get("wall_s", 0.0)
            c["memory_byte_seconds"] += u.get("memory_byte_s", 0.0)
            c["fuel"] += u.get("fuel", 0)
            c["instances"] += u.get("instances", 0)
            c["hosts"] += 1
    provs: dict[str, dict[str, Any]] = {}
    for h in hosts:
        for pid, p in h.get("providers", {}).items():
            callers = p.get("callers", {})
            busy = sum(c.get("busy_s", 0.0) for c in callers.values())
            ours = p.get("app") == app
            links = {}
            for caller, c in callers.items():
                share = c.get("busy_s", 0.0) / busy if busy > 0 else 0.0
                if ours or caller in comps:
                    links[caller] = {"calls": c.get("calls", 0), "cpu_seconds": p.get("cpu_s", 0.0) * share}
            if not ours and not links:
                continue
            e = provs.setdefault(pid, {"id": pid, "app": p.get("app", ""), "calls": 0, "cpu_seconds": 0.0,
                                       "memory_byte_seconds": 0.0, "links": {}, "hosts": 0})
            e["hosts"] += 1
            if ours:  # the whole process is the app's; a shared one's CPU only through our links
                e["calls"] += p.get("calls", 0)
                e["cpu_seconds"] += p.get("cpu_s", 0.0)
                e["memory_byte_seconds"] += p.get("memory_byte_s", 0.0)
            else:
                e["calls"] += sum(v["calls"] for v in links.values())
                e["cpu_seconds"] += sum(v["cpu_seconds"] for v in links.values())
            for caller, v in links.items():
                into = e["links"].setdefault(caller, {"calls": 0, "cpu_seconds": 0.0})
                into["calls"] += v["calls"]
                into["cpu_seconds"] += v["cpu_seconds"]

    def costed(row: dict[str, Any], requests: int) -> dict[str, Any]:
        mem = row.pop("memory_byte_seconds")
        row["memory_gib_seconds"] = mem / GIB
        row["energy_wh"] = model.energy_wh(row["cpu_seconds"], mem)
        row["carbon_g"] = model.carbon_g(row["cpu_seconds"], mem)
        row["sci_g_per_1000_requests"] = row["carbon_g"] / requests * 1000 if requests else None
        return row

    components = [costed(c, c["invocations"]) for c in sorted(comps.values(), key=lambda c: c["id"])]
    providers = [costed(p, p["calls"]) for p in sorted(provs.values(), key=lambda p: p["id"])]
    for p in providers:
        p["links"] = [{"caller": k, **v} for k, v in sorted(p["links"].items())]
    rows = components + providers
    # requests: calls into the app from outside it; with no entry point known, its components' invocations
    requests = sum(c["invocations"] for c in components)
    total = {"invocations": requests, "cpu_seconds": sum(r["cpu_seconds"] for r in rows),
             "memory_gib_seconds": sum(r["memory_gib_seconds"] for r in rows),
             "instances": sum(c["instances"] for c in components),
             "energy_wh": sum(r["energy_wh"] for r in rows), "carbon_g": sum(r["carbon_g"] for r in rows)}
    total["sci_g_per_1000_requests"] = total["carbon_g"] / requests * 1000 if requests else None
    return {"app": app, "hosts": len(hosts), "model": model.describe(), "components": components,
            "providers": providers, "total": total}
