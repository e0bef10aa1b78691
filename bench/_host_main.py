"""Fallback host runner for a `trellis host` without ``--workers``.

``python -m bench._host_main --nats-url URL --lattice L --state-dir DIR --workers N``
runs ``trellis.host.host.Host(HostSettings(..., workers=N))`` in this process and prints
the same ``host_started`` JSON line as `trellis host`. Only used when the CLI
lacks the flag (bench/_procs.py checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from trellis.host.host import Host
from trellis.host.settings import HostSettings
from trellis.interfaces.connection import NatsSettings


async def run(args: argparse.Namespace) -> None:
    host = Host(HostSettings(lattice=args.lattice, nats=NatsSettings(url=args.nats_url),
                             state_dir=Path(args.state_dir), workers=args.workers,
                             worker_threads=args.worker_threads))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: loop.create_task(host.close(reason="signal")))
    await host.start()
    print(json.dumps({"event": "host_started", "host_id": host.id, "name": host.friendly_name}), flush=True)
    await host.finished()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nats-url", required=True)
    p.add_argument("--lattice", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--worker-threads", type=int, default=8)
    p.add_argument("--log-level", default="warning")
    args = p.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
