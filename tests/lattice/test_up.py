"""`trellis up`: the embedded lattice as one supervised process tree."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.control import HostInfo
from trellis.interfaces.wadm_client import WadmClient
from trellis.kit import procs
from trellis.up import Child, Up, UpError, UpSettings

from ..components.build import build_wat
from ..harness import eventually, run_cli
from ..wadm_e2e.helpers import component_app, wait_status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = ""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk.decode()
    sel.close()
    assert needle in out, f"no {needle!r} in output:\n{out}"
    return out


async def _hosts(url: str) -> list[HostInfo]:
    async with LatticeClient(url) as client:
        return await client.get_hosts()


def _child(parent: psutil.Process, needle: str, timeout: float) -> psutil.Process:
    """The child of ``parent`` whose command line has ``needle``, as soon as it is spawned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in parent.children():
            try:
                if needle in c.cmdline():
                    return c
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.01)  # (a poll: children are not announced)
    raise AssertionError(f"no child {needle!r} of {parent.cmdline()}")


async def _deploy(url: str, manifest: str) -> str:
    """Put and deploy ``manifest`` at once (no waiting for wadm: the banner promised it answers)."""
    async with LatticeClient(url) as client:
        wadm = WadmClient(client)
        put = await wadm.put(manifest)
        await wadm.deploy(put.name, put.version)
        return (await wait_status(wadm, put.name, "deployed")).status


def test_up_runs_nats_and_host_and_stops_cleanly(tmp_path):
    port = _free_port()
    state = tmp_path / "state"
    url = f"nats://127.0.0.1:{port}"
    # wadm as a child of its own, so that it can be held back: the banner must wait for it (in the
    # host's process, the default, it starts only once the host answers: the same race, not as easy to hold)
    argv = procs.trellis_argv("up", "--state-dir", str(state), "--nats-port", str(port), "--no-ui", "--wadm-process")
    up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        # wadm held (stopped) until the host answers, as a wadm slower to start than its host: without
        # the wait, an 'app deploy' right after the banner found no controller
        wadm = _child(psutil.Process(up.pid), "wadm", 30)
        wadm.suspend()
        try:
            asyncio.run(eventually(lambda: _hosts(url), 60, what="the host to answer"))
        finally:
            wadm.resume()
        banner = _read_until(up, "Press Ctrl-C", 60)
        assert url in banner and "host" in banner and "controller running" in banner
        children = psutil.Process(up.pid).children(recursive=True)
        assert any("nats-server" in " ".join(c.cmdline()) for c in children)

        # the banner means up: wadm takes a deploy at once ...
        assert asyncio.run(_deploy(url, component_app("calc", build_wat("adder"), instances=1))) == "deployed"
        # ... the host answers its first ping, and takes a start at once (its workers are ready:
        # a start sent to one still booting them could hang at "loading into the workers")
        first = asyncio.run(_hosts(url))
        assert len(first) == 1 and first[0].id in banner
        env = {"TRELLIS_NATS_URL": url}
        out = run_cli("start", "component", str(build_wat("adder")), "adder", env=env)
        assert out.returncode == 0 and "running" in out.stdout, out.stdout + out.stderr
        out = run_cli("get", "hosts", "-o", "json", env=env)
        hosts = json.loads(out.stdout) if out.returncode == 0 else []
        assert len(hosts) == 1 and hosts[0]["id"] in banner

        again = run_cli("up", "--state-dir", str(state), "--nats-port", str(port + 1), "--no-wadm")
        assert again.returncode != 0 and "already running" in again.stderr

        busy = run_cli("up", "--state-dir", str(tmp_path / "other"), "--nats-port", str(port), "--no-wadm")
        assert busy.returncode != 0 and "already in use" in busy.stderr

        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(30) == 0
        _read_until(up, "Trellis stopped.", 5)
        for c in children:
            assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE, c.cmdline()

        # the host keeps its identity across restarts (seed kept in the state dir)
        assert (state / "host.seed").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if up.stdout:
            up.stdout.close()


def test_up_gives_up_on_a_wadm_that_exits_or_never_answers(nats_server, lattice, tmp_path):
    """`trellis up` stops with one line saying why when its wadm dies while starting or stays silent."""
    settings = UpSettings(state_dir=tmp_path, nats_port=nats_server.port, lattice=lattice, wadm_ready_s=1.0)
    up = Up(settings, say=lambda _: None)
    dies = Child("wadm", [sys.executable, "-c", "print('error: wadm could not start: no JetStream'); exit(3)"],
                 tmp_path / "wadm.log")
    dies.start()
    with pytest.raises(UpError, match=r"^wadm exited with code 3 while starting: error: wadm could not start: "
                                      r"no JetStream \(see .*wadm.log\)$"):
        up._wait_wadm(dies)
    silent = Child("wadm", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "silent.log")
    silent.start()
    try:
        with pytest.raises(UpError, match=r"^wadm did not answer within 1s; stopping \(see .*silent.log; "
                                          r"--ready-timeout waits longer\)$"):
            up._wait_wadm(silent)
    finally:
        assert silent.proc is not None
        procs.stop(silent.proc, 1.0)


def test_once_up_the_process_becomes_the_lean_keeper_and_supervises_as_before(tmp_path):
    """trellis/upkeep.py: same pid, ~10 MiB instead of the CLI's ~39; a child that dies is restarted,
    the lock names it, SIGTERM stops everything."""
    port = _free_port()
    state = tmp_path / "state"
    argv = procs.trellis_argv("up", "--state-dir", str(state), "--nats-port", str(port), "--no-ui", "--no-wadm")
    up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                          env={**os.environ, "TRELLIS_WORKERS": "1"})
    try:
        _read_until(up, "Press Ctrl-C", 60)
        keeper = psutil.Process(up.pid)
        asyncio.run(eventually(lambda: any(a.endswith("upkeep.py") for a in keeper.cmdline()), 10,
                               what="the keeper"))
        # its state (nats-server's environment among it) is not on the command line `ps` shows everyone
        assert not any("GOMEMLIMIT" in a or "PATH" in a for a in keeper.cmdline()), keeper.cmdline()
        rollup = Path(f"/proc/{up.pid}/smaps_rollup").read_text().splitlines()
        pss = int(next(ln.split()[1] for ln in rollup if ln.startswith("Pss:")))
        assert pss < 20 * 1024, pss  # KiB: the whole CLI held ~39 MiB

        host = _child(keeper, "host", 5)
        host.kill()  # a child that dies is restarted, as before the hand-over
        out = _read_until(up, "host exited with -9; restarting in", 10)
        again = asyncio.run(eventually(lambda: next((c for c in keeper.children()
                                                     if "host" in c.cmdline() and c.pid != host.pid), None), 30,
                                       what="the host started again"))

        def locked() -> bool:  # the lock names it (the next run's check for leftovers)
            lock = json.loads((state / "up.lock").read_text() or "{}")
            return lock.get("pid") == up.pid and again.pid in [c["pid"] for c in lock.get("children", [])]

        asyncio.run(eventually(locked, 10, what="the lock to name the new host"))
        url = f"nats://127.0.0.1:{port}"
        asyncio.run(eventually(lambda: _hosts(url), 60, what="the restarted host to answer"))

        children = keeper.children(recursive=True)
        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(30) == 0
        assert "Trellis stopped." in out + _read_until(up, "Trellis stopped.", 5)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert (state / "up.lock").read_text() == ""
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if up.stdout:
            up.stdout.close()
