"""A three-node NATS cluster (JetStream) on 127.0.0.1, for what one nats-server cannot show.

No namespaces, no root: three real nats-servers on free ports of the loopback,
routed to each other, each tagged with its own name (``server_tags``), so a test can
place a stream on a chosen node and lose exactly the streams it wants to:

* with two of three nodes down, JetStream has no majority: every stream and the
  JetStream API answer ``503`` or nothing, as during a cluster's election, until a
  node comes back;
* a single-replica stream placed on a node (``placement=Placement(tags=[name])``) is
  unreadable while that node is down, while everything else carries on.

Each node keeps its store directory, so a node started again after a kill rejoins
with its data.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path

import nats

from trellis.natsserver import NatsServer

from ..harness import eventually


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalNode:
    name: str
    server: NatsServer

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start(timeout=30)

    def kill(self) -> None:
        self.server.kill()

    @property
    def running(self) -> bool:
        return self.server.running()


@dataclass
class LocalCluster:
    nodes: list[LocalNode] = field(default_factory=list)

    @classmethod
    def create(cls, tmp: Path, size: int = 3, *, start: int | None = None) -> LocalCluster:
        """``size`` nodes, ``start`` of them (all by default) started; the rest can be started later."""
        client_ports = [_free_port() for _ in range(size)]
        route_ports = [_free_port() for _ in range(size)]
        cl = cls()
        for i in range(size):
            d = tmp / f"n{i}"
            d.mkdir(parents=True, exist_ok=True)
            routes = ", ".join(f'"nats-route://127.0.0.1:{route_ports[j]}"' for j in range(size) if j != i)
            conf = d / "nats.conf"
            conf.write_text(
                f'server_name: "n{i}"\n'
                f'server_tags: ["n{i}"]\n'
                'jetstream { max_memory_store: 64MB, max_file_store: 1GB }\n'
                f'cluster {{ name: "local", listen: "127.0.0.1:{route_ports[i]}", routes: [{routes}] }}\n')
            server = NatsServer(port=client_ports[i], store_dir=d / "js", config_file=conf, log_file=d / "nats.log")
            cl.nodes.append(LocalNode(f"n{i}", server))
        try:
            for n in cl.nodes[:size if start is None else start]:
                n.start()
        except BaseException:
            cl.destroy()
            raise
        return cl

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    async def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Until JetStream answers through every running node (a meta leader is elected)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for n in self.nodes:
            if not n.running:
                continue
            nc = await nats.connect(n.url)

            async def answers() -> bool:  # awaited below, in this iteration
                try:
                    await nc.jetstream(timeout=1).account_info()  # noqa: B023 (awaited in this iteration)
                    return True
                except Exception:  # no meta leader yet
                    return False

            try:
                await eventually(answers, max(0.0, deadline - loop.time()), interval=0.2,
                                 what=f"JetStream through {n.name}")
            finally:
                await nc.close()

    def destroy(self) -> None:
        for n in self.nodes:
            n.kill()
