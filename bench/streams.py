"""Streamed wasi:http bodies through a real host: a large upload and download, time and CPU per MB.

``python -m bench.streams [--mb 100] [--rounds 3] [--handoff 1|0] [--ab NAME=VALUE ...]``

One nats-server; a host (one worker) running the ``wasihttp`` test component (componentize-py)
behind ``builtin:http-server`` on a ``wasi`` route. Each round sends ``--mb`` MB to ``POST /sha256``
(the guest hashes the body as it arrives; the digest is checked) and reads ``--mb`` MB from
``GET /big?n=`` (the guest writes it in ≤ 64 KiB pieces; the bytes are checked), from this
process over loopback. ``--handoff 0`` serves the connection in the http-server provider and
relays the bodies over NATS (``TRELLIS_HTTP_HANDOFF=0``) instead of handing it to the worker.

``--ab NAME=VALUE`` starts a second lattice whose host gets that environment variable
(``PYTHONPATH=DIR`` runs another checkout: a before/after), and the two are measured in
alternating rounds (A B A B ...), so drifting background load hits both alike. Reported per
side and transfer: wall seconds, MB/s, and CPU seconds of the side's processes (the host and its
children: worker, providers; nats-server apart) per 100 MB. Results: ``bench/results/streams*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from trellis.interfaces.client import LatticeClient
from trellis.interfaces.links import Link

from ._context import component_path
from ._machine import machine_info
from ._procs import HostProc, Processes, new_lattice

PATTERN = bytes(range(256)) * 256  # the component's /big pattern (64 KiB)
MB = 1_000_000
RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Side:
    """One lattice: its host (and environment), its route's port."""

    def __init__(self, name: str, host: HostProc, lattice: str, port: int) -> None:
        self.name = name
        self.host = host
        self.lattice = lattice
        self.port = port

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) of the host and every process under it, by kind (``host``,
        ``worker``, ``providers``) and in all (``total``)."""
        out = {"host": 0.0, "worker": 0.0, "providers": 0.0}
        try:
            root = psutil.Process(self.host.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return {**out, "total": float("nan")}
        for p in procs:
            try:
                t = p.cpu_times()
                line = " ".join(p.cmdline())
            except psutil.Error:
                continue
            kind = "host" if p.pid == root.pid else "worker" if "trellis.host.workers" in line else "providers"
            out[kind] += t.user + t.system
        out["total"] = sum(out.values())
        return out


async def _deploy(nats_url: str, side: str, lattice: str, host_id: str, port: int) -> None:
    async with LatticeClient(nats_url, lattice) as c:
        await c.start_component(str(component_path("wasihttp")), "wasihttp", host_id=host_id, max_instances=2,
                                reuse={"max_invocations": 10_000}, limits={"timeout_s": 600})
        await c.start_provider("builtin:http-server", "http-server", host_id=host_id)
        await c.put_config("http-bench", {"address": f"127.0.0.1:{port}", "timeout_ms": "600000"})
        await c.put_link(Link(source_id="http-server", target="wasihttp", name="bench", wit_namespace="wasi",
                              wit_package="http", interfaces=["incoming-handler"], source_config=["http-bench"]))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/hello")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"side {side}: the route on port {port} never answered")


def upload(port: int, n: int) -> None:
    """``n`` bytes of the pattern to ``POST /sha256``; the guest's digest checked."""
    digest = hashlib.sha256()
    block = PATTERN * 16  # 1 MiB

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < n:
            piece = block[: min(len(block), n - sent)]
            digest.update(piece)
            sent += len(piece)
            yield piece
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/sha256", body=body(), headers={"content-length": str(n)})
    reply = conn.getresponse().read()
    conn.close()
    if reply != f"{digest.hexdigest()} {n}".encode():
        raise RuntimeError(f"upload: unexpected reply {reply[:300]!r}")


def download(port: int, n: int) -> None:
    """``n`` bytes from ``GET /big``; the count and each piece's first bytes checked against the pattern."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", f"/big?n={n}")
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"download: status {r.status}")
    got = 0
    twice = PATTERN * 2
    while True:
        piece = r.read(1 << 20)
        if not piece:
            break
        start = got % len(PATTERN)
        if piece[:256] != twice[start:start + min(256, len(piece))]:
            raise RuntimeError(f"download: wrong bytes at {got}")
        got += len(piece)
    conn.close()
    if got != n:
        raise RuntimeError(f"download: {got} bytes, expected {n}")


def measure(side: Side, what: str, n: int, nats_pid: int | None) -> dict[str, float]:
    """One transfer: wall time, MB/s, CPU seconds per 100 MB in all and by process kind (and
    nats-server's, when only one side uses it)."""
    nats = psutil.Process(nats_pid) if nats_pid else None
    nats0 = sum(nats.cpu_times()[:2]) if nats else 0.0
    cpu0, t0 = side.cpu_s(), time.perf_counter()
    (upload if what == "upload" else download)(side.port, n)
    wall, cpu1 = time.perf_counter() - t0, side.cpu_s()
    per = 100 * MB / n
    out = {"wall_s": round(wall, 3), "mb_s": round(n / MB / wall, 2),
           "cpu_s_per_100mb": round((cpu1["total"] - cpu0["total"]) * per, 3)}
    for kind in ("worker", "host", "providers"):
        out[f"{kind}_cpu_s_per_100mb"] = round((cpu1[kind] - cpu0[kind]) * per, 3)
    if nats:
        out["nats_cpu_s_per_100mb"] = round((sum(nats.cpu_times()[:2]) - nats0) * per, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=100, help="MB per transfer")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--handoff", choices=("0", "1"), default="1", help="0: bodies relayed over NATS")
    p.add_argument("--ab", nargs="*", default=[], metavar="NAME=VALUE", help="the B side's environment")
    p.add_argument("--out", default="streams", help="results name (bench/results/NAME.json)")
    args = p.parse_args(argv)
    ab = {}
    for item in args.ab:
        name, eq, value = item.partition("=")
        if not eq:
            p.error(f"--ab takes NAME=VALUE, not {item!r}")
        ab[name] = value
    n = args.mb * MB
    envs = {"A": {"TRELLIS_HTTP_HANDOFF": args.handoff}}
    if ab:
        envs["B"] = {"TRELLIS_HTTP_HANDOFF": args.handoff, **ab}
    results: dict[str, dict[str, list[dict[str, float]]]] = {s: {"upload": [], "download": []} for s in envs}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        procs = Processes(Path(tmp))
        try:
            nats = procs.nats()
            nats_pid = nats.proc.pid if nats.proc is not None else None
            sides = []
            for name, env in envs.items():
                lattice, port = new_lattice(), _free_port()
                host = procs.host(nats.url, lattice, workers=1, label=f"host-{name}", env=env)
                asyncio.run(_deploy(nats.url, name, lattice, host.id, port))
                sides.append(Side(name, host, lattice, port))
            for s in sides:  # warm: the guest's heap grows once, the instance is reused after
                upload(s.port, 4 * MB)
                download(s.port, 4 * MB)
            for r in range(args.rounds):
                for s in sides if r % 2 == 0 else reversed(sides):
                    for what in ("upload", "download"):
                        print(f"round {r + 1} side {s.name} {what} ...", flush=True)
                        got = measure(s, what, n, nats_pid if len(sides) == 1 else None)
                        results[s.name][what].append(got)
                        print(f"round {r + 1} side {s.name} {what}: {got}", flush=True)
        finally:
            procs.close()
    summary = {s: {what: {k: statistics.median(x[k] for x in rows) for k in rows[0]} for what, rows in res.items()}
               for s, res in results.items()}
    out = {"machine": machine_info(), "load_before": load_before, "load_after": os.getloadavg(),
           "command": "python -m bench.streams " + " ".join(argv if argv is not None else sys.argv[1:]),
           "mb": args.mb, "handoff": args.handoff, "envs": envs, "median": summary, "rounds": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
