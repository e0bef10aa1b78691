"""Several "machines" on one box: Linux network namespaces joined by veth to a bridge.

The bridge lives in a namespace of its own (the switch), so nothing touches the
machine's real network. Addresses come from 198.18.0.0/15 (reserved for
benchmarking), a /24 per harness; traffic only ever goes to those addresses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CI runs as root)"
    if not shutil.which("ip"):
        return "needs the 'ip' command (iproute2)"
    probe = f"trlprobe{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create network namespaces: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


@dataclass
class Machine:
    name: str
    ns: str
    address: str
    switch_port: str


@dataclass
class Network:
    machines: list[Machine] = field(default_factory=list)
    switch: str = ""

    @classmethod
    def create(cls, count: int) -> Network:
        tag = uuid.uuid4().hex[:5]
        subnet = 18 + int(tag[:2], 16) % 2, int(tag[2:4], 16)  # 198.18.x / 198.19.x
        net = cls(switch=f"trl{tag}sw")
        try:
            _ip("netns", "add", net.switch)
            _ip("link", "add", "br0", "type", "bridge", ns=net.switch)
            _ip("link", "set", "br0", "up", ns=net.switch)
            for i in range(count):
                ns = f"trl{tag}m{i}"
                a, b = f"t{tag}{i}a", f"t{tag}{i}b"
                addr = f"198.{subnet[0]}.{subnet[1]}.{i + 1}"
                _ip("netns", "add", ns)
                _ip("link", "add", a, "type", "veth", "peer", "name", b)
                _ip("link", "set", a, "netns", ns)
                _ip("link", "set", b, "netns", net.switch)
                _ip("link", "set", a, "name", "eth0", ns=ns)
                _ip("addr", "add", f"{addr}/24", "dev", "eth0", ns=ns)
                _ip("link", "set", "eth0", "up", ns=ns)
                _ip("link", "set", "lo", "up", ns=ns)
                _ip("link", "set", b, "master", "br0", ns=net.switch)
                _ip("link", "set", b, "up", ns=net.switch)
                net.machines.append(Machine(f"m{i}", ns, addr, b))
        except Exception:
            net.destroy()
            raise
        return net

    def cut(self, m: Machine) -> None:
        """Pull the machine's cable: its switch port goes down."""
        _ip("link", "set", m.switch_port, "down", ns=self.switch)

    def heal(self, m: Machine) -> None:
        _ip("link", "set", m.switch_port, "up", ns=self.switch)

    def destroy(self) -> None:
        for ns in [m.ns for m in self.machines] + [self.switch]:
            # anything still running inside goes with the namespace's processes
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
