"""``properties.timeout_ms`` through the real controller and host: a component's call deadline set
by its manifest, and changed by a new version."""

from __future__ import annotations

import shutil

import pytest

from tests.components.build import build_wat
from trellis.interfaces.annotations import TIMEOUT_ANNOTATION
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.rpc_client import RpcError

from .helpers import component_app, deployed_at

CID = "spinning-spinner"


def spinning_app(version: str, timeout_ms: int) -> str:
    text = component_app("spinning", "./hostile.wasm", version=version, instances=1, component="spinner")
    props = "        image: ./hostile.wasm\n"
    assert props in text
    return text.replace(props, props + f"        timeout_ms: {timeout_ms}\n")


async def test_a_manifest_sets_the_call_deadline_and_a_new_version_changes_it(
        nats_server, lattice, hosts, controllers, wadm_client, write_manifest, tmp_path):
    shutil.copy(build_wat("hostile"), tmp_path / "hostile.wasm")
    h = await hosts.start()
    await controllers.start()
    w = wadm_client

    async with LatticeClient(nats_server.url, lattice) as c:
        for version, ms in (("v1", 300), ("v2", 700)):
            path = write_manifest(spinning_app(version, ms), f"{version}.yaml")
            await w.put(path.read_text(), base_dir=str(tmp_path))
            await w.deploy("spinning", version)
            comp = await deployed_at(w, c, "spinning", version, h.id)
            assert comp.annotations.get(TIMEOUT_ANNOTATION) == str(ms)
            # a guest spinning in Wasm is stopped at the manifest's deadline (the default is 10 s)
            with pytest.raises(RpcError) as caught:
                await c.call(CID, "spin", timeout_s=30)
            assert caught.value.kind == "timeout" and f"deadline of {ms / 1000}s exceeded" in str(caught.value), \
                caught.value
