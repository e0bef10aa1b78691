"""The `trellis app` / `trellis wadm` contract, through the real command line."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket

from .helpers import component_app, http_server


def _run(cli, *args: str, **kw):
    return asyncio.to_thread(cli, *args, **kw)


async def test_validate_exit_codes(cli, write_manifest, tmp_path):
    good = write_manifest(component_app("ok", "./adder.wasm"), "good.yaml")
    out = await _run(cli, "app", "validate", str(good))
    assert out.returncode == 0, out.stderr
    assert "valid manifest for application 'ok'" in out.stdout
    assert "does not exist" in out.stdout  # warning: the image file is not there

    bad = write_manifest(component_app("Not Valid", "./adder.wasm", instances=-1), "bad.yaml")
    out = await _run(cli, "app", "validate", str(bad))
    assert out.returncode != 0
    assert "invalid manifest" in out.stderr and "error:" in out.stderr and "instances" in out.stderr

    out = await _run(cli, "app", "validate", str(tmp_path / "nope.yaml"))
    assert out.returncode != 0 and "no such file" in out.stderr

    # deploy refuses it before uploading anything, each error said once
    out = await _run(cli, "app", "deploy", str(bad))
    assert out.returncode == 1 and out.stderr.startswith(f"error: {bad}: invalid manifest (2 error(s))\n"), out.stderr
    assert "artifacts" not in out.stderr and out.stderr.count("instances") == 1, out.stderr

    # a project folder means its wadm.yaml; a folder without one, or a word no app is named, is a clear error
    out = await _run(cli, "app", "validate", str(tmp_path))
    assert out.returncode == 1 and out.stderr == f"error: {tmp_path} is a folder without a wadm.yaml: give the " \
                                                 "manifest file\n", out.stderr
    good.rename(tmp_path / "wadm.yaml")
    out = await _run(cli, "app", "validate", str(tmp_path))
    assert out.returncode == 0 and "valid manifest for application 'ok'" in out.stdout, out.stderr
    out = await _run(cli, "app", "deploy", "my app")
    assert out.returncode == 1 and out.stderr.startswith("error: no such file 'my app'"), out.stderr


async def test_deploy_wait_status_json_list_and_undeploy(cli, hosts, controllers, wasm, write_manifest, tmp_path):
    shutil.copy(wasm["adder"], tmp_path / "adder.wasm")
    await hosts.start(labels={"zone": "eu"})
    await hosts.start(labels={"zone": "eu"})
    ctl = await controllers.start()
    path = write_manifest(component_app("shop", "./adder.wasm", instances=3), "shop.yaml")

    out = await _run(cli, "app", "deploy", str(path), "--wait")
    assert out.returncode == 0, out.stderr
    assert "deploying shop v1" in out.stdout and "deployed" in out.stdout

    out = await _run(cli, "app", "status", "shop", "-o", "json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["status"] == "deployed" and st["name"] == "shop" and st["version"] == "v1"
    [comp] = st["components"]
    assert {k: comp[k] for k in ("name", "id", "kind", "status", "desired", "running")} == {
        "name": "adder", "id": "shop-adder", "kind": "component", "status": "deployed", "desired": 3, "running": 3}

    out = await _run(cli, "app", "status", "shop")
    assert out.returncode == 0 and "shop v1: deployed" in out.stdout and "shop-adder" in out.stdout

    out = await _run(cli, "app", "list", "-o", "json")
    listed = json.loads(out.stdout)
    assert [(a["name"], a["deployed_version"], a["status"]) for a in listed] == [("shop", "v1", "deployed")]

    out = await _run(cli, "wadm", "status", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert [(c["id"], c["role"]) for c in json.loads(out.stdout)] == [(ctl.id, "leader")]

    out = await _run(cli, "app", "get", "shop")
    assert out.returncode == 0 and f"file://{tmp_path / 'adder.wasm'}" in out.stdout

    out = await _run(cli, "app", "versions", "shop", "-o", "json")
    assert [v["version"] for v in json.loads(out.stdout)] == ["v1"]

    out = await _run(cli, "app", "delete", "shop")
    assert out.returncode != 0 and "undeploy" in out.stderr

    out = await _run(cli, "app", "undeploy", "shop", "--wait", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "undeployed"

    out = await _run(cli, "app", "delete", "shop")
    assert out.returncode == 0, out.stderr
    out = await _run(cli, "app", "status", "shop", "-o", "json")
    assert out.returncode != 0 and "no application 'shop'" in out.stderr


async def test_deploy_wait_fails_with_the_reason(cli, hosts, controllers, wasm, write_manifest):
    await hosts.start()
    await controllers.start()
    path = write_manifest(component_app("nowhere", wasm["adder"], instances=1, spread="""
        - name: gpu
          requirements: {gpu: "yes"}
    """))
    out = await _run(cli, "app", "deploy", str(path), "--wait", "--timeout", "20")
    assert out.returncode == 1
    assert "nowhere is failed" in out.stderr and "no eligible host for spread 'gpu'" in out.stderr

    out = await _run(cli, "app", "put", str(write_manifest(component_app("Bad!", "x.wasm"), "bad.yaml")))
    assert out.returncode == 1 and "invalid manifest" in out.stderr and "error:" in out.stderr


async def test_no_controller_is_a_clear_error(cli):
    out = await _run(cli, "app", "list")
    assert out.returncode == 1 and "no wadm controller answers" in out.stderr
    # a name or id no request can carry is one line, not a traceback
    out = await _run(cli, "app", "status", "a/b")
    assert (out.returncode, out.stderr) == (1, "error: invalid name 'a/b': use 1-128 letters, digits, '-' and '_'\n")
    out = await _run(cli, "call", "bad.id", "a:b/c.d", "[]")
    assert (out.returncode, out.stderr) == (1, "error: invalid target id 'bad.id': use 1-128 letters, digits, '-' and "
                                               "'_'\n")


async def test_deploy_wait_reports_a_port_in_use_not_deployed(cli, hosts, controllers, wasm, write_manifest,
                                                            tmp_path):
    """--wait ends on the truth: the http-server finds its port taken only once it applies the link, after
    wadm has seen the link stored and the provider healthy; the wait reports the app degraded and why."""
    shutil.copy(wasm["adder"], tmp_path / "adder.wasm")
    await hosts.start()
    await controllers.start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = http_server("adder", f"127.0.0.1:{port}")
        path = write_manifest(component_app("web", "./adder.wasm", instances=1, extra=server), "web.yaml")
        out = await _run(cli, "app", "deploy", str(path), "--wait", "--timeout", "60")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "web is degraded: httpserver on " in out.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
