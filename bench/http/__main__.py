"""``python -m bench.http [--quick] [--only NAME ...] [--window S] [--rounds N] [--keep]``.

The same run as ``python -m bench http``, with options: ``--only`` keeps the
systems whose name contains any of the given words (``trellis``, ``wash``,
``wasmtime``, ``uvicorn``, ``fresh``, ``reuse`` …). Results go to
``bench/results/http.json`` (``http-quick.json``; ``http-only.json`` when
``--only`` is given). ``--ab NAME=VALUE …`` runs every selected Trellis system
twice, as is and with those environment variables set for its host, in the same
alternating windows: an A/B of a switch (``TRELLIS_HOLD_GIL=0``,
``TRELLIS_LOCAL_CALLS=0``, …) in one sitting, reported as ``A/B`` rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..__main__ import RESULTS, table, wait_quiet
from .._context import Context
from .._machine import machine_info
from . import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one 3 s window per system, fewer systems (~4 min)")
    p.add_argument("--only", nargs="*", default=None, help="systems whose name contains one of these")
    p.add_argument("--window", type=float, default=None, help="seconds per measured window (default 8; quick 3)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; quick 1)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (every process's log)")
    p.add_argument("--ab", nargs="*", default=[], metavar="NAME=VALUE",
                   help="also run each Trellis system with these environment variables set, side by side "
                        "(an A/B in one sitting: e.g. --ab TRELLIS_LOCAL_CALLS=0)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    ab = {}
    for item in args.ab:
        name, eq, value = item.partition("=")
        if not eq or not name:
            p.error(f"--ab takes NAME=VALUE, not {item!r}")
        ab[name] = value
    workdir = Path(tempfile.mkdtemp(prefix="trellis-bench-http-"))
    ctx = Context(quick=args.quick, workdir=workdir)
    load_before = wait_quiet(10 if args.quick else 60)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    t = time.perf_counter()
    try:
        run(ctx, set(args.only) if args.only else None, args.window, args.rounds, ab)
    finally:
        if args.keep:
            print(f"   logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    res = {"bench": "http", "description": "HTTP: Trellis vs wasmCloud 2.x, wasmtime serve, uvicorn (wrk, c=20)",
           "quick": args.quick, "started_at": started, "duration_s": round(time.perf_counter() - t, 1),
           "machine": machine_info(), "command": "python -m bench.http " + " ".join(argv or sys.argv[1:]),
           "load_before": load_before, "rows": ctx.rows, "details": ctx.details}
    name = "http-only" if args.only else "http-quick" if args.quick else "http"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(table(ctx.rows))
    print(f"   ({res['duration_s']} s; {args.out / (name + '.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
