"""The orders app while its host stalls: nothing lost, nothing doubled (docs/performance.md, i16-retry).

``python -m bench.density.stall [--pauses 1.5,2.5,1.5,3.5] [--clients 12] [--json FILE]``

Starts the orders app on Trellis as ``python -m bench density``'s load stage does
(``examples/platform-poc``, instance reuse, one host with 2 workers and the embedded
controller), posts orders from ``--clients`` threads, and meanwhile stops the host's
process (SIGSTOP) for each of ``--pauses`` seconds, 4 s apart: a host whose event loop
does not run, as on an overloaded machine, made on purpose. Then counts the answers
and what the logs say: duplicate-key failures (an SQL insert run twice), copies of
calls answered without a run, lease step-downs and the lease taken back. Run it with
``PYTHONPATH=OTHER_CHECKOUT`` for the platform of another commit (a before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..http.peers import TrellisFullApp, post_order
from . import REUSE


def run(pauses: list[float], clients: int, keep: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="trellis-bench-stall-"))
    app = TrellisFullApp(work, 2, REUSE)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def post() -> None:
        while not stop.is_set():
            try:
                status, _ = post_order(app.port, timeout_s=30)
            except OSError:
                status = -1
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    try:
        app.start()
        threads = [threading.Thread(target=post, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        pid = app.host.proc.pid
        time.sleep(4)
        for pause in pauses:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(pause)
            os.kill(pid, signal.SIGCONT)
            time.sleep(4)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        app.stop()
    text = "\n".join(p.read_text(errors="replace") for p in work.rglob("*.log") if "nats" not in p.name)
    out = {"platform": os.environ.get("PYTHONPATH", ""), "pauses_s": pauses, "clients": clients,
           "answers": {str(k): v for k, v in sorted(statuses.items())},
           "duplicate_key_failures": len(re.findall(r"(?i)unique constraint|duplicate key", text)),
           "copies_answered_not_run": text.count("not run again"),
           "lease_stepped_down": text.count("is no longer the leader"),
           "lease_taken_back": text.count("took the lease back"),
           "load_average": os.getloadavg()[0]}
    if keep:
        out["workdir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.density.stall", description=__doc__.split("\n\n")[0])
    p.add_argument("--pauses", default="1.5,2.5,1.5,3.5", help="seconds the host is stopped each time")
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--json", type=Path, help="write the result here too")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    args = p.parse_args()
    out = run([float(x) for x in args.pauses.split(",") if x.strip()], args.clients, args.keep)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
