"""Per-app usage (`trellis app usage`): each invocation's Wasm CPU is attributed to its app and
component, and adds up to what the worker processes measurably spent; an idle app shows no
instances and no CPU; energy and carbon follow the documented model."""

from __future__ import annotations

import asyncio
import json

import psutil
import pytest

from tests.components.build import build_wat
from trellis.interfaces.carbon import CarbonModel
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError
from trellis.views.usage import app_usage

SPINS = 3
FUEL = 400_000_000


def _workers_cpu(host) -> float:
    total = 0.0
    for pid in host.components.pool.pids():
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def _cpu_of(report: dict, component: str) -> float:
    return next(c["cpu_seconds"] for c in report["components"] if c["id"] == component)


@pytest.mark.slow
async def test_usage_adds_up_to_the_workers_cpu_and_idle_apps_cost_nothing(nats_server, lattice, hosts, cli):
    h = await hosts.start(workers=1)
    hostile, adder = build_wat("hostile"), build_wat("adder")
    model = CarbonModel()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(hostile), "spinner", host_id=h.id, max_instances=2,
                                limits={"timeout_s": 60, "fuel": FUEL}, annotations={"trellis.app": "busy"})
        await c.start_component(str(adder), "sleeper", host_id=h.id, annotations={"trellis.app": "idle"})
        assert await c.call("spinner", "ok") == 42  # warm the worker's code paths, the failing ones too
        with pytest.raises(RpcError):
            await c.call("spinner", "spin", timeout_s=60)
        before_usage = app_usage(await c.get_usage(), "busy", model)
        before_cpu = _workers_cpu(h)
        for _ in range(SPINS):  # each call spins until its fuel runs out: the same CPU-bound work however busy
            with pytest.raises(RpcError) as e:     # the machine is
                await c.call("spinner", "spin", timeout_s=60)
            assert e.value.kind == "out_of_fuel"
        spent = _workers_cpu(h) - before_cpu
        after = app_usage(await c.get_usage(), "busy", model)
    attributed = _cpu_of(after, "spinner") - _cpu_of(before_usage, "spinner")
    print(f"worker processes spent {spent:.3f} CPU-s; attributed to the component {attributed:.3f}")
    assert spent > 0.2
    assert abs(attributed - spent) <= 0.10 * spent, (attributed, spent)

    # the same figures through the command line, as JSON
    r = await asyncio.to_thread(cli, "app", "usage", "busy", "-o", "json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    (spinner,) = report["components"]
    assert spinner["id"] == "spinner" and spinner["invocations"] == SPINS + 2 and spinner["errors"] == SPINS + 1
    assert spinner["fuel"] >= (SPINS + 1) * FUEL
    assert spinner["instances"] == 0 and spinner["cpu_seconds"] >= attributed
    assert spinner["memory_gib_seconds"] > 0
    assert spinner["energy_wh"] == pytest.approx(model.energy_wh(spinner["cpu_seconds"],
                                                                 spinner["memory_gib_seconds"] * 1024**3))
    assert spinner["carbon_g"] == pytest.approx(spinner["energy_wh"] / 1000 * model.grid_gco2_per_kwh)
    assert spinner["sci_g_per_1000_requests"] == pytest.approx(spinner["carbon_g"] / (SPINS + 2) * 1000)
    assert report["total"]["carbon_g"] == pytest.approx(spinner["carbon_g"])

    idle = json.loads((await asyncio.to_thread(cli, "app", "usage", "idle", "-o", "json")).stdout)
    (sleeper,) = idle["components"]
    assert sleeper["instances"] == 0 and sleeper["invocations"] == 0 and sleeper["cpu_seconds"] == 0
    assert idle["total"]["sci_g_per_1000_requests"] is None

    table = await asyncio.to_thread(cli, "app", "usage", "busy", "--grid-intensity", "100")
    assert table.returncode == 0 and "spinner" in table.stdout and "100.0 gCO2e/kWh" in table.stdout
    missing = await asyncio.to_thread(cli, "app", "usage", "nosuchapp")
    assert missing.returncode == 1 and "no component or provider of app 'nosuchapp'" in missing.stderr
