"""A component's calls to a provider on its own host go over the provider's socket, not NATS
(trellis/samehost/local_rpc.py): same results and errors; NATS when the provider is elsewhere or gone."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.store import LatticeStore

from ..harness import eventually
from ..local_calls.test_colocated import stats
from .test_capability_calls import KV, kvclient  # noqa: F401  (fixture)


async def _link(c: LatticeClient, target: str = "kvmem") -> None:
    await LatticeStore(c.connection, c.lattice).put_link(Link(
        source_id="kvclient", target=target, wit_namespace="test", wit_package="kv", interfaces=["store"]))


async def _direct(host) -> int:
    return (await stats(host, "kvclient")).get("provider_calls", {}).get("direct", 0)


# a host id is 56 characters: with a long provider id the socket's name needs its digest form
LONG_ID = "a-key-value-provider-whose-id-is-long-enough-to-overflow-sun-path"


@pytest.mark.parametrize("on,provider", [(True, "kvmem"), (True, LONG_ID), (False, "kvmem")],
                         ids=["local", "local, long provider id", "TRELLIS_LOCAL_PROVIDERS=0"])
async def test_calls_to_a_provider_on_the_same_host(nats_server, lattice, hosts, kvclient, monkeypatch, on, provider):  # noqa: F811 (pytest fixtures imported by name)
    monkeypatch.setenv("TRELLIS_LOCAL_PROVIDERS", "1" if on else "0")
    h = await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_provider(KV, provider, host_id=h.id)
        await c.start_component(str(kvclient), "kvclient", host_id=h.id, max_instances=4)
        await _link(c, provider)
        # resources, results and typed errors as over NATS (test_capability_calls.py)
        assert await c.call("kvclient", "lookup", "b", "k") == {"ok": None}
        assert await c.call("kvclient", "copy", "b", "k", "k2") == {"err": "no key 'k'"}
        await c.call(provider, "test:kv/store.bucket.set", "b", "k", "v")
        assert await c.call("kvclient", "copy", "b", "k", "k2") == {"ok": "v"}
        assert await c.call("kvclient", "lookup", "b", "k2") == {"ok": "v"}
        assert await c.call("kvclient", "lookup", "forbidden", "k") == {"err": "AccessDenied"}
        # several at once: one connection per Wasm thread
        got = await asyncio.gather(*(c.call("kvclient", "lookup", "b", "k") for _ in range(8)))
        assert got == [{"ok": "v"}] * 8
        direct = await _direct(h)
    # lookup: open + get; copy: open + get (+ set)
    assert (direct >= 20) if on else (direct == 0), direct


async def test_a_provider_elsewhere_is_called_over_nats(nats_server, lattice, hosts, kvclient):  # noqa: F811 (pytest fixtures imported by name)
    a, b = await hosts.start(workers=1), await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_provider(KV, "kvmem", host_id=b.id)
        await c.start_component(str(kvclient), "kvclient", host_id=a.id)
        await _link(c)
        for _ in range(3):
            assert await c.call("kvclient", "lookup", "b", "k") == {"ok": None}
        assert await _direct(a) == 0


@pytest.mark.parametrize("how", ["stopped", "killed"])
async def test_calls_go_over_nats_when_the_local_provider_goes(nats_server, lattice, hosts, kvclient, how):  # noqa: F811 (pytest fixtures imported by name)
    a, b = await hosts.start(workers=1), await hosts.start(workers=1)
    async with LatticeClient(nats_server.url, lattice) as c:
        for h in (a, b):  # one instance here, one on another host
            await c.start_provider(KV, "kvmem", host_id=h.id)
        await c.start_component(str(kvclient), "kvclient", host_id=a.id)
        await _link(c)
        assert await c.call("kvclient", "lookup", "b", "k") == {"ok": None}
        before = await _direct(a)
        assert before == 2
        if how == "stopped":
            await c.stop_provider("kvmem", host_id=a.id)
        else:
            pid = a.providers.running["kvmem"].proc.pid
            os.kill(pid, signal.SIGKILL)
            await eventually(lambda: _gone(pid), 10, what="the provider process to die")
        # every call is answered, by the instance on the other host
        for _ in range(5):
            assert await c.call("kvclient", "lookup", "b", "k") == {"ok": None}
        assert await _direct(a) == before


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie until the host reaps it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
