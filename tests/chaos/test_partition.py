"""Scenario 2: one machine's cable is pulled under load, then plugged back in.

The app runs 6 instances on two of the three machines. The cut machine loses its
host, its NATS node and whatever controller it runs from the rest of the lattice:
calls fail over, the controller re-places the cut host's share on the spare
machine, and once the cable is back the lattice again holds exactly the 6
instances the manifest asks for (the extra placement is stopped, not kept).
"""

from __future__ import annotations

import time

import pytest

from tests.cluster import Cluster
from trellis.interfaces.wadm_client import WadmClient

from .apps import placements, spread_app, until
from .figures import record
from .load import Load

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]


def test_machine_cut_off_and_healed_under_load(cluster: Cluster, wasm):
    cluster.start_hosts()
    cluster.start_controllers(2)
    ids = cluster.host_ids()
    by_id = {i: m for m, i in ids.items()}

    async def deploy() -> tuple[dict[str, int], str]:
        async with cluster.client() as c:
            w = WadmClient(c)
            await w.put(spread_app("spread", wasm["hostile"], 6))
            await w.deploy("spread")
            placed, _ = await until(lambda: _placed(c, lambda p: sorted(p.values()) == [3, 3]), 60, "3+3 placed")
            leader = next(i.id for i in await w.controllers() if i.role == "leader")
            return placed, leader

    placed, leader = cluster.run(deploy())
    leader_machine = next(p.machine.name for p in cluster.controllers if p.id == leader)
    spare = cluster.machine(by_id[next(i for i in ids.values() if i not in placed)])
    victim = cluster.machine(by_id[sorted(placed)[0]])
    kept = next(i for i in placed if i != ids[victim.name])

    async def scenario() -> dict:
        # through the spare machine's node, so that the cut does not cut off the test's own client
        # and a second client attached to the node on the machine about to be cut off: its
        # calls fail over once it notices (pings) and reconnects to another node
        async with cluster.client(via=spare) as c, cluster.client(via=victim) as stranded, \
                Load(stranded, "spread-svc", "ok", expect=42, concurrency=5, max_s=150) as load_b:
            w = WadmClient(c, wait_leader_s=20)
            async with Load(c, "spread-svc", "ok", expect=42, concurrency=20, max_s=150) as load:
                await load.wait_ok(300)
                await load_b.wait_ok(50)
                cut_at = time.monotonic()
                cluster.cut(victim)
                moved = {kept: 3, ids[spare.name]: 3}
                _, replaced_s = await until(lambda: _placed(c, lambda p: p == moved), 40,
                                            "the cut host's share on the spare machine", interval=0.1)
                await load.wait_ok(300)
                await load_b.wait_ok(50, timeout=60)
                during = load.summary(since=cut_at)
                healed_at = time.monotonic()
                cluster.heal(victim)

                back_with: dict[str, int] = {}

                peak = 0

                async def victim_back() -> bool:
                    nonlocal peak
                    hosts = await c.get_hosts(timeout_s=0.5)
                    for h in hosts:
                        if h.id == ids[victim.name]:
                            back_with.update({x.id: x.max_instances for x in h.components})
                            peak = sum(x.max_instances for g in hosts for x in g.components if x.id == "spread-svc")
                            return True
                    return False

                _, rejoined_s = await until(victim_back, 60, "the healed host answering again")

                async def settled() -> dict[str, int] | None:
                    nonlocal peak
                    found = await placements(c, "spread-svc")
                    peak = max(peak, sum(found.values()))
                    return found if sum(found.values()) == 6 and len(found) == 2 else None

                # the healed host may still run its old share: wait until only 6 are left
                _, settled_s = await until(settled, 60, "exactly 6 instances after healing")
                settled_s += rejoined_s
                await load.wait_ok(300)
            window = []
            end = time.monotonic() + 3.0  # measured over a window: the count must hold, not flap
            while time.monotonic() < end:
                window.append(sum((await placements(c, "spread-svc", timeout_s=0.3)).values()))
            # the app's status through the API; right after a heal JetStream may answer 503 for
            # a moment (meta leader re-elected), which the controller passes on: counted, not hidden
            api_errors: list[str] = []

            async def deployed() -> bool:
                try:
                    return (await w.status("spread")).status == "deployed"
                except Exception as exc:
                    api_errors.append(str(exc)[:160])
                    return False

            await until(deployed, 30, "status deployed", interval=0.2)
            await load_b.stop()
            return {"load": load.summary(), "stranded": load_b.summary(), "during_cut": during,
                    "after_heal": load.summary(since=healed_at),
                    "replaced_s": replaced_s, "rejoined_s": rejoined_s, "settled_s": settled_s, "peak": peak,
                    "window": window, "api_errors": api_errors, "rpc": dict(c.rpc.stats), "back_with": back_with}

    result = cluster.run(scenario(), timeout=220)
    record("machine-cut-heal", failed_calls=result["load"]["failed"], calls=result["load"]["calls"],
           acting_controller_on_cut_machine=leader_machine == victim.name,
           failed_during_cut=result["during_cut"]["failed"], worst_latency_ms_during_cut=result["during_cut"]["max_ms"],
           stranded_client={k: result["stranded"][k] for k in ("calls", "failed", "max_ms")},
           replaced_after_s=round(result["replaced_s"], 2), healed_host_back_after_s=round(result["rejoined_s"], 2),
           exactly_6_after_heal_s=round(result["settled_s"], 2), most_instances_seen_after_heal=result["peak"],
           instances_in_window=sorted(set(result["window"])), retries=result["rpc"]["retries"],
           healed_host_came_back_running=result["back_with"], wadm_api_errors_after_heal={
               "count": len(result["api_errors"]), "first": result["api_errors"][0] if result["api_errors"] else None},
           errors=result["load"]["errors"])
    assert set(result["window"]) == {6}, result
    # Scenario 1's goal (5 s) holds when the cut machine held neither the acting controller nor the
    # JetStream leader of a bucket the controller reads; otherwise takeover and stream elections add
    # up to ~10 s (docs/reliability.md). The bound here catches anything worse.
    assert result["replaced_s"] <= 15.0, f"re-placement took {result['replaced_s']:.2f}s"
    assert result["load"]["failed"] == 0 and result["stranded"]["failed"] == 0, result


async def _placed(c, ok) -> dict[str, int] | None:
    found = await placements(c, "spread-svc")
    return found if ok(found) else None


def test_connection_to_a_cut_off_node_moves_to_another(cluster: Cluster):
    """A Trellis process whose NATS node is cut off (no reset, just silence) reconnects elsewhere.

    Only pings can tell a silent TCP connection from a quiet one; the interval bounds how
    long a host or client stays attached to a node nobody else can reach.
    """
    from trellis.interfaces.connection import NatsSettings, connect

    node = cluster.nats[0]

    async def scenario() -> float:
        nc = await connect(NatsSettings(url=node.url), name="cut-probe")
        try:
            assert nc.connected_url is not None and nc.connected_url.netloc == node.url.removeprefix("nats://")
            cluster.cut(node.machine)

            def moved() -> bool:
                url = nc.connected_url
                return nc.is_connected and url is not None and url.netloc != node.url.removeprefix("nats://")

            _, took = await until(moved, 60, "a connection to another node")
            return took
        finally:
            await nc.close()

    took = cluster.run(scenario())
    record("connection-moves-off-cut-node", reconnected_elsewhere_after_s=round(took, 2))
    # 2 s pings, stale after 2 unanswered (≈ 6 s), then a connect attempt that may try the
    # silent node first (2 s connect timeout)
    assert took <= 12.0, f"stayed on the cut-off node for {took:.1f}s"
