"""Where the time goes on the cross-host call path: py-spy on the client and the worker.

Same setup as ``rpc`` (one `trellis host --workers 1`, the adder with
``max_instances=20``, fresh instances), 20 callers in a closed loop while
``py-spy record`` samples the worker process and this client process. The
raw stacks are reduced to the functions with the most samples, by thread
(event loop vs Wasm threads), self and inclusive. Needs ``pip install py-spy``
(a profiling tool, not a project dependency); root or ptrace permission.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from trellis.interfaces.client import LatticeClient

from ._context import CALLS, Context
from ._load import closed_loop
from ._procs import Processes, new_lattice
from .rpc import CONCURRENCY, start_components

_LINENO = re.compile(r":\d+\)$")
_OWN = ("interfaces/", "host/", "trellis/", "bench/")


def _frame_key(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (path/file.py)``: aggregate by function."""
    return _LINENO.sub(")", frame.strip())


def summarize(raw: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function, split by thread kind."""
    groups: dict[str, dict[str, Counter[str]]] = {}
    totals: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        thread = frames[0]
        kind = "wasm threads" if "wasm" in thread else "event loop (main thread)" if "MainThread" in thread \
            else "other threads"
        body = [_frame_key(f) for f in frames[1:] if not f.startswith("process ")]
        if not body:
            continue
        g = groups.setdefault(kind, {"self": Counter(), "incl": Counter()})
        g["self"][body[-1]] += n
        for f in set(body):
            g["incl"][f] += n
        totals[kind] += n
    out: dict[str, Any] = {}
    for kind, g in groups.items():
        total = totals[kind]
        out[kind] = {
            "samples": total,
            "self": [(f, round(100 * c / total, 1)) for f, c in g["self"].most_common(top)],
            "inclusive_own_code": [(f, round(100 * c / total, 1)) for f, c in g["incl"].most_common(400)
                                   if any(o in f for o in _OWN)][:top],
        }
    return out


async def run(ctx: Context) -> None:
    spy = shutil.which("py-spy")
    if spy is None:
        ctx.details["skipped"] = "py-spy not installed (pip install py-spy)"
        print("   py-spy not found: pip install py-spy")
        return
    procs = Processes(ctx.workdir)
    out_dir = ctx.workdir / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    duration = ctx.pick(4, 8)
    try:
        nats = procs.nats()
        lattice = new_lattice()
        host = procs.host(nats.url, lattice, workers=1)
        [worker] = host.wait_workers()
        async with LatticeClient(nats.url, lattice) as c:
            await start_components(c, host.id, {"adder": "adder"}, max_instances=CONCURRENCY)
            fn, args = CALLS["adder"]
            spies = {}
            # "gil": only samples holding the GIL (Python work; Wasm runs with the GIL released)
            for role, pid, extra in (("worker", worker, []), ("worker_gil", worker, ["--gil"]),
                                     ("client_gil", os.getpid(), ["--gil"])):
                raw = out_dir / f"{role}.txt"
                spies[role] = (raw, subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "250",
                     "--format", "raw", "--threads", "--nonblocking", "--output", str(raw), *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            load = await closed_loop(lambda: c.call("adder", fn, *args, timeout_s=10), CONCURRENCY,
                                     duration + 1.0, warmup_s=0.0)
            for role, (raw, proc) in spies.items():
                try:
                    _, err = await asyncio.to_thread(proc.communicate, timeout=duration + 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                if proc.returncode != 0 or not raw.exists():
                    ctx.details[f"{role}_error"] = err.decode(errors="replace")[-500:]
                    continue
                text = raw.read_text()
                ctx.details[role] = summarize(text)
                if os.environ.get("BENCH_KEEP_STACKS"):  # raw stacks are large: kept only on request
                    keep = Path(os.environ["BENCH_KEEP_STACKS"]) / f"profile-{role}.txt"
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    keep.write_text(text)
            ctx.details["load"] = load
        ctx.row(f"cross-host calls, adder (fresh), concurrency {CONCURRENCY}, under py-spy", "calls/s",
                load["rps"], None, "-")
    finally:
        procs.close()
