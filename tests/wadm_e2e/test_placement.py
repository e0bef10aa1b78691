"""Placement on a real lattice: spreads with labels and weights, daemonscaler, links and configs, providers."""

from __future__ import annotations

import shutil

from trellis.interfaces.client import LatticeClient
from trellis.wadm.observed import SPREAD_ANNOTATION

from ..harness import eventually
from .conftest import ECHO_PROVIDER
from .helpers import component_app, placements, providers_on, wait_status


async def test_spreads_with_labels_and_weights(nats_server, lattice, hosts, controllers, wadm_client, wasm):
    eu = [await hosts.start(labels={"zone": "eu"}) for _ in range(2)]
    us = [await hosts.start(labels={"zone": "us"}) for _ in range(2)]
    other = await hosts.start(labels={"zone": "ap"})
    await controllers.start()
    manifest = component_app("spread", wasm["adder"], instances=9, spread="""
        - name: eu
          requirements: {zone: eu}
          weight: 2
        - name: us
          requirements: {zone: us}
          weight: 1
    """)
    await wadm_client.put(manifest)
    await wadm_client.deploy("spread")
    st = await wait_status(wadm_client, "spread", "deployed")
    assert st.components[0].running == 9
    async with LatticeClient(nats_server.url, lattice) as c:
        where = await placements(c, "spread-adder")
        assert sum(where.get(h.id, 0) for h in eu) == 6  # 9 x 2/3
        assert sum(where.get(h.id, 0) for h in us) == 3  # 9 x 1/3
        assert sorted(where[h.id] for h in eu) == [3, 3]
        assert sorted(where[h.id] for h in us) == [1, 2]
        assert other.id not in where
        inv = await c.get_inventory(eu[0].id)
        assert inv.components[0].annotations[SPREAD_ANNOTATION] == "eu"
        assert await c.call("spread-adder", "add", 20, 22) == 42

        # a host's labels change so it no longer fits: its share moves to one that does
        await c.put_label(other.id, "zone", "us")
        await c.put_label(us[0].id, "zone", "nowhere")

        async def moved() -> bool:
            where = await placements(c, "spread-adder")
            return (us[0].id not in where and sum(where.get(h.id, 0) for h in (us[1], other)) == 3
                    and sum(where.values()) == 9)

        await eventually(moved, 20, interval=0.1, what="placement to follow the labels")
        await wait_status(wadm_client, "spread", "deployed")


async def test_daemonscaler_runs_on_every_matching_host(nats_server, lattice, hosts, controllers, wadm_client,
                                                        wasm):
    edges = [await hosts.start(labels={"role": "edge"}) for _ in range(2)]
    core = await hosts.start(labels={"role": "core"})
    await controllers.start()
    manifest = component_app("daemon", wasm["adder"], instances=3, scaler="daemonscaler", spread="""
        - name: edge
          requirements: {role: edge}
    """)
    await wadm_client.put(manifest)
    await wadm_client.deploy("daemon")
    st = await wait_status(wadm_client, "daemon", "deployed")
    assert (st.components[0].desired, st.components[0].running) == (6, 6)
    async with LatticeClient(nats_server.url, lattice) as c:
        assert await placements(c, "daemon-adder") == {h.id: 3 for h in edges}
        assert core.id not in await placements(c, "daemon-adder")
        # a new matching host gets one too
        late = await hosts.start(labels={"role": "edge"})
        await eventually(lambda: _has(c, "daemon-adder", late.id, 3), 20, what="daemon on the new host")
        await wait_status(wadm_client, "daemon", "deployed")


async def _has(c: LatticeClient, cid: str, host_id: str, count: int) -> bool:
    return (await placements(c, cid)).get(host_id) == count


async def test_links_and_configs_from_the_manifest(nats_server, lattice, hosts, controllers, wadm_client, wasm,
                                                   write_manifest, tmp_path):
    for name in ("chain", "middle", "tail"):
        shutil.copy(wasm[name], tmp_path / f"{name}.wasm")
    for _ in range(3):
        await hosts.start()
    await controllers.start()
    path = write_manifest("""
        apiVersion: core.oam.dev/v1beta1
        kind: Application
        metadata:
          name: chain
          annotations:
            version: v1
        spec:
          components:
            - name: first
              type: component
              properties:
                image: ./chain.wasm
              traits:
                - type: spreadscaler
                  properties: {instances: 1}
                - type: link
                  properties:
                    target:
                      name: second
                      config:
                        - name: hop
                          properties: {depth: "2"}
                    namespace: test
                    package: chain
                    interfaces: [next]
            - name: second
              type: component
              properties:
                image: ./middle.wasm
              traits:
                - type: spreadscaler
                  properties: {instances: 1}
                - type: link
                  properties:
                    target: {name: third}
                    namespace: test
                    package: chain
                    interfaces: [runner]
            - name: third
              type: component
              properties:
                image: ./tail.wasm
              traits:
                - type: spreadscaler
                  properties: {instances: 1}
    """)
    await wadm_client.put(path.read_text(), base_dir=str(tmp_path))
    await wadm_client.deploy("chain")
    st = await wait_status(wadm_client, "chain", "deployed")
    assert [lk.status for lk in st.links] == ["deployed", "deployed"]
    async with LatticeClient(nats_server.url, lattice) as c:
        links = await c.get_links()
        assert {(lk.source_id, lk.target) for lk in links} == {("chain-first", "chain-second"),
                                                               ("chain-second", "chain-third")}
        assert await c.get_config("chain-hop") == {"depth": "2"}

        async def answers() -> bool:  # links reach the workers within moments
            try:
                return await c.call("chain-first", "test:chain/runner.run", "hello", timeout_s=2) == "hello"
            except Exception:
                return False

        await eventually(answers, 10, what="a call along the linked chain")

        await wadm_client.undeploy("chain")
        await wait_status(wadm_client, "chain", "undeployed")
        assert await c.get_links() == []
        assert "chain-hop" not in await c.lattice_store().list_configs()
        for cid in ("chain-first", "chain-second", "chain-third"):
            assert await placements(c, cid) == {}


async def test_provider_placement(nats_server, lattice, hosts, controllers, wadm_client, write_manifest, tmp_path):
    shutil.copy(ECHO_PROVIDER, tmp_path / "echo_provider.py")
    h1 = await hosts.start()
    h2 = await hosts.start()
    for h in (h1, h2):
        h.providers.health_interval_s = 0.2
    await controllers.start()
    path = write_manifest("""
        apiVersion: core.oam.dev/v1beta1
        kind: Application
        metadata:
          name: echoes
          annotations:
            version: v1
        spec:
          components:
            - name: echo
              type: capability
              properties:
                image: ./echo_provider.py
              traits:
                - type: spreadscaler
                  properties:
                    instances: 2
    """)
    await wadm_client.put(path.read_text(), base_dir=str(tmp_path))
    await wadm_client.deploy("echoes")
    st = await wait_status(wadm_client, "echoes", "deployed", timeout=60)
    assert (st.components[0].kind, st.components[0].running) == ("capability", 2)
    async with LatticeClient(nats_server.url, lattice) as c:
        assert await providers_on(c, "echoes-echo") == sorted([h1.id, h2.id])
        assert await c.call("echoes-echo", "test:echo/echo.echo", "hi") == "hi"
        await wadm_client.undeploy("echoes")
        await wait_status(wadm_client, "echoes", "undeployed", timeout=60)
        assert await providers_on(c, "echoes-echo") == []
