"""A host's own process runs no Wasm, so it does not load wasmtime (its library and bindings: ~5 MiB of
PSS per host); its workers do. It once did, through ``trellis.host.runtime.memory`` (now
``trellis.kit.freemem``) and the CLI's check of ``--instance-allocator`` (docs/performance.md, "Peak
memory of the full app under load")."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from pathlib import Path

import psutil

from trellis.kit import procs
from trellis.natsserver import NatsServer

from ..harness import is_worker, stop_process


def _maps_wasmtime(pid: int) -> bool:
    return "wasmtime" in Path(f"/proc/{pid}/maps").read_text()


def test_the_host_process_does_not_load_wasmtime_and_its_worker_does(nats_server: NatsServer,
                                                                     tmp_path: Path) -> None:
    argv = procs.trellis_argv("host", "--nats-url", nats_server.url, "--lattice", "nowasmtime",
                              "--workers", "1", "--state-dir", str(tmp_path / "state"), "--log-level", "warning")
    host = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env={**os.environ}, start_new_session=True)
    try:
        assert host.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(host.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        started = False
        while not started and time.monotonic() < deadline and sel.select(max(0.0, deadline - time.monotonic())):
            line = host.stdout.readline()
            if not line:
                break
            try:
                started = json.loads(line).get("event") == "host_started"
            except ValueError:
                continue
        assert started, "the host did not start"
        workers = [p for p in psutil.Process(host.pid).children(recursive=True) if is_worker(p)]
        assert workers, "the host has no worker process"
        assert not _maps_wasmtime(host.pid)
        assert all(_maps_wasmtime(w.pid) for w in workers)
    finally:
        stop_process(host, group=True)
