"""Several machines (network namespaces): one lattice across them; a cut cable shows."""

from __future__ import annotations

import json
import time

import pytest

from trellis.natsserver import NatsServer

from ..harness import HostProcess, run_cli
from ..netns import Network, netns_unavailable

pytestmark = pytest.mark.netns
_why = netns_unavailable()


@pytest.fixture
def network():
    if _why:
        pytest.skip(_why)
    net = Network.create(3)
    yield net
    net.destroy()


def _hosts(nats_url: str, lattice: str, netns: str) -> list[dict]:
    out = run_cli("get", "hosts", "-o", "json", "--timeout", "0.5", "--nats-url", nats_url,
                  "--lattice", lattice, netns=netns)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _wait_hosts(nats_url, lattice, netns, want: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = {h["id"] for h in _hosts(nats_url, lattice, netns)}
        if seen == want:
            return
    raise AssertionError(f"hosts seen {seen}, wanted {want}")


def test_hosts_on_three_machines_form_one_lattice(network, lattice, tmp_path):
    nats_m, m1, m2 = network.machines
    server = NatsServer(host=nats_m.address, port=4222, store_dir=tmp_path / "nats", netns=nats_m.ns,
                        log_file=tmp_path / "nats.log")
    server.start()
    url = f"nats://{nats_m.address}:4222"
    procs: list[HostProcess] = []
    try:
        for m in (m1, m2):
            procs.append(HostProcess(url, lattice, "--label", f"machine={m.name}", "--heartbeat-interval", "0.5",
                                     netns=m.ns, log=tmp_path / f"{m.name}.log").wait_started())
        _wait_hosts(url, lattice, nats_m.ns, {p.id for p in procs})
        listed = {h["labels"]["machine"]: h for h in _hosts(url, lattice, m1.ns)}
        assert set(listed) == {"m1", "m2"}

        network.cut(m2)  # the cable of machine 2 is pulled
        _wait_hosts(url, lattice, nats_m.ns, {procs[0].id}, timeout=10)
        network.heal(m2)  # it comes back and rejoins by itself
        _wait_hosts(url, lattice, nats_m.ns, {p.id for p in procs}, timeout=30)
    finally:
        for p in procs:
            p.kill()
        server.stop()
