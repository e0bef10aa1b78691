"""A whole application from one manifest: a Python component, a built-in provider, a link with config."""

from __future__ import annotations

import uuid

from tests.builtin_providers.components.build import build
from trellis.interfaces.client import LatticeClient

from ..harness import eventually
from .helpers import placements, providers_on, wait_status


async def test_component_and_builtin_keyvalue_provider_linked_by_the_manifest(
        nats_server, lattice, hosts, controllers, wadm_client, write_manifest):
    kvstore = build("kvstore")
    a, b = await hosts.start(), await hosts.start()
    await controllers.start()
    path = write_manifest(f"""
        apiVersion: core.oam.dev/v1beta1
        kind: Application
        metadata:
          name: notes
          annotations:
            version: v1
            description: notes kept in NATS KV
        spec:
          components:
            - name: api
              type: component
              properties:
                image: {kvstore}
              traits:
                - type: spreadscaler
                  properties: {{instances: 2}}
                - type: link
                  properties:
                    target:
                      name: kv
                      config:
                        - name: kv
                          properties: {{list_page_size: "3"}}
                    namespace: wasi
                    package: keyvalue
                    interfaces: [atomics, batch, store]
            - name: kv
              type: capability
              properties:
                image: builtin:keyvalue-nats
              traits:
                - type: daemonscaler
                  properties: {{instances: 1}}
    """)
    await wadm_client.put(path.read_text())
    await wadm_client.deploy("notes")
    st = await wait_status(wadm_client, "notes", "deployed", timeout=60)
    assert [(c.name, c.status) for c in st.components] == [("api", "deployed"), ("kv", "deployed")]
    assert [lk.status for lk in st.links] == ["deployed"]
    async with LatticeClient(nats_server.url, lattice) as c:
        assert await providers_on(c, "notes-kv") == sorted([a.id, b.id])
        assert sum((await placements(c, "notes-api")).values()) == 2
        [link] = await c.get_links()
        assert (link.source_id, link.target, link.target_config) == ("notes-api", "notes-kv", ["notes-kv"])
        assert await c.get_config("notes-kv") == {"list_page_size": "3"}
        bucket = "b" + uuid.uuid4().hex[:8]

        async def stored() -> bool:
            try:
                return await c.call("notes-api", "put", bucket, "k", b"v", timeout_s=5) == {"ok": None}
            except Exception:
                return False

        await eventually(stored, 20, what="a write through the linked provider")
        assert await c.call("notes-api", "fetch", bucket, "k") == {"ok": b"v"}
        apps = (await wadm_client.list()).apps
        assert [(x.name, x.description) for x in apps] == [("notes", "notes kept in NATS KV")]

        await wadm_client.undeploy("notes")
        await wait_status(wadm_client, "notes", "undeployed", timeout=60)
        assert await providers_on(c, "notes-kv") == [] and await c.get_links() == []
