"""Trellis for the density benchmark: nats-server, ``trellis host --workers W --with-wadm`` (as `trellis up`).

Started on 127.0.0.1 by the benchmark and stopped by pid; manifests are
deployed with the CLI a user would run (``trellis app deploy``); apps are
reached over HTTP with their ``Host`` header. ``instances()`` asks every host
for its usage (``trellis app usage`` reads the same): the instances that exist
now, per component.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from trellis.kit import procs
from trellis.natsserver import NatsServer

from .._procs import HostProc, host_embeds_wadm, new_lattice


def get(port: int, host: str, path: str = "/", timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"host": host})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class TrellisLattice:
    """One lattice: its own nats-server, one host with ``workers`` worker processes, wadm (in the host's
    process unless ``TRELLIS_UP_WADM_PROCESS=1`` is in ``env``)."""

    def __init__(self, workdir: Path, workers: int, env: dict[str, str] | None = None, label: str = "trellis") -> None:
        self.workdir = workdir / label
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workers = workers
        self.env = dict(env or {})
        self.lattice = new_lattice()
        self.nats: NatsServer | None = None
        self.host: HostProc | None = None
        self.wadm: subprocess.Popen[bytes] | None = None
        self.state = self.workdir / "state"
        self.started_s = float("nan")

    @property
    def conn(self) -> list[str]:
        assert self.nats is not None
        return ["--nats-url", self.nats.url, "--lattice", self.lattice]

    @property
    def roots(self) -> list[int]:
        pids = []
        for p in (self.wadm, self.host.proc if self.host else None, self.nats.proc if self.nats else None):
            if p is not None and p.poll() is None:
                pids.append(p.pid)
        return pids

    def start(self) -> TrellisLattice:
        t = time.perf_counter()
        # GO* variables of the lattice's environment reach its nats-server (GOGC=100: as before 25 was the default)
        self.nats = NatsServer(host="127.0.0.1", port=0, store_dir=self.workdir / "nats",
                               log_file=self.workdir / "nats.log",
                               env={k: v for k, v in self.env.items() if k.startswith("GO")})
        self.nats.start()
        # the controller in the host's process as `trellis up` runs it (TRELLIS_UP_WADM_PROCESS=1: a process)
        embed = host_embeds_wadm(self.env)
        self.host = HostProc(self.nats.url, self.lattice, self.state, self.workers, self.workdir / "host.log",
                             env=self.env, extra_args=["--with-wadm"] if embed else None).wait_started()
        self.host.wait_workers()
        if not embed:
            with open(self.workdir / "wadm.log", "ab") as log:
                self.wadm = subprocess.Popen(procs.trellis_argv("wadm", *self.conn, "--log-level", "warning"),
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env={**os.environ, **self.env}, start_new_session=True)
        deadline = time.monotonic() + 60  # the controller needs a moment to take the lease
        while subprocess.run(procs.trellis_argv("app", "list", *self.conn), capture_output=True,
                             timeout=30).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no wadm controller answered within 60 s\n{self.log_tail()}")
            time.sleep(0.2)
        self.started_s = time.perf_counter() - t
        return self

    def log_tail(self, n: int = 1500) -> str:
        return "\n".join(f"[{f.name}] {f.read_text(errors='replace')[-n:]}" for f in sorted(self.workdir.glob("*.log")))

    def deploy(self, manifest: Path, wait: bool = False, timeout_s: float = 300) -> None:
        argv = ["app", "deploy", str(manifest), *self.conn]
        if wait:
            argv += ["--wait", "--timeout", str(int(timeout_s))]
        for _ in range(3):  # on a loaded machine the controller may miss one request: ask again
            res = subprocess.run(procs.trellis_argv(*argv), capture_output=True, text=True, timeout=timeout_s + 60)
            if res.returncode == 0 or "no wadm controller answers" not in res.stderr + res.stdout:
                break
        if res.returncode != 0:
            raise RuntimeError(f"trellis app deploy {manifest.name} failed: {(res.stderr or res.stdout)[-800:]}")

    def wait_answer(self, port: int, host: str, timeout_s: float = 120) -> float:
        """Wait until ``GET /`` with ``Host: host`` answers 200; the seconds it took."""
        t = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        why = "no answer"
        while time.monotonic() < deadline:
            try:
                status, body = get(port, host)
                if status == 200:
                    return time.perf_counter() - t
                why = f"{status} {body[:200]!r}"
            except OSError as exc:
                why = repr(exc)
            time.sleep(0.05)
        raise RuntimeError(f"{host} never answered 200 within {timeout_s:.0f} s ({why})\n{self.log_tail()}")

    def instances(self) -> dict[str, int]:
        """Instances that exist now, per component id, over every host (the hosts' usage answers)."""
        from trellis.interfaces.client import LatticeClient

        async def ask() -> list[dict[str, Any]]:
            assert self.nats is not None
            async with LatticeClient(self.nats.url, self.lattice) as c:
                return await c.get_usage()

        out: dict[str, int] = {}
        for host in asyncio.run(ask()):
            for cid, u in (host.get("components") or {}).items():
                out[cid] = out.get(cid, 0) + int(u.get("instances", 0))
        return out

    def stop(self) -> None:
        if self.wadm is not None and self.wadm.poll() is None:
            procs.stop(self.wadm, 10.0)  # wadm first: it would restart what the host stops
        if self.host is not None:
            self.host.stop()
        if self.nats is not None:
            self.nats.stop()
