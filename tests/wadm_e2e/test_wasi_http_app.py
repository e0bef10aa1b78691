"""A wasi:http proxy component deployed from a wadm manifest written as for wasmCloud: the
http-server links to it for `wasi:http/incoming-handler`, the listen address in the link's
source config, and the component links to builtin:http-client for `wasi:http/outgoing-handler`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx

from tests.components.build import build_python
from tests.http.helpers import LocalServer, free_port

from ..harness import eventually
from .helpers import http_server, wait_status


async def test_wasi_http_component_from_a_manifest(hosts, controllers, wadm_client, write_manifest):
    wasm = build_python("wasihttp")
    await hosts.start()
    await controllers.start()
    port = free_port()
    text = textwrap.dedent(f"""
        apiVersion: core.oam.dev/v1beta1
        kind: Application
        metadata:
          name: proxy
          annotations:
            version: v1
        spec:
          components:
            - name: hello
              type: component
              properties:
                image: {wasm}
              traits:
                - type: spreadscaler
                  properties: {{instances: 1}}
                - type: link
                  properties:
                    target: {{name: egress}}
                    namespace: wasi
                    package: http
                    interfaces: [outgoing-handler]
            - name: egress
              type: capability
              properties:
                image: builtin:http-client
              traits:
                - type: spreadscaler
                  properties: {{instances: 1}}
    """) + http_server("hello", f"127.0.0.1:{port}")
    path = write_manifest(text)
    checked = subprocess.run([sys.executable, "-c", "from trellis.cli.main import app; app()", "app", "validate",
                              str(path)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # trellis app validate
    await wadm_client.put(path.read_text())
    await wadm_client.deploy("proxy")
    await wait_status(wadm_client, "proxy", "deployed", timeout=90)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        async def answered() -> bool:
            try:
                return (await http.get("/hello?from=manifest")).status_code == 200
            except httpx.HTTPError:
                return False
        await eventually(answered, 30, what="the route of the manifest's link")
        r = await http.get("/hello?from=manifest", headers={"x-test": "wadm"})
        assert r.text == "GET /hello?from=manifest x-test=wadm"
        with LocalServer() as srv:
            r = await http.get("/fetch", params={"url": srv.url("/hello")})
            assert (r.status_code, r.text) == (200, "hello")
