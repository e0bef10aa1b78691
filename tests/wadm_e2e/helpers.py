"""Manifests and lattice probes for the wadm end-to-end tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.harness import eventually
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.control import ComponentDescription
from trellis.interfaces.wadm_api import AppStatusReply
from trellis.interfaces.wadm_client import WadmClient


def component_app(name: str, image: str | Path, *, version: str = "v1", instances: int = 4, spread: str = "",
                  scaler: str = "spreadscaler", component: str = "adder", extra: str = "") -> str:
    """A one-component manifest (YAML)."""
    spread_block = ""
    if spread:
        spread_block = "spread:\n" + textwrap.indent(textwrap.dedent(spread).strip("\n"), "  ")
    return textwrap.dedent(f"""\
        apiVersion: core.oam.dev/v1beta1
        kind: Application
        metadata:
          name: {name}
          annotations:
            version: {version}
        spec:
          components:
            - name: {component}
              type: component
              properties:
                image: {image}
              traits:
                - type: {scaler}
                  properties:
                    instances: {instances}
        """) + textwrap.indent(spread_block, " " * 12) + ("\n" if spread_block else "") + extra


def http_server(target: str, address: str, *, indent: int = 4) -> str:
    """The builtin http-server as a manifest component, linked to `target` for
    `wasi:http/incoming-handler`, listening on `address` (YAML, indented to sit under `components:`)."""
    return textwrap.indent(textwrap.dedent(f"""\
        - name: httpserver
          type: capability
          properties:
            image: builtin:http-server
          traits:
            - type: spreadscaler
              properties: {{instances: 1}}
            - type: link
              properties:
                target: {{name: {target}}}
                namespace: wasi
                package: http
                interfaces: [incoming-handler]
                source:
                  config:
                    - name: listen
                      properties:
                        address: {address}
        """), " " * indent)


async def placements(c: LatticeClient, component_id: str) -> dict[str, int]:
    """host id → max_instances of `component_id`, as the hosts answer a ping right now."""
    return {h.id: comp.max_instances for h in await c.get_hosts(timeout_s=0.5)
            for comp in h.components if comp.id == component_id}


async def providers_on(c: LatticeClient, provider_id: str) -> list[str]:
    return sorted(h.id for h in await c.get_hosts(timeout_s=0.5) if any(p.id == provider_id for p in h.providers))


async def wait_status(w: WadmClient, name: str, want: str, timeout: float = 30.0) -> AppStatusReply:
    last: list[AppStatusReply] = []

    async def reached() -> AppStatusReply | None:
        st = await w.status(name)
        last[:] = [st]
        return st if st.status == want else None

    try:
        return await eventually(reached, timeout, interval=0.1, what=f"{name} {want}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {last[0].model_dump() if last else None}") from None


async def deployed_at(w: WadmClient, c: LatticeClient, app: str, version: str, host_id: str,
                      timeout: float = 60) -> ComponentDescription:
    """The app's one component once ``app`` is deployed at ``version``, as ``host_id``'s inventory shows it."""
    async def done() -> ComponentDescription | None:
        st = await w.status(app)
        if st.status != "deployed" or st.version != version:
            return None
        inv = await c.get_inventory(host_id)
        return inv.components[0] if len(inv.components) == 1 else None
    return await eventually(done, timeout, interval=0.1, what=f"{app} {version} deployed")
