"""SIGKILL of `trellis up` leaves nothing behind, and the next `trellis up` on its state dir starts cleanly.

Its children (nats-server, host running wadm) and theirs (workers, providers) die with their parent
(Linux death signal, and a parent watch that bounds their stop); a leftover that did not (a
nats-server of an older run, found by its pid file in the state dir) is stopped by the next
run with one line saying so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.components.build import build_wat
from trellis.kit import procs
from trellis.natsserver import NatsServer
from trellis.up import port_free

from ..harness import run_cli, stop_process
from .test_up import _free_port, _read_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="death signals are Linux's")


def _start_up(state: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    argv = procs.trellis_argv("up", "--state-dir", str(state), "--nats-port", str(port), *extra)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            # the providers' own process (not the host's, the default): a grandchild to outlive it
                            env={**os.environ, "TRELLIS_WORKERS": "1", "TRELLIS_PROVIDERS_IN_HOST": "0"})


def _wait_for_host(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run_cli("get", "hosts", "-o", "json", env={"TRELLIS_NATS_URL": url})
        if out.returncode == 0 and json.loads(out.stdout):
            return
    raise AssertionError(f"no host answered on {url} within {timeout}s")


def _belongs_to(state: Path, port: int) -> list[str]:
    """Every live process whose command line names this run's state dir or NATS port."""
    marks = (str(state), f":{port}", f"-p {port} ")
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
                continue
            cmd = " ".join(p.info["cmdline"] or []) + " "
        except psutil.Error:
            continue
        if any(m in cmd for m in marks):
            found.append(f"{p.pid} {cmd[:120]}")
    return found


def test_sigkill_of_up_leaves_nothing_and_the_next_up_starts_cleanly(tmp_path):
    adder = build_wat("adder")
    port = _free_port()
    state = tmp_path / "state"
    url = f"nats://127.0.0.1:{port}"
    env = {"TRELLIS_NATS_URL": url}
    up = _start_up(state, port)
    try:
        _read_until(up, "Press Ctrl-C", 60)
        _wait_for_host(url)
        # a worker serving a component and a provider process: the grandchildren
        assert run_cli("start", "component", str(adder), "adder", env=env).returncode == 0
        r = run_cli("start", "provider", "builtin:keyvalue-nats", "kv", env=env)
        assert r.returncode == 0, r.stderr
        tree = psutil.Process(up.pid).children(recursive=True)
        kinds = " ".join(" ".join(p.cmdline()) for p in tree)
        assert all(k in kinds for k in ("nats-server", " host ", "trellis.host.workers")), kinds
        # the wadm controller runs in the host's process (trellis up's default): no process of its own
        assert "--with-wadm" in kinds and " wadm " not in kinds, kinds
        assert "providers.builtin.group" in kinds or "keyvalue_nats" in kinds, kinds  # the provider's process

        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        gone, alive = psutil.wait_procs(tree, timeout=5)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], \
            [" ".join(p.cmdline()[:5]) for p in alive]
        assert not _belongs_to(state, port)
        assert port_free("127.0.0.1", port)
    finally:
        stop_process(up)

    again = _start_up(state, port)
    try:
        banner = _read_until(again, "Press Ctrl-C", 60)
        assert "earlier trellis up" not in banner  # nothing was left to stop
        _wait_for_host(url)
        # the same lattice, its JetStream data kept: the component's artifact cache and the host's key
        assert (state / "host.seed").exists()
    finally:
        stop_process(again)
    assert not _belongs_to(state, port)


def test_a_leftover_nats_server_on_the_state_dir_is_stopped_with_one_line(tmp_path):
    """As an older run would leave it: a nats-server holding the port, known by its pid file."""
    port = _free_port()
    state = tmp_path / "state"
    (state / "nats").mkdir(parents=True)
    pid_file = state / "nats.pid"
    stray = NatsServer(port=port, store_dir=state / "nats", pid_file=pid_file).start()
    assert stray.proc is not None
    try:
        up = _start_up(state, port, "--no-wadm")
        try:
            out = _read_until(up, "Press Ctrl-C", 60)
            lines = [ln for ln in out.splitlines() if "earlier trellis up" in ln]
            assert lines == [f"Stopped what an earlier trellis up on {state} left running: "
                             f"nats-server (pid {stray.proc.pid})."], out
            assert stray.proc.wait(5) is not None
        finally:
            stop_process(up)
    finally:
        stray.kill()

    # a port held by something that is not ours is still refused, naming the port
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        busy = run_cli("up", "--state-dir", str(state), "--nats-port", str(port), "--no-wadm")
        assert busy.returncode != 0 and "already in use" in busy.stderr


def test_a_child_without_a_death_signal_still_goes_when_its_parent_is_killed() -> None:
    """The parent watch waits on the parent's pidfd (no polling): a parent SIGKILLed without
    having set a death signal on its child (a child started from a thread) still loses it."""
    child = ("import signal, sys; from trellis.kit.procs import exit_with_parent; "
             "exit_with_parent(grace_s=0.2); print('watching', flush=True); signal.pause()")
    parent = ("import os, subprocess, sys, signal; "
              f"c = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE); "
              "print(c.pid, c.stdout.readline().decode().strip(), flush=True); signal.pause()")
    p = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, procs.EXIT_WITH_PARENT_ENV: "1"})
    try:
        pid, state = p.stdout.readline().split()
        assert state == "watching"
        kid = psutil.Process(int(pid))
        assert kid.is_running()
        p.kill()
        p.wait(timeout=10)
        gone, alive = psutil.wait_procs([kid], timeout=10)
        assert not alive, "the child outlived its SIGKILLed parent"
    finally:
        p.kill()
        p.wait(timeout=10)
        p.stdout.close()
