"""One request is one trace across hosts: spans on every hop share the caller's trace id."""

from __future__ import annotations

import json
import secrets

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.interfaces.store import LatticeStore

from ..harness import eventually


def _spans(state_dirs) -> list[dict]:
    spans = []
    for d in state_dirs:
        for log in (d / "logs").glob("worker-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"trace_id"' in line:
                    try:
                        spans.append(json.loads(line))
                    except ValueError:
                        pass
    return spans


async def test_chain_is_one_trace(nats_server, lattice, hosts, wasm, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    made = [await hosts.start(labels={"role": r}) for r in ("a", "b", "c")]
    async with LatticeClient(nats_server.url, lattice) as c:
        store = LatticeStore(c.connection, lattice)
        await c.start_component(str(wasm["chain"]), "first", constraints={"role": "a"})
        await c.start_component(str(wasm["middle"]), "second", constraints={"role": "b"})
        await c.start_component(str(wasm["tail"]), "third", constraints={"role": "c"})
        await store.put_link(Link(source_id="first", target="second", wit_namespace="test",
                                  wit_package="chain", interfaces=["next"]))
        await store.put_link(Link(source_id="second", target="third", wit_namespace="test",
                                  wit_package="chain", interfaces=["runner"]))
        trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
        traceparent = f"00-{trace_id}-{root}-01"
        assert await c.rpc.call("first", "test:chain/runner.run", ["t"], trace={"traceparent": traceparent}) == "t"

    dirs = [h.settings.state_dir for h in made]

    def ours() -> list[dict]:
        found = [s for s in _spans(dirs) if s["context"]["trace_id"] == "0x" + trace_id]
        return found if len(found) >= 3 else []

    spans = await eventually(ours, 10, what="spans from all three hosts")
    by_name = {s["name"].split()[1]: s for s in spans}
    assert set(by_name) >= {"first", "second", "third"}
    assert by_name["first"]["parent_id"] == "0x" + root
    assert by_name["second"]["parent_id"] == by_name["first"]["context"]["span_id"]
    assert by_name["third"]["parent_id"] == by_name["second"]["context"]["span_id"]
