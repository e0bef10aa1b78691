"""Attacks on the policy hook: what the policy service denies must not happen.

The sample service (examples/policy-service) runs as a real process with an allow-list;
hosts and wadm ask it; requests go through the real `trellis` command line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.components.build import build_wat
from tests.wadm_e2e.conftest import Controllers
from tests.wadm_e2e.helpers import component_app
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.policy import PolicySettings

from ..harness import eventually

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "examples" / "policy-service" / "policy_service.py"


class PolicyService:
    """The sample policy service as a child process; its decisions go to a log file."""

    def __init__(self, nats_url: str, subject: str, policy: Path) -> None:
        self.log = policy.with_suffix(".decisions.log")
        with open(self.log, "wb") as out:  # a file, not a pipe nobody drains
            self.proc = subprocess.Popen([sys.executable, str(SERVICE), "--policy", str(policy), "--subject", subject,
                                          "--nats-url", nats_url], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "policy_service_ready" not in self.log.read_text():
            assert self.proc.poll() is None, f"policy service exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"policy service not ready: {self.log.read_text()}"
            time.sleep(0.05)  # polling a file for a condition, with a deadline

    def decisions(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith('{"requestId"')]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    return tmp_path / "policy.yaml"


@pytest.fixture
def service(nats_server, lattice, policy_file):
    adder_dir = build_wat("adder").parent
    policy_file.write_text(textwrap.dedent(f"""
        components: ["file://{adder_dir}/adder-*.wasm", "file://*/allowed/*.wasm", "lattice://*"]
        providers: ["builtin:*"]
        links:
          - source: "*"
            target: "allowed-*"
        control: ["component.scale", "component.stop", "wadm.put", "wadm.deploy", "wadm.undeploy"]
    """))
    svc = PolicyService(nats_server.url, f"policy-{lattice}", policy_file)
    yield svc
    svc.stop()


def _policy(lattice: str, **kw) -> PolicySettings:
    return PolicySettings(subject=f"policy-{lattice}", **kw)


async def _cli(cli, *args: str):
    out = await asyncio.to_thread(cli, *args)
    out.stderr = " ".join(out.stderr.split())  # the CLI wraps long messages at the terminal's width
    return out


async def test_denied_control_requests_do_not_happen(nats_server, lattice, hosts, cli, service, tmp_path):
    h = await hosts.start(policy=_policy(lattice), allow_python_providers=("json.tool",))
    adder = build_wat("adder")
    out = await _cli(cli, "start", "component", str(adder), "calc", "--host-id", h.id)
    assert out.returncode == 0, out.stderr  # allowed by the image list

    # not in the allow-list: label changes and stopping the host are refused, with the reason
    out = await _cli(cli, "label", "put", h.id, "zone=evil")
    assert out.returncode != 0 and "denied by policy" in out.stderr and "host.label.put" in out.stderr, out.stderr
    out = await _cli(cli, "stop", "host", h.id)
    assert out.returncode != 0 and "denied by policy" in out.stderr, out.stderr
    async with LatticeClient(nats_server.url, lattice) as c:
        inv = await c.get_inventory(h.id)  # read-only requests are not asked about
        assert "zone" not in inv.labels
        assert await c.call("calc", "add", 1, 2) == 3  # the host still serves
    # allowed: scaling
    out = await _cli(cli, "scale", "component", "calc", "--max-instances", "2")
    assert out.returncode == 0, out.stderr
    asked = [(d["kind"], d["permitted"]) for d in service.decisions()]
    assert asked[:4] == [("startComponent", True), ("control", False), ("control", False), ("control", True)], asked

    # a component the allow-list does not name does not start, and the CLI says why
    other = tmp_path / "elsewhere.wasm"
    other.write_bytes(adder.read_bytes())
    out = await _cli(cli, "start", "component", str(other), "rogue", "--host-id", h.id, "--wait-timeout", "20")
    assert out.returncode != 0 and "denied by policy" in out.stderr and "not in the allowed components" in out.stderr
    # providers: python modules and files outside the list are denied even where the host allows them
    out = await _cli(cli, "start", "provider", str(REPO / "tests" / "providers_host" / "echo_provider.py"), "echo",
                     "--host-id", h.id)
    assert out.returncode != 0 and "not in the allowed providers" in out.stderr, out.stderr
    out = await _cli(cli, "start", "provider", "python:json.tool", "tool", "--host-id", h.id)
    assert out.returncode != 0 and "python:json.tool is not in python_modules" in out.stderr, out.stderr


async def test_denied_links_are_not_used(nats_server, lattice, hosts, cli, service, policy_file):
    """A link the policy refuses is not followed by the host's workers; the call says why; a link
    the policy revokes later stops being followed."""
    h = await hosts.start(policy=_policy(lattice))
    for cid, wasm in (("front", build_wat("middle")), ("allowed-tail", build_wat("tail")),
                      ("sneaky-tail", build_wat("tail"))):
        (h.settings.state_dir / "allowed").mkdir(parents=True, exist_ok=True)
        dest = h.settings.state_dir / "allowed" / f"{cid}.wasm"
        dest.write_bytes(wasm.read_bytes())
        out = await _cli(cli, "start", "component", str(dest), cid, "--host-id", h.id)
        assert out.returncode == 0, out.stderr
    async with LatticeClient(nats_server.url, lattice) as c:
        probe = ["test", "chain", "--interface", "runner"]  # middle imports runner; tail exports it
        out = await _cli(cli, "link", "put", "front", "sneaky-tail", *probe)
        assert out.returncode == 0, out.stderr  # the link store takes it; the hosts refuse to use it
        err = await eventually(lambda: _call_error(c), 20, what="denied link reported")
        assert "denied by policy" in err and "sneaky-tail" in err, err
        await _cli(cli, "link", "del", "front", *probe[:2])
        out = await _cli(cli, "link", "put", "front", "allowed-tail", *probe)
        assert out.returncode == 0, out.stderr
        await eventually(lambda: _call_ok(c), 20, what="allowed link used")

        # the operator revokes it: the service announces the change, the workers ask again
        policy_file.write_text(policy_file.read_text().replace('target: "allowed-*"', 'target: "nobody-*"'))
        err = await eventually(lambda: _call_error(c), 20, what="revoked link refused")
        assert "denied by policy" in err and "allowed-tail" in err, err
        assert any(line.startswith('{"event": "policy_changed"') for line in service.log.read_text().splitlines())


async def _call_error(c: LatticeClient) -> str:
    try:
        await c.call("front", "test:chain/next.call", "hi", timeout_s=5)
    except Exception as exc:
        return str(exc) if "policy" in str(exc) else ""
    return ""


async def _call_ok(c: LatticeClient) -> bool:
    try:
        await c.call("front", "test:chain/next.call", "hi", timeout_s=5)
        return True
    except Exception:
        return False


async def test_no_answer_falls_back_to_the_default(nats_server, lattice, hosts, cli, tmp_path):
    """Nobody answers on the subject: deny (the default), or allow when configured so."""
    adder = build_wat("adder")
    strict = await hosts.start(policy=_policy(lattice, timeout_s=0.3))
    out = await _cli(cli, "start", "component", str(adder), "c1", "--host-id", strict.id, "--wait-timeout", "20")
    assert out.returncode != 0 and "no answer within 0.3s; default is deny" in out.stderr, out.stderr
    out = await _cli(cli, "label", "put", strict.id, "a=b")
    assert out.returncode != 0 and "default is deny" in out.stderr
    lenient = await hosts.start(policy=_policy(lattice, timeout_s=0.3, default="allow"))
    out = await _cli(cli, "start", "component", str(adder), "c2", "--host-id", lenient.id)
    assert out.returncode == 0, out.stderr


async def test_wadm_asks_before_changing_apps(nats_server, lattice, hosts, cli, service, policy_file, tmp_path):
    await hosts.start(policy=_policy(lattice))
    controllers = Controllers(nats_server.url, lattice)
    try:
        await controllers.start(policy=_policy(lattice))
        (tmp_path / "allowed").mkdir()
        (tmp_path / "allowed" / "adder.wasm").write_bytes(build_wat("adder").read_bytes())
        manifest = tmp_path / "app.yaml"
        manifest.write_text(component_app("shop", "./allowed/adder.wasm", instances=1))
        out = await _cli(cli, "app", "deploy", str(manifest), "--wait")
        assert out.returncode == 0, out.stdout + out.stderr
        out = await _cli(cli, "app", "delete", "shop")
        assert out.returncode != 0 and "denied by policy" in out.stderr and "wadm.delete" in out.stderr, out.stderr
        out = await _cli(cli, "app", "list", "-o", "json")
        listed = json.loads(out.stdout)
        apps = listed["apps"] if isinstance(listed, dict) else listed
        assert [a["name"] for a in apps] == ["shop"]
    finally:
        await controllers.close()
