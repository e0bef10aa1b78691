"""Components on hosts: start/scale/stop/update, calls across hosts, limits, busy, reuse, failover."""

from __future__ import annotations

import asyncio
import http.server
import json
from typing import Any

import pytest

from trellis.interfaces.client import ControlError, LatticeClient
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError

from ..harness import HostProcess, eventually


async def test_component_on_host_b_called_from_elsewhere(nats_server, lattice, hosts, wasm):
    a = await hosts.start(labels={"role": "front"})
    b = await hosts.start(labels={"role": "back"})
    async with LatticeClient(nats_server.url, lattice) as c:
        out = await c.start_component(str(wasm["adder"]), "adder", max_instances=2, constraints={"role": "back"})
        assert out["host_id"] == b.id and out["max_instances"] == 2
        assert await c.call("adder", "add", 2, 40) == 42
        inv = await c.get_inventory(b.id)
        assert [x.id for x in inv.components] == ["adder"]
        assert (await c.get_inventory(a.id)).components == []

        await c.scale_component("adder", 3)
        assert (await c.get_inventory(b.id)).components[0].max_instances == 3
        await c.stop_component("adder")
        assert (await c.get_inventory(b.id)).components == []
        with pytest.raises(RpcError) as err:
            await c.call("adder", "add", 1, 1, timeout_s=0.5)
        assert err.value.code == ErrorCode.TIMEOUT and "nobody serves" in err.value.message


async def test_start_failures_are_reported(nats_server, lattice, hosts, tmp_path):
    await hosts.start()
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"not wasm at all")
    async with LatticeClient(nats_server.url, lattice) as c:
        with pytest.raises(ControlError) as err:
            await c.start_component(str(bad), "bad")
        assert "not a WebAssembly binary" in err.value.message
        with pytest.raises(ControlError) as err:
            await c.start_component(str(tmp_path / "missing.wasm"), "gone")
        assert "cannot read" in err.value.message
        with pytest.raises(ControlError) as err:
            await c.start_component("x.wasm", "bad id!")
        assert err.value.code == ErrorCode.BAD_REQUEST and "component_id" in err.value.message
        with pytest.raises(ControlError) as err:
            await c.start_component("x.wasm", "c", constraints={"zone": "mars"})
        assert "no host" in err.value.message and "zone=mars" in err.value.message


async def test_hostile_components_fail_their_own_calls(nats_server, lattice, hosts, wasm):
    await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["hostile"]), "hostile", max_instances=4,
                                limits={"timeout_s": 0.5, "memory_bytes": 16 * 1024 * 1024})
        await c.start_component(str(wasm["adder"]), "adder")
        for fn, kind in (("spin", "timeout"), ("bomb", "trap"), ("boom", "trap"), ("recurse", "stack_overflow")):
            args = [100_000_000] if fn == "recurse" else []
            with pytest.raises(RpcError) as err:
                await c.call("hostile", fn, *args, timeout_s=10)
            assert err.value.kind in (kind, "out_of_memory", "trap"), (fn, err.value.kind, err.value.message)
            # neighbours and the component itself keep serving
            assert await c.call("adder", "add", 1, 2) == 3
            assert await c.call("hostile", "ok") == 42


async def test_busy_when_queue_is_full(nats_server, lattice, hosts, wasm):
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["hostile"]), "hostile", max_instances=1, limits={"timeout_s": 1.0})
        # occupy the only instance (each spin runs 1 s: time for the rest to arrive, even under load),
        # fill the queue (16 places), then one more is refused
        spinners = [asyncio.create_task(c.call("hostile", "spin", timeout_s=30)) for _ in range(17)]
        await eventually(lambda: c.rpc.stats["attempts"] >= 17, 5, what="spinners sent")
        with pytest.raises(RpcError) as err:
            await c.call("hostile", "ok", timeout_s=0.2)
        assert "busy" in err.value.message, err.value.message
        stats_ok = c.rpc.stats["busy"] >= 1
        for t in spinners:
            with pytest.raises(RpcError):
                await t
        assert stats_ok
        assert await c.call("hostile", "ok") == 42
    del h


async def test_fresh_instances_by_default_and_opt_in_reuse(nats_server, lattice, hosts, wasm):
    await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["hostile"]), "fresh")
        assert [await c.call("fresh", "counter") for _ in range(3)] == [1, 1, 1]
        await c.start_component(str(wasm["hostile"]), "reused", reuse={"max_invocations": 3})
        assert [await c.call("reused", "counter") for _ in range(4)] == [1, 2, 3, 1]


async def test_update_component_rolls_over(nats_server, lattice, hosts, wasm):
    h = await hosts.start()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(str(wasm["adder"]), "svc")
        assert await c.call("svc", "add", 1, 1) == 2
        await c.update_component("svc", "file://" + str(wasm["hostile"]))
        assert await c.call("svc", "ok") == 42
        inv = await c.get_inventory(h.id)
        assert inv.components[0].image.endswith(wasm["hostile"].name) and inv.components[0].revision == 1


async def test_push_to_lattice_store_and_start_by_digest(nats_server, lattice, hosts, wasm, cli):
    await hosts.start()

    def run(*args: str):  # the CLI runs while this loop keeps serving the in-process host
        return asyncio.to_thread(cli, *args)

    out = await run("push", str(wasm["adder"]))
    assert out.returncode == 0, out.stderr
    ref = out.stdout.strip()
    assert ref.startswith("lattice://sha256:")
    started = await run("start", "component", ref, "pushed")
    assert started.returncode == 0, started.stderr
    called = await run("call", "pushed", "add", "[20, 22]")
    assert called.returncode == 0 and json.loads(called.stdout) == 42
    wrong = await run("start", "component", "lattice://sha256:" + "0" * 64, "nope")
    assert wrong.returncode != 0 and "not in lattice" in wrong.stderr
    # the store may drop it now: a host that fetched it keeps it on its own disk, by digest
    import nats

    from trellis.interfaces import subjects
    from trellis.interfaces.artifacts import object_name

    nc = await nats.connect(nats_server.url)
    try:
        store = await nc.jetstream().object_store(subjects.bucket(lattice, "artifacts"))
        await store.delete(object_name(ref.removeprefix("lattice://")))
    finally:
        await nc.close()
    async with LatticeClient(nats_server.url, lattice) as c:
        await c.start_component(ref, "pushed-again")
        assert await c.call("pushed-again", "add", 1, 2) == 3


def test_cli_call_errors_and_load_summary(nats_server, lattice, cli, tmp_path, wasm):
    host = HostProcess(nats_server.url, lattice, "--state-dir", str(tmp_path / "h")).wait_started()
    try:
        assert cli("start", "component", str(wasm["adder"]), "adder", "--max-instances", "4").returncode == 0
        bad = cli("call", "adder", "add", "[1, \"x\"]")
        assert bad.returncode == 1 and "expected u32" in bad.stderr
        notjson = cli("call", "adder", "add", "{oops")
        assert notjson.returncode != 0 and "JSON array" in notjson.stderr
        # nothing runs "addr": said after a short look, not at the end of the 120 s deadline
        typo = cli("call", "addr", "add", "[1, 2]", "--timeout", "120", timeout=60)
        assert typo.returncode == 1 and "nothing on lattice" in typo.stderr and "'addr'" in typo.stderr, typo.stderr
        load = cli("call", "adder", "add", "[1, 2]", "--repeat", "200", "--concurrency", "8")
        assert load.returncode == 0, load.stderr
        summary = json.loads(load.stdout)
        assert summary["ok"] == 200 and summary["failed"] == 0
        assert {"ok", "failed", "p50_ms", "p99_ms", "rps"} <= set(summary)
    finally:
        host.stop()


def test_failover_when_a_host_is_killed_mid_load(nats_server, lattice, cli, tmp_path, wasm):
    """The component on two hosts, calls in flight, one host SIGKILLed: zero failed calls."""
    a = HostProcess(nats_server.url, lattice, "--state-dir", str(tmp_path / "a"), log=tmp_path / "a.log").wait_started()
    b = HostProcess(nats_server.url, lattice, "--state-dir", str(tmp_path / "b"), log=tmp_path / "b.log").wait_started()
    try:
        for h in (a, b):
            out = cli("start", "component", str(wasm["hostile"]), "svc", "--host-id", h.id, "--max-instances", "20")
            assert out.returncode == 0, out.stderr

        async def scenario() -> dict:
            async with LatticeClient(nats_server.url, lattice) as c:
                done = 0
                failures: list[str] = []

                async def caller() -> None:
                    nonlocal done
                    for _ in range(60):
                        try:
                            assert await c.call("svc", "ok", timeout_s=15) == 42
                            done += 1
                        except RpcError as exc:
                            failures.append(exc.message)

                load = [asyncio.create_task(caller()) for _ in range(20)]
                await eventually(lambda: done >= 200, 20, what="load under way")
                a.kill()
                await asyncio.gather(*load)
                return {"done": done, "failures": failures, "stats": dict(c.rpc.stats)}

        result = asyncio.run(scenario())
        assert result["failures"] == [] and result["done"] == 1200, result
    finally:
        a.kill()
        b.stop()


async def test_http_image_and_digest_pinning(nats_server, lattice, hosts, wasm, tmp_path):
    """An http(s) image is fetched by the host; a pinned digest that does not match is refused."""
    import functools
    import threading

    from trellis.interfaces.artifacts import sha256_digest

    (tmp_path / "adder.wasm").write_bytes(wasm["adder"].read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/adder.wasm"
    try:
        await hosts.start()
        async with LatticeClient(nats_server.url, lattice) as c:
            digest = sha256_digest(wasm["adder"].read_bytes())
            await c.start_component(url, "web", digest=digest)
            assert await c.call("web", "add", 1, 2) == 3
            with pytest.raises(ControlError) as err:
                await c.start_component(url, "pinned", digest="sha256:" + "ab" * 32)
            assert "digest mismatch" in err.value.message
            with pytest.raises(ControlError) as err:
                await c.start_component(url + ".missing", "missing")
            assert "HTTP 404" in err.value.message
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_a_slow_start_or_update_tells_what_the_host_is_doing(nats_server, lattice, hosts, wasm, tmp_path):
    """`trellis start component` and `trellis update component` show the host's stage while they
    wait (a first start compiles for a minute), not silence: here the artifact's server holds each
    download until the CLI said 'fetching'."""
    import functools
    import os
    import subprocess
    import sys
    import threading

    held = {"/v1.wasm": threading.Event(), "/v2.wasm": threading.Event()}

    class Held(_QuietHandler):
        def do_GET(self) -> None:
            held[self.path].wait(30)
            super().do_GET()

    for name in held:
        (tmp_path / name.lstrip("/")).write_bytes(wasm["adder"].read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Held, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    await hosts.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**os.environ, "TRELLIS_NATS_URL": nats_server.url, "TRELLIS_LATTICE": lattice}

    async def tells(command: list[str], path: str, stage: str, done: str) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "trellis.cli.main", *command],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stderr is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 30)
            assert stage in line, line
            held[path].set()
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
            assert proc.returncode == 0, err
            assert done in out
        finally:
            held[path].set()
            if proc.poll() is None:
                proc.kill()
            proc.communicate()  # reaps it and closes its pipes

    try:
        await tells(["start", "component", f"{url}/v1.wasm", "held"], "/v1.wasm",
                    "held: start: fetching", "component held running on host")
        await tells(["update", "component", "held", f"{url}/v2.wasm"], "/v2.wasm",
                    "held: update: fetching", "component held updated to")
    finally:
        for e in held.values():
            e.set()
        server.shutdown()
        server.server_close()
        thread.join()


async def test_non_retryable_function_is_not_resent_when_lost(nats_server, lattice, tmp_path, wasm):
    """A host dies while running an at-most-once function: the caller is told, not re-sent."""
    a = HostProcess(nats_server.url, lattice, "--state-dir", str(tmp_path / "a"), "--workers", "1").wait_started()
    try:
        async with LatticeClient(nats_server.url, lattice) as c:
            await c.start_component(str(wasm["hostile"]), "once", host_id=a.id, non_retryable=["spin"],
                                    limits={"timeout_s": 30})
            call = asyncio.create_task(c.call("once", "spin", timeout_s=20))
            # the host says the call has started (at most once) before it runs
            await eventually(lambda: c.rpc.stats["started_at_most_once"] >= 1, 5, what="call started")
            a.kill()
            with pytest.raises(RpcError) as err:
                await call
            assert err.value.kind == "lost", err.value.message
            # an ordinary (retryable) call is the default: covered by the failover test
    finally:
        a.kill()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
