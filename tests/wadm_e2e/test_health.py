"""Status is the truth: a provider that reports itself unhealthy makes the app degraded (issue 13)."""

from __future__ import annotations

import socket
import time

from nats.aio.msg import Msg

from trellis.interfaces import subjects
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.events import Event, EventType

from ..harness import eventually
from .helpers import component_app, wait_status


def _http_app(image: str, port: int) -> str:
    return component_app("web", image, instances=1, extra=f"""\
    - name: http
      type: capability
      properties:
        image: builtin:http-server
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target: {{name: adder}}
            namespace: trellis
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: web-listen
                  properties:
                    address: 127.0.0.1:{port}
""")


async def test_http_server_on_a_taken_port_turns_the_app_degraded_naming_the_port(
        nats_server, lattice, hosts, controllers, wadm_client, wasm):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        h = await hosts.start()
        await controllers.start()
        async with LatticeClient(nats_server.url, lattice) as c:
            seen: list[Event] = []
            assert c.nc is not None

            async def keep(msg: Msg) -> None:
                seen.append(Event.decode(msg.data))

            sub = await c.nc.subscribe(subjects.event(lattice, EventType.APP_STATUS_CHANGED), cb=keep)
            await wadm_client.put(_http_app(str(wasm["adder"]), port))
            t0 = time.monotonic()
            await wadm_client.deploy("web")

            async def named() -> object:
                st = await wadm_client.status("web")
                return st if st.status in ("degraded", "failed") and f"127.0.0.1:{port}" in st.message else None

            st = await eventually(named, 10, interval=0.1, what=f"the status to name port {port}")
            took = time.monotonic() - t0
            assert took <= 10.0
            http = next(comp for comp in st.components if comp.name == "http")
            assert http.status in ("degraded", "failed") and http.running == 0
            assert h.id in http.message and f"127.0.0.1:{port}" in http.message
            assert any(p.component == "http" and p.host_id == h.id and str(port) in p.cause for p in st.problems)
            # ... and as a lattice event
            await eventually(lambda: any(e.data.get("status") in ("degraded", "failed")
                                         and f"127.0.0.1:{port}" in e.data.get("message", "") for e in seen),
                             10, what="an app_status_changed event naming the port")

            # the port is freed: the provider binds it on its own retry, and the app is deployed
            squatter.close()
            await wait_status(wadm_client, "web", "deployed", timeout=30)
            await sub.unsubscribe()
    finally:
        squatter.close()
