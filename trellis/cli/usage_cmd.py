"""`trellis app usage APP [-o json]`: what an app's components and providers used, and what it cost.

The report is computed by ``trellis/views/usage.py`` (shared with the dashboard): the app's
components added up over hosts, each provider's process CPU split across the links that called
it, energy and carbon as ``interfaces/carbon.py`` models them.
"""

from __future__ import annotations

import typer

from trellis.views.usage import app_usage

from .options import Conn, with_conn
from .output import Output, console, fail, print_json, run_on, table


def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) < 10 ** -digits:
        return f"{v:.{digits}e}"
    return f"{v:.{digits}f}"


@with_conn
def usage_command(
    name: str = typer.Argument(..., help="application name"),
    output: Output = typer.Option(Output.table, "-o", "--output", help="table for people, json for scripts"),
    cpu_watts: float | None = typer.Option(None, "--cpu-watts-per-core",
                                              help="watts of one busy core [TRELLIS_CPU_WATTS_PER_CORE, 3.5]"),
    memory_watts: float | None = typer.Option(None, "--memory-watts-per-gib",
                                                 help="watts per GiB of memory [TRELLIS_MEMORY_WATTS_PER_GIB, 0.42]"),
    pue: float | None = typer.Option(None, "--pue", help="data-centre PUE [TRELLIS_PUE, 1.2]"),
    grid: float | None = typer.Option(None, "--grid-intensity",
                                         help="grid gCO2e per kWh [TRELLIS_GRID_GCO2_PER_KWH, 475]"),
    *,
    conn: Conn,
) -> None:
    """What an app's parts used since their hosts started: calls, CPU, memory, energy, carbon.

    Per component and provider: invocations, CPU-seconds, memory-seconds, instances now, and an
    energy and carbon estimate (SCI per 1,000 requests)."""
    from trellis.interfaces.carbon import CarbonModel

    try:
        model = CarbonModel.from_env(cpu_watts_per_core=cpu_watts, memory_watts_per_gib=memory_watts, pue=pue,
                                     grid_gco2_per_kwh=grid)
    except ValueError as exc:
        raise fail(str(exc)) from None
    hosts = run_on(conn, lambda c: c.get_usage())
    report = app_usage(hosts, name, model)
    if not report["components"] and not report["providers"]:
        raise fail(f"no component or provider of app {name!r} runs in lattice {conn.lattice!r} "
                   f"({len(hosts)} host(s) answered); see 'trellis app list'")
    if output is Output.json:
        print_json(report)
        return
    rows = [(c["id"], "component", c["invocations"], _num(c["cpu_seconds"]), _num(c["memory_gib_seconds"]),
             c["instances"], _num(c["energy_wh"] * 1000, 2), _num(c["carbon_g"] * 1000, 2),
             _num(c["sci_g_per_1000_requests"])) for c in report["components"]]
    rows += [(p["id"], "provider", p["calls"], _num(p["cpu_seconds"]), _num(p["memory_gib_seconds"]), "-",
              _num(p["energy_wh"] * 1000, 2), _num(p["carbon_g"] * 1000, 2), _num(p["sci_g_per_1000_requests"]))
             for p in report["providers"]]
    t = report["total"]
    rows.append(("total", "", t["invocations"], _num(t["cpu_seconds"]), _num(t["memory_gib_seconds"]),
                 t["instances"], _num(t["energy_wh"] * 1000, 2), _num(t["carbon_g"] * 1000, 2),
                 _num(t["sci_g_per_1000_requests"])))
    table(f"usage of app {name!r} since its hosts started ({report['hosts']} host(s))",
          ["NAME", "KIND", "CALLS", "CPU-S", "MEM GiB-S", "INSTANCES", "ENERGY mWh", "CARBON mg", "SCI g/1k REQ"],
          rows)
    for p in report["providers"]:
        if p["links"]:
            parts = ", ".join(f"{lk['caller']} {_num(lk['cpu_seconds'])} CPU-s ({lk['calls']} calls)"
                              for lk in p["links"])
            console.print(f"  {p['id']} by link: {parts}", highlight=False)
    m = report["model"]
    console.print(f"model: {m['cpu_watts_per_core']} W/core, {m['memory_watts_per_gib']} W/GiB, PUE {m['pue']}, "
                  f"{m['grid_gco2_per_kwh']} gCO2e/kWh (docs/observability.md)", highlight=False)
