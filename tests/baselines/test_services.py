"""The baselines' launcher and CLI (bench/baselines): processes started, answering, and all stopped.

The orders app's services are held to the Trellis app's answers by tests/platform_poc/test_routes.py
(its ``baseline-services`` backend); these tests cover what the benchmark relies on besides.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.baselines.services import (
    PLATFORM_POC_DIR,
    SMALL_APP,
    free_port,
    start_small_app_services,
)
from tests.harness import REPO, eventually
from trellis.kit import procs
from trellis.natsserver import NatsServer

#: starting a Python process with starlette, uvicorn and nats-py takes ~1 s of CPU; more on a loaded machine
pytestmark = pytest.mark.timeout(180)


async def test_small_apps_count_their_own_hits_and_stop_with_the_launcher(nats_server: NatsServer,
                                                                          tmp_path: Path) -> None:
    async with start_small_app_services(nats_server.url, tmp_path, ["a", "b", "c"],
                                        bucket_prefix=f"t{tmp_path.name[-6:]}-") as system:
        assert set(system.urls) == {"a", "b", "c"} and system.url == system.urls["a"]
        assert len(set(system.pids)) == 3 and all(procs.pid_alive(p) for p in system.pids)
        async with httpx.AsyncClient(timeout=30.0) as client:
            assert [(await client.get(system.urls["a"] + "/")).json() for _ in range(2)] == [
                {"app": "a", "hits": 1}, {"app": "a", "hits": 2}]
            r = await client.get(system.urls["b"] + "/")
            assert (r.status_code, r.headers["content-type"], r.json()) == (200, "application/json",
                                                                            {"app": "b", "hits": 1})
            # concurrent increments of one key: compare-and-set, so no count is lost or repeated
            answers = await asyncio.gather(*(client.get(system.urls["c"] + "/") for _ in range(20)))
            assert sorted(a.json()["hits"] for a in answers) == list(range(1, 21))
            r = await client.get(system.urls["a"] + "/other")
            assert (r.status_code, r.text) == (404, "404 Not Found")
        pids = system.pids
    assert not [p for p in pids if procs.pid_alive(p)], "a service outlived the launcher"


def test_a_service_missing_a_setting_exits_with_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-P", str(PLATFORM_POC_DIR / "orders-service" / "app.py")],
                       env={"PORT": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
                       cwd=tmp_path, check=False)
    assert (r.returncode, r.stderr.strip()) == (1, "orders-service: DATA_DIR is not set")


async def _cli(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.baselines", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line, f"the CLI printed nothing: {(await proc.communicate())[1].decode()}"
    return proc, json.loads(line)


async def test_cli_prints_the_front_and_pids_then_stops_everything_on_sigterm(nats_server: NatsServer,
                                                                              tmp_path: Path) -> None:
    proc, started = await _cli("platform-poc", "--nats", nats_server.url, "--state-dir", str(tmp_path),
                               "--prefix", f"cli{tmp_path.name[-6:]}")
    pids = started["pids"]
    assert isinstance(pids, list) and len(pids) == 6
    async with httpx.AsyncClient(timeout=30.0) as client:
        assert (await client.get(f"{started['url']}/data-init/all")).status_code == 200
        assert (await client.get(f"{started['url']}/inventory?skus=ENG-V8-500")).json() == [
            {"sku": "ENG-V8-500", "is_in_stock": True}]
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert not [p for p in pids if procs.pid_alive(p)], "a service outlived the CLI"
    assert sorted(f.name for f in (tmp_path / "logs").iterdir()) == sorted(
        f"{name}.log" for name in ("http-controller", "products-service", "inventory-service", "orders-service",
                                   "notification-service", "data-init"))


async def test_cli_stops_the_rest_and_fails_when_a_service_dies(nats_server: NatsServer, tmp_path: Path) -> None:
    proc, started = await _cli("small-apps", "--count", "2", "--nats", nats_server.url,
                               "--state-dir", str(tmp_path), "--bucket-prefix", f"die{tmp_path.name[-6:]}-")
    pids = started["pids"]
    assert isinstance(pids, list) and len(pids) == 2
    victim, other = pids
    os.kill(victim, signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 60) == 1
    assert proc.stderr is not None
    assert "app-1 exited with -9; stopping the others" in (await proc.stderr.read()).decode()
    assert not procs.pid_alive(other)


async def test_services_go_when_the_cli_is_killed(nats_server: NatsServer, tmp_path: Path) -> None:
    proc, started = await _cli("small-apps", "x", "--nats", nats_server.url, "--state-dir", str(tmp_path),
                               "--bucket-prefix", f"kill{tmp_path.name[-6:]}-")
    pids = started["pids"]
    assert isinstance(pids, list) and len(pids) == 1
    pid: int = pids[0]
    proc.kill()  # no stop at all: the service's death signal ends it
    await proc.wait()
    await eventually(lambda: not procs.pid_alive(pid), timeout=30.0, what="the orphaned service exiting")


MIDDLE = """
import subprocess, sys, time, httpx
p = subprocess.Popen([sys.executable, "-P", sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
deadline = time.monotonic() + 60
while p.poll() is None and time.monotonic() < deadline:
    try:
        httpx.get(f"http://127.0.0.1:{sys.argv[2]}/healthz", timeout=5)
        break
    except httpx.TransportError:
        time.sleep(0.05)
print(p.pid)
"""


async def test_a_service_whose_parent_is_gone_stops_by_itself(nats_server: NatsServer, tmp_path: Path) -> None:
    """No death signal (a parent on another thread, or another OS): the service watches its parent's pidfd."""
    script = str(SMALL_APP)
    env = {**os.environ, "PORT": str(free_port()), "NATS_URL": nats_server.url, "APP_NAME": "orphan",
           "BUCKET": f"orphan{tmp_path.name[-6:]}", procs.EXIT_WITH_PARENT_ENV: "1"}
    # the middle process starts the service (no death signal), waits until it answers (so it is
    # watching its parent) and exits, orphaning it
    middle = await asyncio.create_subprocess_exec(sys.executable, "-c", MIDDLE, script, env["PORT"], env=env,
                                                  stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(middle.communicate(), 90)
    pid = int(out)
    try:
        await eventually(lambda: not procs.pid_alive(pid), timeout=30.0, what="the orphaned service exiting")
    finally:
        if procs.pid_alive(pid):  # the test failed: leave nothing behind
            os.kill(pid, signal.SIGKILL)
