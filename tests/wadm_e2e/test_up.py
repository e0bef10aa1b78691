"""`trellis up` runs the controller too: deploy an application on a fresh embedded lattice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

from trellis.kit import procs

from ..harness import run_cli
from ..lattice.test_up import _free_port, _read_until
from .helpers import component_app


def test_up_with_wadm_deploys_an_app(tmp_path, wasm):
    port = _free_port()
    shutil.copy(wasm["adder"], tmp_path / "adder.wasm")
    manifest = tmp_path / "calc.yaml"
    manifest.write_text(component_app("calc", "./adder.wasm", instances=2))
    up = subprocess.Popen(procs.trellis_argv("up", "--state-dir", str(tmp_path / "state"), "--nats-port", str(port)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        banner = _read_until(up, "Press Ctrl-C", 30)
        assert "wadm" in banner and "controller running" in banner
        env = {"TRELLIS_NATS_URL": f"nats://127.0.0.1:{port}"}
        out = run_cli("wadm", "status", "-o", "json", env=env)  # the controller leads by the banner
        leader = next((c["id"] for c in json.loads(out.stdout) if c["role"] == "leader"), None) \
            if out.returncode == 0 else None
        assert leader, out.stdout + out.stderr
        out = run_cli("app", "deploy", str(manifest), "--wait", "--timeout", "60", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        out = run_cli("call", "calc-adder", "add", "[20, 22]", env=env)
        assert out.returncode == 0 and "42" in out.stdout, out.stdout + out.stderr
        out = run_cli("wadm", "status", "-o", "json", env=env)
        assert [(c["id"], c["role"]) for c in json.loads(out.stdout)] == [(leader, "leader")]
        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if up.stdout:
            up.stdout.close()
