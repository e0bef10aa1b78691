"""Hosts die and come back; controllers die: placement recovers within seconds and nothing is duplicated."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from trellis.interfaces.client import LatticeClient
from trellis.kit import procs

from ..harness import HostProcess, eventually
from .helpers import component_app, placements, wait_status

HEARTBEAT = "0.5"


def _host_process(nats_url: str, lattice: str, tmp: Path, name: str, *labels: str) -> HostProcess:
    args = ["--heartbeat-interval", HEARTBEAT, "--workers", "1", "--state-dir", str(tmp / name), "--name", name]
    for label in labels:
        args += ["--label", label]
    return HostProcess(nats_url, lattice, *args, log=tmp / f"{name}.log")


async def test_host_killed_share_replaced_and_no_duplicates_when_it_returns(
        nats_server, lattice, hosts, controllers, wadm_client, wasm, tmp_path, record_property):
    a = await hosts.start(labels={"pool": "p"})
    procs_ = [_host_process(nats_server.url, lattice, tmp_path, n, "pool=p") for n in ("hb", "hc")]
    try:
        b, c_ = [p.wait_started() for p in procs_]
        await controllers.start()
        await wadm_client.put(component_app("ha", wasm["adder"], instances=4, spread="""
            - name: pool
              requirements: {pool: p}
        """))
        await wadm_client.deploy("ha")
        await wait_status(wadm_client, "ha", "deployed")
        async with LatticeClient(nats_server.url, lattice) as c:
            where = await placements(c, "ha-adder")
            assert sum(where.values()) == 4 and len(where) == 2
            victim = next(p for p in (b, c_) if p.id in where)
            survivor = next(p for p in (b, c_) if p is not victim)

            # SIGKILL: no goodbye, the controller notices the missing heartbeats
            t0 = time.monotonic()
            victim.kill()

            async def replaced() -> bool:
                where = await placements(c, "ha-adder")
                return victim.id not in where and sum(where.values()) == 4 and len(where) == 2

            await eventually(replaced, 15, interval=0.05, what="the dead host's share re-placed")
            took = time.monotonic() - t0
            record_property("replace_after_host_death_s", round(took, 2))
            print(f"\nre-placed {took:.2f}s after SIGKILL (heartbeat {HEARTBEAT}s)")
            assert took < 8
            assert await c.call("ha-adder", "add", 1, 1) == 2
            await wait_status(wadm_client, "ha", "deployed")

            # a host that goes silent (SIGSTOP) is replaced too; when it comes back with its
            # placement still running, the extra capacity is scaled away: nothing stays duplicated
            assert set(await placements(c, "ha-adder")) == {a.id, survivor.id}
            os.killpg(survivor.proc.pid, signal.SIGSTOP)
            try:
                async def on_a_alone() -> bool:
                    return await placements(c, "ha-adder") == {a.id: 4}

                await eventually(on_a_alone, 15, interval=0.1, what="the silent host's share re-placed")
            finally:
                os.killpg(survivor.proc.pid, signal.SIGCONT)

            async def back_and_deduplicated() -> bool:
                return await placements(c, "ha-adder") == {a.id: 2, survivor.id: 2}

            await eventually(back_and_deduplicated, 20, interval=0.1, what="no duplicates after the return")
            for _ in range(10):  # and it stays that way
                await asyncio.sleep(0.2)
                assert await placements(c, "ha-adder") == {a.id: 2, survivor.id: 2}
            assert a.id in {h.id for h in await c.get_hosts()}
    finally:
        for p in procs_:
            p.stop(5)


def _wadm_process(nats_url: str, lattice: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    argv = procs.trellis_argv("wadm", "--nats-url", nats_url, "--lattice", lattice, "--lease-ttl", "2",
                              "--tick", "0.5", "--id", "wadm-proc")
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"wadm did not start: {log.read_text()[-2000:]}"
    started = json.loads(line)
    assert started["event"] == "wadm_started"
    return proc, started["id"]


async def test_leader_killed_other_controller_takes_over_without_duplicates(
        nats_server, lattice, hosts, controllers, wadm_client, wasm, tmp_path, record_property):
    for _ in range(3):
        await hosts.start()
    proc, proc_id = _wadm_process(nats_server.url, lattice, tmp_path / "wadm.log")
    try:
        async def leader_is(cid: str) -> bool:
            found = await wadm_client.controllers(timeout_s=0.3)
            return any(c.id == cid and c.role == "leader" for c in found)

        await eventually(lambda: leader_is(proc_id), 15, what="the process to lead")
        follower = await controllers.start()
        found = await wadm_client.controllers()
        assert {(c.id, c.role.value) for c in found} == {(proc_id, "leader"), (follower.id, "follower")}

        await wadm_client.put(component_app("ha", wasm["adder"], instances=4))
        await wadm_client.deploy("ha")
        await wait_status(wadm_client, "ha", "deployed")
        listed = await wadm_client.list()
        assert listed.controller.id == proc_id and listed.controller.role == "leader"

        async with LatticeClient(nats_server.url, lattice) as c:
            before = await placements(c, "ha-adder")
            t0 = time.monotonic()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            await eventually(lambda: leader_is(follower.id), 15, interval=0.05, what="the follower to take over")
            took = time.monotonic() - t0
            record_property("takeover_after_leader_death_s", round(took, 2))
            print(f"\ntakeover {took:.2f}s after SIGKILL of the leader (lease TTL 2s)")
            assert took < 6

            st = await wait_status(wadm_client, "ha", "deployed")
            assert st.status == "deployed"
            for _ in range(10):  # the new leader does not place anything twice
                await asyncio.sleep(0.2)
                assert await placements(c, "ha-adder") == before
            assert (await wadm_client.list()).controller.id == follower.id

            # and it acts: a new version is rolled out by the new leader
            await wadm_client.put(component_app("ha", wasm["adder"], version="v2", instances=6))
            await wadm_client.deploy("ha")
            st = await wait_status(wadm_client, "ha", "deployed")
            assert st.version == "v2" and sum((await placements(c, "ha-adder")).values()) == 6
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


async def test_graceful_handover_is_immediate(nats_server, lattice, hosts, controllers, wadm_client, wasm):
    await hosts.start()
    first = await controllers.start()
    await eventually(lambda: first.role == "leader", 10, what="the first controller to lead")
    second = await controllers.start()
    await wadm_client.put(component_app("hand", wasm["adder"], instances=2))
    await wadm_client.deploy("hand")
    await wait_status(wadm_client, "hand", "deployed")
    t0 = time.monotonic()
    await first.close(reason="test")
    await eventually(lambda: second.role == "leader", 5, interval=0.02, what="the second controller to lead")
    assert time.monotonic() - t0 < 1.5  # the lease was given up, not left to expire
    await wait_status(wadm_client, "hand", "deployed")


async def test_nats_restart_nothing_duplicated_and_the_controller_acts_again(fresh_nats, lattice, wasm, tmp_path):
    from ..harness import HostFactory
    from .conftest import Controllers

    hosts = HostFactory(fresh_nats.url, lattice, tmp_path)
    ctls = Controllers(fresh_nats.url, lattice)
    try:
        h1 = await hosts.start()
        h2 = await hosts.start()
        await ctls.start()
        async with LatticeClient(fresh_nats.url, lattice) as c:
            from trellis.interfaces.wadm_client import WadmClient

            w = WadmClient(c)
            await w.put(component_app("steady", wasm["adder"], instances=4))
            await w.deploy("steady")
            await wait_status(w, "steady", "deployed")
            before = await placements(c, "steady-adder")
            assert before == {h1.id: 2, h2.id: 2}

        fresh_nats.stop()
        fresh_nats.start()

        async with LatticeClient(fresh_nats.url, lattice) as c:
            w = WadmClient(c, wait_leader_s=20)
            await eventually(lambda: _both_back(c, {h1.id, h2.id}), 30, what="hosts back after the restart")
            await wait_status(w, "steady", "deployed", timeout=30)
            for _ in range(15):  # nothing was placed twice while the view was stale
                await asyncio.sleep(0.2)
                assert await placements(c, "steady-adder") == before
            await w.put(component_app("steady", wasm["adder"], version="v2", instances=6))
            await w.deploy("steady")
            st = await wait_status(w, "steady", "deployed", timeout=30)
            assert st.version == "v2" and sum((await placements(c, "steady-adder")).values()) == 6
    finally:
        await ctls.close()
        await hosts.close()


async def _both_back(c: LatticeClient, ids: set[str]) -> bool:
    return {h.id for h in await c.get_hosts(timeout_s=0.5)} == ids
