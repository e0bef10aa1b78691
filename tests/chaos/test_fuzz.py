"""Scenario 6: bad input, fuzzed with hypothesis, sent straight to the subjects.

Control requests, RPC frames (to a component and to a provider), manifests and raw
wadm API requests, and events: truncated, oversized, wrong types, unknown versions
and operations. Every request is answered by an error (or ignored, where nobody
asked for an answer), no process dies (same pids at the end), and nothing stored is
corrupted (links, config, the deployed application and its placements unchanged).

The target lattice runs inside a machine namespace: a fuzzed image or provider
reference can reach nothing but the machine's own bridge.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cluster import Cluster, NetnsLoop, rss_bytes
from tests.components.build import build_wat
from tests.netns import netns_unavailable
from trellis.interfaces import subjects
from trellis.interfaces.control import CtlReply
from trellis.interfaces.envelope import Reply
from trellis.interfaces.links import Link
from trellis.interfaces.store import LatticeStore
from trellis.interfaces.wadm_client import WadmClient

from .apps import placements, spread_app, until
from .figures import record

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

ECHO = str(Path(__file__).resolve().parents[1] / "providers_host" / "echo_provider.py")
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
REPLY_WAIT_S = 3.0
_why = netns_unavailable()


@dataclass
class Target:
    """One host (a component, a provider), one controller with a deployed app, in one machine."""

    cluster: Cluster
    loop: NetnsLoop
    nc: Any = None
    host_id: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    link: Link | None = None

    def send(self, subject: str, payload: bytes, *, reply: bool = True) -> bytes | None:
        """Publish ``payload``; with ``reply``, the first answer (None if none in time)."""
        async def go() -> bytes | None:
            if not reply:
                await self.nc.publish(subject, payload)
                await self.nc.flush()
                return None
            try:
                msg = await self.nc.request(subject, payload, timeout=REPLY_WAIT_S)
            except Exception as exc:
                self.counts[f"unanswered:{exc.__class__.__name__}"] += 1
                return None
            return bytes(msg.data)

        return self.loop.run(go(), REPLY_WAIT_S + 5)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if _why:
        pytest.skip(_why)
    tmp = tmp_path_factory.mktemp("fuzz")
    cluster = Cluster.create(tmp, "fuzz" + str(int(time.time() * 1000))[-8:], machines=1)
    loop = cluster.loop()
    t = Target(cluster, loop)
    try:
        (host,) = cluster.start_hosts()
        cluster.start_controllers(1)
        adder = build_wat("adder")
        t.host_id = host.id

        async def setup() -> None:
            from trellis.interfaces.client import LatticeClient
            from trellis.interfaces.connection import NatsSettings, connect

            t.nc = await connect(NatsSettings(url=cluster.url), name="fuzzer")
            c = LatticeClient(lattice=cluster.lattice, nc=t.nc)
            await c.start_component(str(adder), "calc", host_id=host.id, max_instances=4)
            await c.start_provider(ECHO, "echo", host_id=host.id)
            store = LatticeStore(t.nc, cluster.lattice)
            t.link = Link(source_id="calc", target="echo", wit_namespace="test", wit_package="echo",
                          interfaces=["echo"])
            await store.put_link(t.link)
            await store.put_config("calc-cfg", {"a": "1"})
            wadm = WadmClient(c)
            await wadm.put(spread_app("kept", adder, 2, component="sum"))
            await wadm.deploy("kept")
            await until(lambda: _deployed(wadm), 60, "app kept deployed")

        loop.run(setup(), 120)
        t.pids = cluster.processes()
        yield t
    finally:
        if t.nc is not None:
            loop.run(t.nc.close(), 10)
        loop.close()
        cluster.destroy()


async def _deployed(wadm: WadmClient) -> bool:
    return (await wadm.status("kept")).status == "deployed"


# --- strategies ------------------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
            | st.text(max_size=40))
json_values = st.recursive(_scalars,
                           lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                           max_leaves=15)
msgpack_values = st.recursive(
    _scalars.filter(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**64) | st.binary(max_size=64),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10) | st.integers(0, 9), c, max_size=5),
    max_leaves=15)
#: strings that can never name a runnable provider or a reachable image outside the namespace
safe_text = st.text(max_size=60).filter(lambda s: not s.strip().startswith(("python:", "builtin:", "/", "file:", "~")))
oversized = st.integers(100_000, 900_000).map(lambda n: n)


def mutate(base: dict[str, Any], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with one field replaced by any value, removed, or an unknown one added."""
    keys = sorted(base)

    def build(draw_key: str, how: str, value: Any) -> dict[str, Any]:
        out = dict(base)
        if how == "replace":
            out[draw_key] = value
        elif how == "remove":
            out.pop(draw_key, None)
        else:
            out[f"x_{draw_key}"] = value
        return out

    return st.builds(build, st.sampled_from(keys), st.sampled_from(["replace", "remove", "add"]), values)


def framed(objects: st.SearchStrategy[Any], encode: Any) -> st.SearchStrategy[bytes]:
    """Encoded objects, sometimes truncated; plus raw bytes and oversized frames."""
    encoded = objects.map(encode)
    truncated = st.tuples(encoded, st.floats(0, 1)).map(lambda p: p[0][: int(len(p[0]) * p[1])])
    big = oversized.map(lambda n: encode({"junk": "a" * n}))
    return st.one_of(encoded, truncated, st.binary(max_size=512), big)


def _json(v: Any) -> bytes:
    return json.dumps(v).encode()


CONTROL_BASES: dict[tuple[str, str], dict[str, Any]] = {
    ("host", "inventory"): {},
    ("host", "label.put"): {"key": "k", "value": "v"},
    ("host", "label.del"): {"key": "k"},
    ("component", "start"): {"component_id": "fz", "image": "nope.wasm", "max_instances": 1},
    ("component", "scale"): {"component_id": "fz", "max_instances": 2},
    ("component", "update"): {"component_id": "fz", "image": "nope.wasm"},
    ("component", "stop"): {"component_id": "fz"},
    ("provider", "start"): {"provider_id": "fz", "image": "nope.py"},
    ("provider", "stop"): {"provider_id": "fz"},
}
_unknown_ops = st.tuples(st.sampled_from(["host", "component", "provider"]),
                        st.from_regex(r"\A[a-z]{1,8}(\.[a-z]{1,5})?\Z"))


@st.composite
def control_requests(draw: Any) -> tuple[str, str, bytes]:
    known = draw(st.sampled_from([*sorted(CONTROL_BASES), None]))  # mostly real operations
    area, op = known if known is not None else draw(_unknown_ops)
    base = CONTROL_BASES.get((area, op), {})
    values = json_values | safe_text
    body = draw(framed(mutate(base, values) if base else st.dictionaries(st.text(max_size=8), values), _json))
    payload = body
    # never a real target: fuzzed ids stay away from calc, echo and the app's component
    for real in (b'"calc"', b'"echo"', b'"kept-sum"'):
        payload = payload.replace(real, b'"fz"')
    return area, op, payload


def invocation_base(target: str, function: str, args: list[Any]) -> dict[str, Any]:
    return {"v": 1, "id": "fuzz", "source": "fuzzer", "target": target, "interface": "", "function": function,
            "args": args, "deadline_ms": int(time.time() * 1000) + 5000, "link": "default", "trace": {},
            "attempt": 1}


# --- the tests ---------------------------------------------------------------------------------

def _check_ctl_reply(data: bytes | None) -> CtlReply:
    assert data is not None, "a control request went unanswered"
    return CtlReply.model_validate_json(data)


@FUZZ
@given(req=control_requests())
def test_control_requests(target: Target, req: tuple[str, str, bytes]) -> None:
    area, op, payload = req
    if area == "host" and op == "stop":
        return  # a valid stop request stops the host: that is its job
    subject = {"host": subjects.host_op, "component": subjects.component_op,
               "provider": subjects.provider_op}[area](target.cluster.lattice, target.host_id, op)
    reply = _check_ctl_reply(target.send(subject, payload))
    target.counts[f"ctl:{'ok' if reply.success else reply.code}"] += 1


@st.composite
def rpc_frames(draw: Any) -> tuple[str, bytes]:
    to = draw(st.sampled_from(["calc", "echo"]))
    if to == "calc":
        function = draw(st.sampled_from(["add", "nope", ""]) | st.text(max_size=20))
        args: Any = draw(st.lists(msgpack_values, max_size=3) | st.just([1, 2]))
        base = invocation_base("calc", function, args)
    else:
        base = invocation_base("echo", "echo", [draw(st.text(max_size=30))])
        base["interface"] = draw(st.sampled_from(["test:echo/echo", "test:echo/nope", ""]) | st.text(max_size=20))
    values = msgpack_values | st.integers(-(2**63), 2**63 - 1)
    frame = draw(framed(mutate(base, values), lambda m: msgpack.packb(m, use_bin_type=True)))
    return to, frame


@FUZZ
@given(frame=rpc_frames())
def test_rpc_frames(target: Target, frame: tuple[str, bytes]) -> None:
    to, payload = frame
    data = target.send(subjects.rpc(target.cluster.lattice, to), payload)
    assert data is not None, "an RPC frame went unanswered"
    reply = Reply.decode(data)
    target.counts[f"rpc:{'ok' if reply.ok else reply.error.code if reply.error else 'progress'}"] += 1


def _manifest_dicts() -> st.SearchStrategy[Any]:
    good = yaml.safe_load(spread_app("fz", "nope.wasm", 1))

    def nested_mutation(path_choice: int, value: Any) -> Any:
        m = json.loads(json.dumps(good))
        node: Any = m
        paths: list[list[Any]] = [
            ["metadata"], ["spec"], ["spec", "components"], ["spec", "components", 0],
            ["spec", "components", 0, "properties"], ["spec", "components", 0, "traits", 0, "properties"],
            ["metadata", "annotations"]]
        path = paths[path_choice % 7]
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        return m

    valid = st.builds(lambda name, version,
                      n: yaml.safe_load(spread_app(name, "file:///nonexistent/x.wasm", n, version=version)),
                      st.from_regex(r"\Afz[a-z0-9]{1,8}\Z"), st.from_regex(r"\Av[0-9a-z.+\-]{0,12}\Z"),
                      st.integers(0, 10))
    return st.one_of(json_values, valid, st.builds(nested_mutation, st.integers(0, 6), json_values | safe_text))


@FUZZ
@given(doc=_manifest_dicts(), as_yaml=st.booleans(), raw=st.none() | st.binary(max_size=300) | oversized)
def test_manifests_and_wadm_api(target: Target, doc: Any, as_yaml: bool, raw: Any) -> None:
    if raw is None:
        text = yaml.safe_dump(doc) if as_yaml else json.dumps(doc)
        payload = _json({"manifest": text})
        op = "put"
    elif isinstance(raw, int):
        payload, op = _json({"manifest": "a: " + "b" * raw}), "put"
    else:
        payload, op = raw, ["put", "get", "status", "versions", "list", "deploy"][len(raw) % 6]
    if b"kept" in payload:
        return  # leave the deployed application alone
    reply = _check_ctl_reply(target.send(subjects.wadm_api(target.cluster.lattice, op), payload))
    target.counts[f"wadm:{'ok' if reply.success else reply.code}"] += 1


@FUZZ
@given(kind=st.sampled_from(["host_heartbeat", "host_started", "host_stopped", "component_scaled",
                             "provider_started", "provider_stopped", "linkdef_set", "config_set", "nope"]),
       body=framed(json_values | st.builds(lambda d: {"specversion": "1.0", "id": "x", "type": "host_heartbeat",
                                                      "source": "fz", "data": d}, json_values), _json))
def test_events(target: Target, kind: str, body: bytes) -> None:
    """Anyone may publish on an event subject; a malformed event must change nothing."""
    target.send(subjects.event(target.cluster.lattice, kind), body, reply=False)
    target.counts["events"] += 1


def test_zz_nothing_died_nothing_corrupted(target: Target) -> None:
    """Runs after the fuzzers (file order): the same processes, the same stored state."""
    now = target.cluster.processes()
    died = {k: v for k, v in target.pids.items() if now.get(k) != v}
    lattice = target.cluster.lattice

    async def state() -> dict[str, Any]:
        from trellis.interfaces.client import LatticeClient

        c = LatticeClient(lattice=lattice, nc=target.nc)
        store = LatticeStore(target.nc, lattice)
        wadm = WadmClient(c)
        st_ = await wadm.status("kept")
        return {
            "links": await store.list_links(),
            "config": await store.get_config("calc-cfg"),
            "status": st_.status,
            "placed": sum((await placements(c, "kept-sum")).values()),
            "calc": await c.call("calc", "add", 2, 3),
            "echo": await c.call("echo", "test:echo/echo.echo", "still here"),
        }

    got = target.loop.run(state(), 60)
    record("fuzz", requests=dict(sorted(target.counts.items())), processes=len(target.pids),
           died=sorted(died), rss_mb={k: round(v / 2**20, 1) for k, v in rss_bytes(now).items()})
    assert not died, f"processes died or were replaced: {died}\n{target.cluster.logs()}"
    assert got == {"links": [target.link], "config": {"a": "1"}, "status": "deployed", "placed": 2, "calc": 5,
                   "echo": "still here"}, got
    assert not [k for k in target.counts if k.startswith("unanswered")], target.counts
