"""HTTP in → NATS → worker → back: a short, bounded load against the `httpapp` component.

``python -m tests.http.bench_http [--seconds 10] [--connections 20] [--workers 0] [--path /count]``

Starts a nats-server, one host (in this process; its workers and the http-server
provider are child processes), the component with a reused instance, links it
on a free port, then runs ``wrk`` (Debian's package) against it and prints
req/s and latency percentiles, plus the CPU each process used per request.
Numbers, not assertions: the machine decides them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import psutil

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link
from trellis.natsserver import NatsServer

from ..harness import HostFactory, eventually
from .components.build import build_component
from .helpers import free_port


def cpu_seconds() -> dict[str, float]:
    """CPU time used so far by this process's children, grouped by role."""
    out: dict[str, float] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        role = ("http-server" if "http_server" in cmd else "worker" if "trellis.host.workers" in cmd
                else "nats-server" if "nats-server" in cmd else "wrk" if "wrk" in cmd else "other")
        out[role] = out.get(role, 0.0) + t.user + t.system
    return out


async def main(seconds: int, connections: int, workers: int, path: str, instances: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    wasm = build_component("httpapp")
    with tempfile.TemporaryDirectory(prefix="trellis-bench-http-") as tmp:
        nats = NatsServer(port=0, store_dir=Path(tmp) / "js")
        nats.start()
        hosts = HostFactory(nats.url, "bench", Path(tmp))
        try:
            host = await hosts.start(workers=workers)
            async with LatticeClient(nats.url, "bench") as c:
                await c.start_component(str(wasm), "httpapp", host_id=host.id, max_instances=instances,
                                        reuse={"max_invocations": 1_000_000})
                await c.start_provider("builtin:http-server", "http-server", host_id=host.id)
                port = free_port()
                await c.put_config("bench-web", {"address": f"127.0.0.1:{port}"})
                await c.put_link(Link(source_id="http-server", target="httpapp", name="web", wit_namespace="trellis",
                                      wit_package="http", interfaces=["incoming-handler"], source_config=["bench-web"]))
                url = f"http://127.0.0.1:{port}{path}"

                async def up() -> bool:
                    try:
                        async with httpx.AsyncClient() as http:
                            return (await http.get(url)).status_code == 200
                    except httpx.HTTPError:
                        return False

                await eventually(up, 30, what="the route")
                subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", url], capture_output=True)  # warm-up
                before = cpu_seconds()
                proc = await asyncio.create_subprocess_exec(
                    "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url,
                    stdout=asyncio.subprocess.PIPE)
                out = (await proc.communicate())[0].decode()
                after = cpu_seconds()
        finally:
            await hosts.close()
            nats.stop()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    print(f"{path} c={connections} workers={workers or 'auto'} instances={instances}: {rps} req/s, "
          f"p50 {pct.get('50')}, p90 {pct.get('90')}, p99 {pct.get('99')}"
          + (f", {errors.group(0)}" if errors else ""))
    print("CPU µs per request: " + ", ".join(
        f"{role} {1e6 * (after.get(role, 0) - before.get(role, 0)) / max(requests, 1):.0f}"
        for role in ("http-server", "worker", "nats-server") if role in after))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0: one per CPU)")
    ap.add_argument("--instances", type=int, default=20, help="max instances of the component")
    ap.add_argument("--path", default="/count")
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.connections, a.workers, a.path, a.instances))
