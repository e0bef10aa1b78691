"""JetStream briefly unavailable: what the controller and the artifact reads do meanwhile.

A three-node cluster on the loopback (`local_cluster`, no namespaces needed). Two ways
of making JetStream unavailable on purpose, for as long as the test wants:

* two of three nodes down: no majority, so every stream and the JetStream API answer
  ``503`` or nothing (what any client sees while a cluster elects a leader), until the
  nodes come back;
* the apps bucket placed, with one replica, on a node that is then killed: that one
  stream is unreadable (as while its leader is lost and its replicas elect another),
  while the lease, the links and the events carry on.

Each test fails without the fix it covers: a controller that dies at start, a new
leader that cannot act without reading the apps bucket, an artifact read that gives up
at once and calls the artifact missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import DiscardPolicy, Placement, StreamConfig

from tests.cluster import ControllerProcess
from tests.harness import HostFactory, eventually
from trellis.interfaces import subjects
from trellis.interfaces.artifacts import ArtifactError, fetch_lattice, push
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.connection import NatsSettings
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.store import StoreSettings
from trellis.interfaces.wadm_client import WadmClient
from trellis.wadm.controller import Controller, ControllerSettings

from .apps import placements, spread_app
from .figures import record
from .local_cluster import LocalCluster

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture
def local_cluster(tmp_path: Path):
    made: list[LocalCluster] = []

    def make(start: int | None = None) -> LocalCluster:
        cl = LocalCluster.create(tmp_path / "nats", start=start)
        made.append(cl)
        return cl

    yield make
    for cl in made:
        cl.destroy()


def _logged(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> bool:
    return any(r.name == logger and text in r.getMessage() for r in caplog.records)


async def test_fetch_lattice_waits_out_an_unavailable_store_then_says_so(local_cluster, lattice, wasm, caplog):
    caplog.set_level(logging.INFO, logger="trellis.interfaces.artifacts")
    cl: LocalCluster = local_cluster()
    await cl.wait_jetstream()
    code = wasm["adder"].read_bytes()
    nc = await nats.connect(cl.nodes[0].url)
    try:
        ref = await push(nc, lattice, code, replicas=3)
        digest = ref.removeprefix("lattice://")
        assert await fetch_lattice(nc, lattice, digest) == code

        # not there: said at once, as not found
        t0 = time.monotonic()
        with pytest.raises(ArtifactError) as missing:
            await fetch_lattice(nc, lattice, "sha256:" + "0" * 64)
        assert missing.value.code == ErrorCode.NOT_FOUND and time.monotonic() - t0 < 5, missing.value

        # two of three nodes gone: the store cannot answer (503 or nothing) until they are back
        cl.nodes[1].kill()
        cl.nodes[2].kill()

        async def unreadable() -> bool:
            try:
                await fetch_lattice(nc, lattice, digest, timeout_s=0, attempt_s=1)  # one attempt
            except ArtifactError as exc:
                assert exc.code == ErrorCode.TIMEOUT, exc  # never "not found" for a store that is away
                return True
            return False

        await eventually(unreadable, 30, interval=0.1, what="the store to become unreadable")

        t0 = time.monotonic()
        with pytest.raises(ArtifactError) as away:
            await fetch_lattice(nc, lattice, digest, timeout_s=3, attempt_s=1)
        gave_up_s = time.monotonic() - t0
        assert away.value.code == ErrorCode.TIMEOUT, away.value
        assert "unavailable" in str(away.value) and "not in" not in str(away.value), away.value
        assert 2.5 < gave_up_s < 6, gave_up_s  # it kept trying until its deadline, not longer

        # a read that starts while the store is away returns the artifact once the nodes are back
        caplog.clear()
        reading = asyncio.ensure_future(fetch_lattice(nc, lattice, digest, timeout_s=60))
        await eventually(lambda: _logged(caplog, "trellis.interfaces.artifacts", "retrying"), 20,
                         what="the read to retry")
        assert not reading.done()
        await asyncio.gather(*(asyncio.to_thread(n.start) for n in cl.nodes[1:]))
        back = time.monotonic()
        data = await asyncio.wait_for(reading, 60)
        assert data == code
        record("artifact-read-during-election", gave_up_after_s=round(gave_up_s, 2),
               read_after_nodes_back_s=round(time.monotonic() - back, 2))
    finally:
        await nc.close()


async def test_controller_start_waits_for_jetstream(local_cluster, lattice, caplog):
    """One node of three up: no JetStream meta leader, so opening a bucket gets no answer. The
    controller keeps trying (it used to exit after one 5 s timeout) and starts once the others join."""
    caplog.set_level(logging.WARNING, logger="trellis.wadm.controller.app_store")
    cl: LocalCluster = local_cluster(start=1)
    ctl = Controller(ControllerSettings(lattice=lattice, nats=NatsSettings(url=cl.nodes[0].url), tick_s=0.5,
                                        lease_ttl_s=2.0, store_retry_s=120))
    starting = asyncio.ensure_future(ctl.start())
    try:
        await eventually(lambda: _logged(caplog, "trellis.wadm.controller.app_store", "JetStream unavailable"), 30,
                         what="the controller to retry opening its buckets")
        assert not starting.done(), starting
        await asyncio.gather(*(asyncio.to_thread(n.start) for n in cl.nodes[1:]))
        joined = time.monotonic()
        await asyncio.wait_for(starting, 90)
        started_s = time.monotonic() - joined
        async with LatticeClient(cl.nodes[0].url, lattice) as c:
            w = WadmClient(c, wait_leader_s=20)
            listed = await w.list()
            assert listed.controller.id == ctl.id and listed.controller.role.value == "leader"
        record("controller-start-during-election", started_after_quorum_s=round(started_s, 2))
    finally:
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await ctl.close(reason="test teardown")


async def _precreate(url: str, lattice: str, where: dict[str, str], lease_ttl_s: float) -> None:
    """Make the controller's buckets before it does, each with one replica on a chosen node.

    (The stream of a KV bucket, as nats-py's ``create_key_value`` makes it, which has no room
    for a placement.)"""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        history = StoreSettings.from_env().history
        for what, node in where.items():
            bucket = subjects.bucket(lattice, what)
            ttl = lease_ttl_s if what == "wadm_lease" else None
            await js.add_stream(StreamConfig(
                name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], allow_rollup_hdrs=True, allow_msg_ttl=True,
                deny_delete=True, discard=DiscardPolicy.NEW, duplicate_window=min(ttl or 120.0, 120.0),
                max_age=ttl, max_consumers=-1, max_msgs=-1,
                max_msgs_per_subject=history if what in ("links", "config") else 1,
                num_replicas=1, placement=Placement(tags=[node])))
            info = await js.stream_info(f"KV_{bucket}")
            assert info.cluster is not None and info.cluster.leader == node, (what, info.cluster)
    finally:
        await nc.close()


async def test_new_leader_acts_from_memory_while_the_apps_stream_is_down(local_cluster, lattice, wasm, tmp_path):
    """The leader dies while the apps bucket cannot be read (its only replica's node is down).
    The follower that takes over re-places a stopped host's share from the manifests it holds in
    memory, and answers status from memory; before, its first pass read the manifest from the
    bucket and failed, pass after pass, until the stream came back."""
    cl: LocalCluster = local_cluster()
    await cl.wait_jetstream()
    n0, n1, n2 = cl.nodes
    await _precreate(n0.url, lattice, {"apps": "n2", "wadm_lease": "n0", "links": "n0", "config": "n0"},
                     lease_ttl_s=2.0)
    hosts = HostFactory(n0.url, lattice, tmp_path)
    first = ControllerProcess(None, n0.url, lattice, tmp_path / "wadm-first.log", _env(),
                              "--lease-ttl", "2", "--tick", "0.5")
    follower: Controller | None = None
    try:
        first.wait_started()
        h1 = await hosts.start(labels={"pool": "p"})
        h2 = await hosts.start(labels={"pool": "p"})
        async with LatticeClient(n1.url, lattice) as c:
            w = WadmClient(c, wait_leader_s=20)
            await eventually(lambda: _leader_is(w, first.id), 20, what="the first controller to lead")
            follower = Controller(ControllerSettings(lattice=lattice, nats=NatsSettings(url=n1.url), tick_s=0.5,
                                                     lease_ttl_s=2.0))
            await follower.start()
            await w.put(spread_app("app", wasm["adder"], 4))
            await w.deploy("app")
            await eventually(lambda: _placed(c, {h1.id: 2, h2.id: 2}), 30, what="the app placed")
            await eventually(lambda: follower.memory.manifest("app", "v1") is not None, 10,
                             what="the follower to hold the manifest")

            n2.kill()  # the apps bucket's only replica
            with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError, nats.js.errors.APIError)):
                await follower.apps.get_manifest("app", "v1")  # unreadable, as during an election

            t0 = time.monotonic()
            first.kill()
            await h2.close(reason="test: its share must move")
            await eventually(lambda: follower.role.value == "leader", 15, interval=0.05, what="the follower to lead")
            took_over_s = time.monotonic() - t0
            await eventually(lambda: _placed(c, {h1.id: 4}), 20, interval=0.05,
                             what="the stopped host's share re-placed by the new leader")
            replaced_s = time.monotonic() - t0

            st = await w.status("app")  # from the new leader's memory: the bucket is still unreadable
            assert st.version == "v1" and st.status == "deployed", st
            assert [a.name for a in (await w.list()).apps] == ["app"]
            assert (await w.get("app")).version == "v1"
        record("leader-lost-with-apps-stream", takeover_s=round(took_over_s, 2), replaced_s=round(replaced_s, 2))
        assert replaced_s < 10, replaced_s
    finally:
        first.kill()
        if follower is not None:
            await follower.close(reason="test teardown")
        await hosts.close()


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "TRELLIS_LOG_LEVEL": "INFO"}


async def _leader_is(w: WadmClient, cid: str) -> bool:
    return any(c.id == cid and c.role.value == "leader" for c in await w.controllers(timeout_s=0.3))


async def _placed(c: LatticeClient, want: dict[str, int]) -> bool:
    return await placements(c, "app-svc") == want
