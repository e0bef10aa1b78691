"""`trellis up --metrics-port`: one endpoint for the whole embedded lattice (its host, and the wadm
controller gathered over NATS), with JSON logs in rotating files."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trellis.kit import procs

from ..harness import stop_process
from ..lattice.test_up import _free_port, _read_until


def _scrape(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.slow
def test_up_serves_the_lattices_metrics(tmp_path):
    port, metrics = _free_port(), _free_port()
    state = tmp_path / "state"
    argv = procs.trellis_argv("up", "--state-dir", str(state), "--nats-port", str(port), "--metrics-port",
                              str(metrics), "--log-format", "json", "--log-to", "files")
    up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        banner = _read_until(up, "Press Ctrl-C", 30)
        url = f"http://127.0.0.1:{metrics}/metrics"
        assert url in banner
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while time.monotonic() < deadline:  # until the host serves and wadm has made a pass
            try:
                names = _scrape(url)
            except OSError:
                names = set()
            if "trellis_wadm_leader" in names and "trellis_host_heartbeats_total" in names:
                break
            time.sleep(0.2)
        assert {"trellis_wadm_leader", "trellis_host_heartbeats_total", "trellis_host_capacity",
                "trellis_compile_cache_compiles_total"} <= names, sorted(names)
        busy = subprocess.run(procs.trellis_argv("up", "--state-dir", str(tmp_path / "other"), "--nats-port",
                                                 str(_free_port()), "--metrics-port", str(metrics)),
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and f"--metrics-port {metrics}" in busy.stderr
    finally:
        stop_process(up)
    logs = state / "logs"
    for name in ("host.log", "wadm.log"):
        lines = [json.loads(line) for line in (logs / name).read_text().splitlines() if line.strip()]
        assert lines and all("ts" in r and "msg" in r for r in lines), name
    assert any(r["process"] == "wadm" for r in (json.loads(x) for x in (logs / "wadm.log").read_text().splitlines()))
