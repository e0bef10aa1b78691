"""Artifacts travel with the app: deploy from a laptop with local paths, run on two other machines.

Three machines (network namespaces): B seeds the lattice (``trellis up --nats-host 0.0.0.0``),
C joins it (``trellis host``), A is the laptop that holds the app's files and deploys it. B
and C each see their own filesystem: a private mount namespace with an empty tmpfs over the
laptop's folder, so the only way they can run the app is by fetching what ``trellis app
deploy`` uploaded to the lattice's artifact store. The app: a component (.wasm), a provider
that is one ``.py`` file and a provider that is a folder (a package with ``__main__.py``),
each on every host (daemonscaler).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.components.build import build_wat
from tests.harness import REPO, is_worker, run_cli
from tests.netns import Machine, Network, netns_unavailable
from trellis.kit import procs

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(240)]

MANIFEST = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: travel
spec:
  components:
    - name: adder
      type: component
      properties:
        image: ./adder.wasm
      traits:
        - type: daemonscaler
          properties:
            instances: 1
    - name: echo
      type: capability
      properties:
        image: ./echo_provider.py
        id: echo
      traits:
        - type: daemonscaler
          properties:
            instances: 1
    - name: kv
      type: capability
      properties:
        image: ./kv_memory
        id: kv-memory
      traits:
        - type: daemonscaler
          properties:
            instances: 1
"""


def _own_view(m: Machine, hidden: Path, argv: list[str]) -> list[str]:
    """``argv`` on machine ``m``, which cannot see ``hidden`` (an empty tmpfs lies over it)."""
    return ["ip", "netns", "exec", m.ns, "unshare", "--mount", "--propagation", "private",
            "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(hidden), *argv]


@pytest.fixture
def machines() -> Iterator[list[Machine]]:
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux) for a machine's own filesystem view")
    net = Network.create(3)
    try:
        yield net.machines
    finally:
        net.destroy()


def _hosts(url: str, laptop: Machine) -> list[dict]:
    r = run_cli("get", "hosts", "-o", "json", env={"TRELLIS_NATS_URL": url}, netns=laptop.ns)
    return json.loads(r.stdout) if r.returncode == 0 else []


def test_deploy_from_a_laptop_runs_components_and_providers_on_machines_without_its_files(tmp_path, machines):
    laptop, seed, joiner = machines
    app = tmp_path / "laptop"
    app.mkdir()
    shutil.copy(build_wat("adder"), app / "adder.wasm")
    shutil.copy(REPO / "tests" / "providers_host" / "echo_provider.py", app / "echo_provider.py")
    shutil.copytree(REPO / "examples" / "custom-provider" / "kv_memory", app / "kv_memory")
    (app / "wadm.yaml").write_text(MANIFEST)
    url = f"nats://{seed.address}:4222"
    env = {"TRELLIS_WORKERS": "1"}

    # the other machines really cannot read the laptop's files
    blind = subprocess.run(_own_view(seed, app, ["test", "-e", str(app / "adder.wasm")]))
    assert blind.returncode == 1

    logs = tmp_path / "logs"
    logs.mkdir()
    up = procs.spawn(_own_view(seed, app, procs.trellis_argv(
        "up", "--nats-host", "0.0.0.0", "--state-dir", str(tmp_path / "seed"), "--label", "machine=seed")),
        log=logs / "up.log", env={**os.environ, **env})
    host = procs.spawn(_own_view(joiner, app, procs.trellis_argv(
        "host", "--nats-url", url, "--state-dir", str(tmp_path / "joiner"), "--label", "machine=joiner")),
        log=logs / "host.log", env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while len(_hosts(url, laptop)) < 2:
            assert time.monotonic() < deadline, "two hosts did not join:\n" + (logs / "up.log").read_text()[-2000:]

        deploy = run_cli("app", "deploy", str(app / "wadm.yaml"), "--wait", "--timeout", "120",
                         env={"TRELLIS_NATS_URL": url}, netns=laptop.ns, timeout=150)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        assert "artifacts: 3 uploaded" in deploy.stderr

        placed = {h["labels"]["machine"]: h for h in _hosts(url, laptop)}
        assert set(placed) == {"seed", "joiner"}
        for name, h in placed.items():
            assert "travel-adder" in {c["id"] for c in h["components"]}, name
            assert {p["id"]: p["status"] for p in h["providers"]} == {"echo": "running", "kv-memory": "running"}, name

        def call(*args: str) -> str:
            r = run_cli("call", *args, env={"TRELLIS_NATS_URL": url}, netns=laptop.ns)
            assert r.returncode == 0, r.stderr
            return r.stdout.strip()

        assert call("travel-adder", "add", "[20, 22]") == "42"
        assert call("echo", "test:echo/echo.echo", '["from the laptop"]') == '"from the laptop"'
        call("kv-memory", "example:kv/store.set", '["b", "k", [1, 2]]')  # (each host's instance keeps its own)
        assert call("kv-memory", "example:kv/store.keys", '["b"]') in ('["k"]', "[]")

        # the stored manifest says what runs and where it came from
        got = json.loads(run_cli("app", "get", "travel", "-o", "json", env={"TRELLIS_NATS_URL": url},
                                 netns=laptop.ns).stdout)
        props = {c["name"]: c["properties"] for c in got["manifest"]["spec"]["components"]}
        assert props["kv"]["source"] == f"file://{app / 'kv_memory'}"
        assert all(p["image"].startswith("lattice://sha256:") for p in props.values())

        # unchanged files: nothing is sent again
        again = run_cli("app", "deploy", str(app / "wadm.yaml"), env={"TRELLIS_NATS_URL": url}, netns=laptop.ns)
        assert again.returncode == 0 and "nothing uploaded" in again.stderr, again.stderr

        # a path only the laptop has, given to a host directly: the host says so, naming itself and the fix
        joiner_id = placed["joiner"]["id"]
        lost = run_cli("start", "component", str(app / "adder.wasm"), "lost", "--host-id", joiner_id,
                       env={"TRELLIS_NATS_URL": url}, netns=laptop.ns)
        assert lost.returncode != 0
        assert f"host {placed['joiner']['name']} cannot read {app / 'adder.wasm'}" in lost.stderr, lost.stderr
        assert "trellis app deploy" in lost.stderr and "trellis push" in lost.stderr

        # SIGKILL of the joining host alone: its workers and both providers go with it
        tree = psutil.Process(host.pid).children(recursive=True)
        assert sum(is_worker(c) for c in tree) == 1
        assert len(tree) >= 3
        host.kill()
        host.wait()
        _, alive = psutil.wait_procs(tree, timeout=5)
        assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE], [c.cmdline() for c in alive]
    finally:
        procs.stop(host, 15)
        procs.stop(up, 20)
