"""One wrk run against one system, and what the system's processes spent on it.

wrk (Debian's package) sends the issue's load: ``POST /orders`` with
``[{"sku": "ENG-V8-500", "price": 1000, "quantity": 1}]``, 20 connections,
one wrk thread, a fixed window. Its report gives requests, req/s, latency
percentiles, non-2xx answers and socket errors; success is the share of
requests that got a 2xx with no socket error (every system is first checked
to answer 201 with the expected JSON, so a 2xx here is a 201).

While wrk runs, :class:`TreeMeter` samples the system's processes (given as
root pids; their children are found again on every sample, so worker and
provider processes count too): CPU seconds used in the window and the peak of
their summed RSS.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BODY = '[{"sku": "ENG-V8-500", "price": 1000, "quantity": 1}]'
CONNECTIONS = 20
_LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
%s
"""


def lua_script(path: Path, host_header: str | None = None) -> Path:
    host = f'wrk.headers["Host"] = "{host_header}"' if host_header else ""
    path.write_text(_LUA % (BODY, host))
    return path


def _tree(roots: list[int]) -> list[psutil.Process]:
    procs: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            p = psutil.Process(pid)
        except psutil.Error:
            continue
        procs[p.pid] = p
        try:
            for child in p.children(recursive=True):
                procs[child.pid] = child
        except psutil.Error:
            pass
    return list(procs.values())


@dataclass
class TreeMeter:
    """CPU seconds and peak summed RSS of the process trees under ``roots``, sampled every ``every_s``;
    peak summed PSS (``/proc/PID/smaps_rollup``: shared pages split between their users) every
    ``pss_every`` samples, as reading it walks every mapping."""

    roots: list[int]
    every_s: float = 0.2
    pss_every: int = 5
    peak_rss: int = 0
    peak_pss: int = 0
    _samples: int = 0
    _cpu: dict[int, float] = field(default_factory=dict)
    _cpu0: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = pss = 0
        with_pss = self._samples % self.pss_every == 0
        self._samples += 1
        for p in _tree(self.roots):
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
            if with_pss:
                pss += pss_of(p.pid)
            self._cpu[p.pid] = t.user + t.system
            self._cpu0.setdefault(p.pid, 0.0 if self._thread is not None else t.user + t.system)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> TreeMeter:
        self._sample()  # baseline of every process alive now; ones born later count from zero
        self._thread = threading.Thread(target=self._loop, name="tree-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def cpu_s(self) -> float:
        return sum(max(0.0, c - self._cpu0.get(pid, 0.0)) for pid, c in self._cpu.items())

    @property
    def processes(self) -> int:
        return len(self._cpu)


def pss_of(pid: int) -> int:
    """Proportional set size of one process in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pss_now(roots: list[int]) -> int:
    """Summed PSS of the process trees under ``roots``, in bytes."""
    return sum(pss_of(p.pid) for p in _tree(roots))


def rss_now(roots: list[int]) -> int:
    total = 0
    for p in _tree(roots):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return round(float(m.group(1)) * _UNITS[m.group(2)], 3) if m else float("nan")


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests, req/s, p50/p90/p99 (ms), non-2xx and socket errors from ``wrk --latency``."""
    def num(pattern: str) -> int:
        m = re.search(pattern, out)
        return int(m.group(1)) if m else 0

    requests = num(r"(\d+) requests in")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(x) for x in m.groups()) if m else 0
    non2xx = num(r"Non-2xx or 3xx responses: (\d+)")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE))
    failed = min(requests, non2xx + socket_errors)
    return {
        "requests": requests, "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": _ms(pct.get("50", "")), "p90_ms": _ms(pct.get("90", "")), "p99_ms": _ms(pct.get("99", "")),
        "non_2xx": non2xx, "socket_errors": socket_errors,
        "success_pct": round(100.0 * (requests - failed) / requests, 3) if requests else 0.0,
    }


def run_wrk(url: str, script: Path, seconds: float, roots: list[int], timeout_s: float = 10.0) -> dict[str, Any]:
    """One window of wrk against ``url``: wrk's figures plus the system's CPU per request and peak RSS."""
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
            f"--timeout={timeout_s:g}s", "-s", str(script), url]
    with TreeMeter(roots) as meter:
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        wall = time.perf_counter() - t0
    out = parse_wrk(res.stdout)
    if res.returncode != 0 or not out["requests"]:
        out["wrk_error"] = (res.stderr or res.stdout)[-400:]
    ok = max(1, out["requests"])
    out.update(cpu_s=round(meter.cpu_s, 3), cpu_ms_per_request=round(meter.cpu_s / ok * 1e3, 3),
               cores_used=round(meter.cpu_s / wall, 2), peak_rss_mib=round(meter.peak_rss / 2**20, 1),
               peak_pss_mib=round(meter.peak_pss / 2**20, 1),
               processes=meter.processes, wall_s=round(wall, 2))
    return out
