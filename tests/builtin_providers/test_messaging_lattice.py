"""Through builtin:messaging-nats on a lattice: one component publishes, another handles (and replies)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.harness import eventually
from tests.local_calls.test_colocated import stats
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.natsserver import NatsServer

from .harness_lattice import deploy


async def _taken(host) -> bool:
    try:
        return (await stats(host, "sub")).get("from_local_providers", 0) > 0
    except Exception:
        return False


def consumer(source: str) -> Link:
    return Link(source_id=source, target="msg", wit_namespace="wasmcloud", wit_package="messaging",
                interfaces=["consumer"])


class Wired:
    """``pub`` and ``sub`` linked to ``msg`` (sub subscribed to ``ROOT.>``), and what sub echoes
    on ``seen.<subject>`` in a queue."""

    def __init__(self, c: LatticeClient, root: str) -> None:
        self.c = c
        self.root = root
        self.seen: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def link(self) -> Wired:
        async def on_seen(msg) -> None:
            await self.seen.put((msg.subject, msg.data))

        c = self.c
        await c.nc.subscribe(f"seen.{self.root}.>", cb=on_seen)
        await c.put_config("sub-in", {"subscriptions": f"{self.root}.>", "handler_timeout_ms": "5000"})
        for source in ("pub", "sub"):
            await c.put_link(consumer(source))
        await c.put_link(Link(source_id="msg", target="sub", wit_namespace="wasmcloud", wit_package="messaging",
                              interfaces=["handler"], source_config=["sub-in"]))
        return self

    async def delivered(self, name: str) -> bool:
        """Publish on ROOT.name: whether sub handled it within half a second."""
        assert await self.c.call("pub", "send", f"{self.root}.{name}", b"?") == {"ok": None}
        try:
            await asyncio.wait_for(self.seen.get(), 0.5)
            return True
        except TimeoutError:
            return False

    def clear(self) -> None:
        while not self.seen.empty():
            self.seen.get_nowait()


@pytest.mark.parametrize("local", [True, False], ids=["local", "TRELLIS_LOCAL_PROVIDERS=0"])
async def test_a_message_published_by_one_component_is_handled_by_another(
        nats_server: NatsServer, lattice: str, hosts, tmp_path: Path, publisher: Path, subscriber: Path,
        monkeypatch: pytest.MonkeyPatch, local: bool) -> None:
    """The provider and both components on one host: the deliveries to ``sub`` come through its
    worker's socket (local_rpc), or over NATS with the switch off; the outcomes are the same."""
    monkeypatch.setenv("TRELLIS_LOCAL_PROVIDERS", "1" if local else "0")
    root = f"{lattice}.demo"  # the NATS server is shared by every test: subjects of this test's own
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [h.id], providers={"msg": "builtin:messaging-nats"},
                     components={"pub": publisher, "sub": subscriber})
        w = await Wired(c, root).link()
        seen = w.seen
        # the provider subscribes once it has seen the link
        await eventually(lambda: w.delivered("ready"), timeout=20, what="the subscriber to handle a message")
        w.clear()

        # publish → the provider delivers to sub → sub publishes on seen.<subject>
        assert await c.call("pub", "send", f"{root}.hello", b"hi there") == {"ok": None}
        assert await asyncio.wait_for(seen.get(), 10) == (f"seen.{root}.hello", b"hi there")

        # request → sub replies through its own consumer link → pub gets the reply
        assert await c.call("pub", "ask", f"{root}.shout", b"ping", 5000) == {"ok": b"PING"}
        assert await c.call("pub", "ask", f"{lattice}.nobody", b"ping", 300) == {
            "err": f"no responders on '{lattice}.nobody'"}

        # a handler that fails: logged by the provider, not redelivered
        assert await c.call("pub", "send", f"{root}.broken", b"fail") == {"ok": None}
        log = tmp_path / "host0" / "logs" / "provider-msg.log"
        await eventually(lambda: log.exists() and "not handled, dropped" in log.read_text(), what="the failure logged")
        assert f"refusing {root}.broken" in log.read_text()

        # the lattice's own subjects are off limits
        denied = await c.call("pub", "send", f"trellis.{lattice}.ctl.host.ping", b"{}")
        assert "reserved" in denied["err"], denied

        taken = (await stats(h, "sub"))["from_local_providers"]
        assert (taken >= 4) if local else (taken == 0), taken


async def test_deliveries_to_a_component_elsewhere_or_gone_go_over_nats(
        nats_server: NatsServer, lattice: str, hosts, publisher: Path, subscriber: Path) -> None:
    """``sub`` only on another host: delivered over NATS. Then ``sub`` also on the provider's
    host, whose worker is killed: the provider's calls there fail over to the other host."""
    root = f"{lattice}.away"
    a, b = await hosts.start(), await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [a.id], providers={"msg": "builtin:messaging-nats"})
        await deploy(c, [b.id], components={"pub": publisher, "sub": subscriber})
        w = await Wired(c, root).link()
        tries = (f"m{n}" for n in range(1000))
        await eventually(lambda: w.delivered(next(tries)), timeout=20, what="delivery to sub on the other host")
        assert (await stats(b, "sub"))["from_local_providers"] == 0

        async def through_a() -> bool:
            await w.delivered(next(tries))
            return await _taken(a)

        await c.start_component(str(subscriber), "sub", host_id=a.id)
        await eventually(through_a, timeout=20, what="a delivery through a's worker socket")
        for pid in a.components.pool.pids():
            os.kill(pid, signal.SIGKILL)
        w.clear()
        for n in range(5):  # every one is delivered: by b over NATS, or by a's restarted worker
            assert await c.call("pub", "send", f"{root}.after{n}", b"y") == {"ok": None}
        want = {f"seen.{root}.after{n}" for n in range(5)}
        got: set[str] = set()

        async def all_seen() -> None:  # a probe's late echo may come too: not counted
            while not want <= got:
                got.add((await w.seen.get())[0])

        await asyncio.wait_for(all_seen(), 20)


@pytest.mark.parametrize("subjects", ["trellis.>", ">"])
async def test_subscriptions_to_lattice_subjects_are_refused(
        nats_server: NatsServer, lattice: str, hosts, tmp_path: Path, subscriber: Path, subjects: str) -> None:
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await deploy(c, [h.id], providers={"msg": "builtin:messaging-nats"}, components={"sub": subscriber})
        await c.put_config("sub-in", {"subscriptions": subjects})
        await c.put_link(Link(source_id="msg", target="sub", wit_namespace="wasmcloud", wit_package="messaging",
                              interfaces=["handler"], source_config=["sub-in"]))
        log = tmp_path / "host0" / "logs" / "provider-msg.log"
        await eventually(lambda: log.exists() and "reserved on the lattice's NATS server" in log.read_text(),
                         what="the refusal logged")
