"""`trellis build` for JavaScript, `trellis new`, and JavaScript beside Python in one manifest.

Everything goes through the real CLI, as a new user would type it.
"""

from __future__ import annotations

import asyncio
import filecmp
import importlib.util
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from trellis.interfaces.client import LatticeClient

from ..harness import REPO, eventually, run_cli

pytestmark = pytest.mark.slow
EXAMPLES = REPO / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(app: Path, out: Path) -> Path:
    done = run_cli("build", str(app), "-o", str(out), "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    return out


def _localise(manifest: Path, images: dict[str, Path], ports: dict[int, int], dest: Path) -> Path:
    """The manifest with its images at the test's build outputs and its ports free ones."""
    text = manifest.read_text()
    for old, new in images.items():
        text = text.replace(f"image: {old}", f"image: {new}")
    for old_port, new_port in ports.items():
        text = text.replace(f"127.0.0.1:{old_port}", f"127.0.0.1:{new_port}")
    dest.write_text(text)
    return dest


async def _get(url: str) -> str:
    async def answered() -> str | None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.get(url)
        except httpx.HTTPError:
            return None
        assert resp.status_code == 200, resp.text
        return resp.text
    return await eventually(answered, timeout=120, interval=0.5, what=f"GET {url}")


async def _compile_first(host, *wasms: Path) -> None:
    """Start and stop each component once, so its compiled code is cached before wadm places it:
    a loaded 2-core machine compiles a 12-18 MiB component for longer than wadm waits for a start."""
    async with LatticeClient(host.settings.nats.url, host.settings.lattice) as c:
        for i, wasm in enumerate(wasms):
            await c.start_component(str(wasm), f"warm-{i}", host_id=host.id, timeout_s=900)
            await c.stop_component(f"warm-{i}", host_id=host.id)


def test_the_js_example_is_what_trellis_new_makes(tmp_path: Path) -> None:
    made = run_cli("new", "component", "hello-js", "--lang", "js", "--dir", str(tmp_path), "--port", "8081")
    assert made.returncode == 0, made.stderr
    compared = filecmp.dircmp(tmp_path / "hello-js", EXAMPLES / "hello-js", ignore=["build", "node_modules"])

    def differences(cmp: filecmp.dircmp) -> list[str]:
        out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
        for sub in cmp.subdirs.values():
            out += differences(sub)
        return out

    assert differences(compared) == []


def test_trellis_new_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    bad = run_cli("new", "component", "Bad_Name", "--dir", str(tmp_path))
    assert bad.returncode != 0 and "lower-case" in bad.stderr
    assert run_cli("new", "provider", "twice", "--dir", str(tmp_path)).returncode == 0
    again = run_cli("new", "provider", "twice", "--dir", str(tmp_path))
    assert again.returncode != 0 and "already exists" in again.stderr
    lang = run_cli("new", "component", "x", "--lang", "rust", "--dir", str(tmp_path))
    assert lang.returncode != 0 and "python, js" in lang.stderr


def test_trellis_new_says_when_its_port_is_taken(tmp_path: Path) -> None:
    """Every project listens on 8080 unless told: one made while another app holds the port says
    how to deploy it elsewhere (else its app turns degraded after the deploy said 'deployed')."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        made = run_cli("new", "component", "web", "--dir", str(tmp_path), "--port", str(port))
    assert made.returncode == 0, made.stderr
    assert f"already listens on 127.0.0.1:{port}" in made.stderr
    assert "--config web-listen.address=127.0.0.1:PORT" in made.stderr
    free = run_cli("new", "component", "web2", "--dir", str(tmp_path), "--port", str(_free_port()))
    assert free.returncode == 0 and "already listens" not in free.stderr


@pytest.mark.timeout(1500)
@pytest.mark.skipif(importlib.util.find_spec("trellis.host.runtime.wasi_http") is None,
                    reason="the host does not serve wasi:http components yet")
async def test_javascript_and_python_components_in_one_manifest(hosts, controllers, cli, tmp_path: Path) -> None:
    js = _build(EXAMPLES / "hello-js", tmp_path / "js")
    py = _build(EXAMPLES / "hello-python" / "hello", tmp_path / "py")
    port_js, port_py = _free_port(), _free_port()
    manifest = _localise(EXAMPLES / "polyglot" / "wadm.yaml",
                         {"../hello-js/build/hello-js.wasm": js / "hello-js.wasm",
                          "../hello-python/build/hello.wasm": py / "hello.wasm"},
                         {8081: port_js, 8082: port_py}, tmp_path / "wadm.yaml")
    host = await hosts.start()
    await _compile_first(host, js / "hello-js.wasm", py / "hello.wasm")
    await controllers.start()
    deployed = await asyncio.to_thread(cli, "app", "deploy", str(manifest), "--wait", "--timeout", "600", timeout=630)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    first = await _get(f"http://127.0.0.1:{port_js}/hi?x=1")
    assert "Hello from hello-js!" in first and "GET /hi?x=1" in first
    second = await _get(f"http://127.0.0.1:{port_js}/")
    visits = [int(re.search(r"visits: (\d+)", t).group(1)) for t in (first, second)]
    assert visits[1] == visits[0] + 1
    assert "Hello from Trellis" in await _get(f"http://127.0.0.1:{port_py}/py")


@pytest.mark.timeout(900)
async def test_new_python_component_and_provider_build_and_run(hosts, controllers, cli, tmp_path: Path) -> None:
    assert run_cli("new", "component", "visits", "--dir", str(tmp_path)).returncode == 0
    assert run_cli("new", "provider", "greeter", "--dir", str(tmp_path)).returncode == 0
    own_test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_provider.py"],
                              cwd=tmp_path / "greeter", capture_output=True, text=True, timeout=120)
    assert own_test.returncode == 0, own_test.stdout + own_test.stderr
    project = tmp_path / "visits"
    _build(project, project / "build")  # the project's own build/, as the README's command does
    port = _free_port()
    manifest = project / "wadm.yaml"
    manifest.write_text(manifest.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    host = await hosts.start()
    await _compile_first(host, project / "build" / "visits.wasm")
    await controllers.start()
    for app in (manifest, tmp_path / "greeter" / "wadm.yaml"):
        deployed = await asyncio.to_thread(cli, "app", "deploy", str(app), "--wait", "--timeout", "600", timeout=630)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "visits: 1" in await _get(f"http://127.0.0.1:{port}/")
    assert "visits: 2" in await _get(f"http://127.0.0.1:{port}/")


def test_a_javascript_syntax_error_names_its_line(tmp_path: Path) -> None:
    app = tmp_path / "broken"
    (app / "wit").mkdir(parents=True)
    (app / "wit" / "world.wit").write_text("package test:broken;\nworld broken {\n  export hello: func() -> "
                                           "string;\n}\n")
    (app / "app.js").write_text("export function hello() {\n  return 'hi' +;\n}\n")
    done = run_cli("build", str(app), "-o", str(tmp_path / "out"), timeout=300)
    assert done.returncode == 1
    assert "broken: app.js:2: SyntaxError" in done.stderr, done.stderr
