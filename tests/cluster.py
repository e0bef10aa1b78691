"""Several machines, one lattice: namespaces, a 3-node NATS cluster, hosts and controllers.

Built on :mod:`tests.netns`. Each machine is a network namespace with its own address
on one bridge. Machine *i* runs NATS node ``n<i>`` (routes to the others, JetStream;
every bucket Trellis makes is replicated on 3 nodes, ``TRELLIS_KV_REPLICAS=3``), and
may run a ``trellis host`` and a ``trellis wadm`` controller as real processes. One
more namespace, the *client* machine, runs nothing: the test's own calls come from
there, so cutting a machine off never cuts the test off. The test process itself never
joins the machines' network: :meth:`Cluster.run` runs a coroutine in a thread that has
entered the client namespace (``setns`` applies to one thread).

    cluster = Cluster.create(tmp_path, lattice)   # network + NATS cluster, JetStream ready
    cluster.start_hosts()                         # one host per machine, started in parallel
    cluster.start_controllers(2)                  # two controllers; one leads at a time
    figures = cluster.run(scenario(cluster))      # async code, inside the client machine
    cluster.destroy()                             # always; the `cluster` fixture does it

Every process logs to ``tmp/<name>.log``; :meth:`Cluster.logs` gives their tails for
failure messages. :meth:`destroy` kills every process and then the namespaces (with
anything still running inside, such as a provider a killed host left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import selectors
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.connection import NatsSettings, connect
from trellis.kit import procs
from trellis.natsserver import NatsServer

from .harness import COMPILE_CACHE, HostProcess, eventually
from .netns import Machine, Network

T = TypeVar("T")
CLIENT_PORT = 4222
ROUTE_PORT = 6222
REPLICAS = 3
_CLONE_NEWNET = 0x40000000


# --- processes ---------------------------------------------------------------------------

def _read_started(proc: subprocess.Popen[bytes], event: str, timeout: float, log: Path) -> dict[str, Any]:
    """The first JSON line on ``proc``'s stdout whose ``event`` is ``event``."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("event") == event:
                    return msg
    finally:
        sel.close()
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise AssertionError(f"no {event} within {timeout}s (exit {proc.poll()}):\n{tail}")


class ControllerProcess:
    """A real ``trellis wadm`` process (inside a machine's namespace, when given one)."""

    def __init__(self, machine: Machine | None, nats_url: str, lattice: str, log: Path, env: dict[str, str],
                 *args: str) -> None:
        self.machine = machine
        self.log = log
        argv = procs.trellis_argv("wadm", "--nats-url", nats_url, "--lattice", lattice, *args)
        if machine is not None:
            argv = ["ip", "netns", "exec", machine.ns, *argv]
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        self.id = ""

    def wait_started(self, timeout: float = 30.0) -> ControllerProcess:
        self.id = _read_started(self.proc, "wadm_started", timeout, self.log)["id"]
        return self

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the controller vanishes without giving up its lease."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def stop(self, grace: float = 10.0) -> int:
        code = procs.stop(self.proc, grace)
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        return code


@dataclass
class NatsNode:
    """One nats-server of the cluster, on its machine's address."""

    name: str
    machine: Machine
    dir: Path
    peers: list[str]
    server: NatsServer | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.machine.address}:{CLIENT_PORT}"

    def config(self) -> str:
        routes = ", ".join(f'"nats-route://{p}:{ROUTE_PORT}"' for p in self.peers)
        # Short pings on client and route connections: a pulled cable is noticed in
        # seconds, not the default 2 minutes x 2 (see docs/operations.md).
        conf = (
            f'server_name: "{self.name}"\n'
            'ping_interval: "1s"\nping_max: 3\nwrite_deadline: "2s"\n'
            'jetstream { max_memory_store: 64MB, max_file_store: 1GB }\n'
        )
        if self.peers:
            listen = f"{self.machine.address}:{ROUTE_PORT}"
            conf += f'cluster {{ name: "trellis", listen: "{listen}", routes: [{routes}] }}\n'
        return conf

    def start(self) -> NatsNode:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nats.conf"
        conf.write_text(self.config())
        self.server = NatsServer(host=self.machine.address, port=CLIENT_PORT, store_dir=self.dir / "js",
                                 server_name=self.name, config_file=conf, netns=self.machine.ns,
                                 log_file=self.dir.parent / f"{self.name}.log")
        self.server.start()
        return self

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.running()

    @property
    def pid(self) -> int | None:
        return self.server.proc.pid if self.server and self.server.proc and self.running else None

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


# --- running code inside a namespace -----------------------------------------------------

def _enter_netns(ns: str) -> None:
    """Move the calling thread (only) into network namespace ``ns``."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
    finally:
        os.close(fd)


class NetnsLoop:
    """An event loop running in a thread inside a namespace, for many short pieces of async code.

    ``run(coro)`` blocks until ``coro`` is done on that loop; ``close()`` ends the loop.
    """

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"netns-loop-{ns}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            _enter_netns(self.ns)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop).result(timeout + 5)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            self.run(cancel_rest(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


def run_in_netns(ns: str, coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coro`` to completion on an event loop in a thread inside ``ns``."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            _enter_netns(ns)
            box["value"] = asyncio.run(asyncio.wait_for(coro, timeout))
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=main, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join(timeout + 10)
    if thread.is_alive():
        raise AssertionError(f"code in namespace {ns} still running {timeout + 10}s after it started")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- the cluster -------------------------------------------------------------------------

@dataclass
class Cluster:
    network: Network
    lattice: str
    tmp: Path
    machines: list[Machine]
    client_machine: Machine
    nats: list[NatsNode] = field(default_factory=list)
    hosts: dict[str, HostProcess] = field(default_factory=dict)
    controllers: list[ControllerProcess] = field(default_factory=list)
    heartbeat_s: float = 1.0

    @classmethod
    def create(cls, tmp: Path, lattice: str, machines: int = 3, *, heartbeat_s: float = 1.0) -> Cluster:
        """The network (``machines`` + the client machine) and a NATS node on each machine.

        The first three machines run NATS (a cluster of three, or fewer when fewer machines).
        Returns once JetStream can create a bucket replicated on every node.
        """
        net = Network.create(machines + 1)
        cl = cls(net, lattice, tmp, net.machines[:machines], net.machines[machines], heartbeat_s=heartbeat_s)
        try:
            nodes = cl.machines[:3]
            for i, m in enumerate(nodes):
                cl.nats.append(NatsNode(f"n{i}", m, tmp / f"n{i}", [p.address for p in nodes if p is not m]))
            # every node must be up before any can elect a JetStream meta leader
            threads = [threading.Thread(target=_quietly, args=(n.start,)) for n in cl.nats]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            missing = [n.name for n in cl.nats if not n.running]
            assert not missing, f"NATS nodes did not start: {missing}\n{cl.logs()}"
            cl.run(cl._wait_jetstream(), timeout=60)
        except BaseException:
            cl.destroy()
            raise
        return cl

    # --- addresses and environment -------------------------------------------------

    @property
    def url(self) -> str:
        """Every NATS node, comma separated (what clients are given; nats-py picks one at random)."""
        return ",".join(n.url for n in self.nats)

    def local_url(self, machine: Machine) -> str:
        """What processes on ``machine`` are given: the machine's own NATS node (or all, when it has none).

        Like a host pointed at the NATS node beside it: the cluster tells the client of
        its other nodes (INFO ``connect_urls``), and it reconnects to them when its own dies.
        """
        return next((n.url for n in self.nats if n.machine is machine), self.url)

    def node(self, machine: Machine) -> NatsNode:
        return next(n for n in self.nats if n.machine is machine)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "TRELLIS_KV_REPLICAS": str(min(REPLICAS, len(self.nats))),
                "TRELLIS_LOG_LEVEL": "INFO", **extra}

    def machine(self, name: str) -> Machine:
        return next(m for m in self.machines if m.name == name)

    # --- hosts -------------------------------------------------------------------------

    def start_hosts(self, machines: list[Machine] | None = None, *args: str) -> list[HostProcess]:
        """A host on each machine (all by default), started side by side."""
        started = [self._spawn_host(m, *args) for m in (machines or self.machines)]
        for h in started:
            h.wait_started(60)
        return started

    def start_host(self, machine: Machine, *args: str) -> HostProcess:
        return self._spawn_host(machine, *args).wait_started(60)

    def _spawn_host(self, m: Machine, *args: str) -> HostProcess:
        old = self.hosts.get(m.name)
        assert old is None or old.proc.poll() is not None, f"a host already runs on {m.name}"
        state = self.tmp / f"host-{m.name}"
        state.mkdir(parents=True, exist_ok=True)
        compiled = state / "compiled"  # compiled code is keyed by digest: every host may share it
        if not compiled.exists():
            COMPILE_CACHE.mkdir(parents=True, exist_ok=True)
            compiled.symlink_to(COMPILE_CACHE, target_is_directory=True)
        h = HostProcess(self.local_url(m), self.lattice, "--label", f"machine={m.name}", "--workers", "1",
                        "--heartbeat-interval", str(self.heartbeat_s), "--state-dir", str(state),
                        "--seed-file", str(state / "seed"), "--stop-timeout", "5", *args,
                        netns=m.ns, log=self.tmp / f"host-{m.name}.log", env=self.env())
        self.hosts[m.name] = h
        return h

    def kill_host(self, machine: Machine) -> None:
        """SIGKILL the host and its worker processes (its process group), as a crash would."""
        self.hosts[machine.name].kill()

    def host_ids(self) -> dict[str, str]:
        """machine name → id of the host running there now."""
        return {n: h.id for n, h in self.hosts.items() if h.proc.poll() is None}

    # --- controllers -------------------------------------------------------------------

    def start_controllers(self, count: int = 2, *args: str) -> list[ControllerProcess]:
        """``count`` more controllers, on machines m0, m1, ... in turn, started one after another.

        One after another: two controllers starting together on a fresh cluster race to
        create the same replicated buckets, and the loser can time out (see the report in
        docs/reliability.md).
        """
        new = []
        for _ in range(count):
            i = len(self.controllers)
            m = self.machines[i % len(self.machines)]
            c = ControllerProcess(m, self.local_url(m), self.lattice, self.tmp / f"wadm-{i}.log", self.env(),
                                  "--lease-ttl", "3", "--tick", "1", *args)
            self.controllers.append(c)
            new.append(c.wait_started())
        return new

    # --- the network -------------------------------------------------------------------

    def cut(self, machine: Machine) -> None:
        self.network.cut(machine)

    def heal(self, machine: Machine) -> None:
        self.network.heal(machine)

    def pids_in(self, machine: Machine) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", machine.ns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    # --- code in the client machine ------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``coro`` inside the client machine (its own event loop, in a thread)."""
        return run_in_netns(self.client_machine.ns, coro, timeout)

    def loop(self) -> NetnsLoop:
        """A lasting event loop inside the client machine (close it when done)."""
        return NetnsLoop(self.client_machine.ns)

    @contextlib.asynccontextmanager
    async def client(self, via: Machine | None = None, timeout_s: float = 5.0) -> AsyncIterator[LatticeClient]:
        """A lattice client that reconnects for as long as it lives (use inside :meth:`run`).

        ``via``: connect to that machine's NATS node (then to the others the cluster names,
        when it dies); by default to any node. Who serves a call does not depend on it: NATS
        spreads a queue group's messages over its members on every node.
        """
        url = self.local_url(via) if via is not None else self.url
        nc = await connect(NatsSettings(url=url), name="trellis-chaos-client")
        try:
            yield LatticeClient(lattice=self.lattice, nc=nc, timeout_s=timeout_s)
        finally:
            await nc.close()

    async def _wait_jetstream(self, timeout: float = 45.0) -> None:
        """Until an R3 bucket can be made (meta leader elected, every node a peer)."""
        from nats.js.api import KeyValueConfig

        nc = await connect(NatsSettings(url=self.url), name="trellis-cluster-probe")
        js = nc.jetstream(timeout=2)
        last: list[BaseException] = []

        async def r3_bucket() -> bool:
            try:
                await js.create_key_value(KeyValueConfig(bucket="TRELLIS_probe", replicas=len(self.nats)))
                await js.delete_key_value("TRELLIS_probe")
                return True
            except Exception as exc:  # not yet: no meta leader, or peers still joining
                last[:] = [exc]
                return False

        try:
            await eventually(r3_bucket, timeout, interval=0.2, what="JetStream to make an R3 bucket")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last[0] if last else None!r}\n{self.logs()}") from None
        finally:
            await nc.close()

    # --- what runs ---------------------------------------------------------------------

    def processes(self) -> dict[str, int]:
        """name → pid of every process of the cluster alive now (hosts' children included)."""
        out: dict[str, int] = {}
        for n in self.nats:
            if n.pid:
                out[f"nats-{n.name}"] = n.pid
        for name, h in self.hosts.items():
            if h.proc.poll() is None:
                out[f"host-{name}"] = h.proc.pid
                with contextlib.suppress(psutil.Error):
                    for child in psutil.Process(h.proc.pid).children(recursive=True):
                        out[f"host-{name}/{_short_cmd(child)}-{child.pid}"] = child.pid
        for i, c in enumerate(self.controllers):
            if c.alive:
                out[f"wadm-{i}"] = c.proc.pid
        return out

    def logs(self, tail: int = 1500) -> str:
        parts = []
        for log in sorted(self.tmp.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # --- teardown ------------------------------------------------------------------------

    def destroy(self) -> None:
        """Kill everything and remove the namespaces; safe to call twice and after failures."""
        for c in self.controllers:
            with contextlib.suppress(Exception):
                c.kill()
        for h in self.hosts.values():
            with contextlib.suppress(Exception):
                h.kill()
        for n in self.nats:
            with contextlib.suppress(Exception):
                n.kill()
        self.network.destroy()


def _quietly(fn: Any) -> None:
    """Run ``fn`` in a thread; its failure shows as the caller's check, not a thread warning."""
    with contextlib.suppress(Exception):
        fn()


def _short_cmd(p: psutil.Process) -> str:
    cmd = p.cmdline()
    for part in reversed(cmd):
        if part.startswith(("trellis.host.", "trellis.providers.")):  # python -m MODULE
            return part
        if part.endswith(".py"):
            return Path(part).stem
    return Path(cmd[0]).name if cmd else "?"


def rss_bytes(pids: dict[str, int]) -> dict[str, int]:
    """Resident memory of each process that is still alive."""
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            out[name] = psutil.Process(pid).memory_info().rss
    return out


def main(argv: list[str] | None = None) -> int:
    """By hand: ``sudo python -m tests.cluster [--machines 3] [--controllers 2]``, Ctrl-C ends it."""
    import argparse
    import signal as _signal
    import tempfile
    import uuid

    from .netns import netns_unavailable

    p = argparse.ArgumentParser(description="A Trellis lattice on network-namespace machines (needs root)")
    p.add_argument("--machines", type=int, default=3)
    p.add_argument("--controllers", type=int, default=2)
    p.add_argument("--lattice", default="default")
    args = p.parse_args(argv)
    why = netns_unavailable()
    if why:
        print(f"cannot run: {why}")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="trellis-cluster-"))
    cl = Cluster.create(tmp, args.lattice or f"t{uuid.uuid4().hex[:8]}", machines=args.machines)
    try:
        cl.start_hosts()
        cl.start_controllers(args.controllers)
        c = cl.client_machine
        print(f"lattice {cl.lattice!r} on {len(cl.machines)} machines; logs in {tmp}")
        for m in cl.machines:
            print(f"  {m.name}: namespace {m.ns}, address {m.address}, host {cl.hosts[m.name].id}")
        print(f"try:  sudo ip netns exec {c.ns} trellis get hosts --nats-url {cl.url} --lattice {cl.lattice}")
        print(f"cut:  sudo ip -n {cl.network.switch} link set {cl.machines[-1].switch_port} down   (up to heal)")
        print("Ctrl-C stops everything", flush=True)
        stop = {_signal.SIGINT, _signal.SIGTERM}
        _signal.pthread_sigmask(_signal.SIG_BLOCK, stop)
        _signal.sigwait(stop)
    finally:
        for sig in (_signal.SIGINT, _signal.SIGTERM):  # a second Ctrl-C must not cut teardown short
            _signal.signal(sig, _signal.SIG_IGN)
        cl.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
