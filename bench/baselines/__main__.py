"""``python -m bench.baselines platform-poc|small-apps --nats URL``: start a baseline and keep it running.

Prints one JSON line, ``{"url": ..., "pids": [...], ...}``, once every service answers, then
runs until SIGINT or SIGTERM (or until a service exits by itself: status 1), and stops them
all. Without ``--nats`` it starts a nats-server (JetStream) of its own in the state folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from .services import (
    BaselineError,
    System,
    start_platform_poc_services,
    start_small_app_services,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="baseline", required=True, metavar="BASELINE")
    poc = sub.add_parser("platform-poc", help="the orders app of examples/platform-poc as six services")
    poc.add_argument("--port", type=int, help="the front's HTTP port (default: a free one)")
    poc.add_argument("--prefix", default="platform-poc-baseline",
                     help="names in NATS: bucket PREFIX-products, subject PREFIX.order-notification "
                          "(default: %(default)s)")
    poc.add_argument("--http-client", choices=("aiohttp", "httpx"), default="aiohttp",
                     help="what the services call each other with (default: %(default)s)")
    small = sub.add_parser("small-apps", help="one always-on hit-counter service per app name")
    small.add_argument("names", nargs="*", help="app names (or --count)")
    small.add_argument("--count", type=int, help="N apps named app-1 .. app-N")
    small.add_argument("--bucket-prefix", default="baseline-small-app-", help="default: %(default)s")
    for s in (poc, small):
        s.add_argument("--nats", metavar="URL", help="NATS server with JetStream (default: start one)")
        s.add_argument("--state-dir", type=Path, help="logs and data (default: a temporary folder, removed)")
        s.add_argument("--log-level", default=None, help="the services' log level (info, warning, ...)")
    args = p.parse_args(argv)
    if args.baseline == "small-apps":
        if args.count is not None:
            if args.names or args.count < 1:
                p.error("give app names or --count N (N >= 1), not both")
            args.names = [f"app-{i}" for i in range(1, args.count + 1)]
        elif not args.names:
            p.error("give app names or --count N")
    return args


def describe(system: System, extra: dict[str, Any]) -> str:
    return json.dumps({"url": system.url, "pids": system.pids, "urls": system.urls, **system.settings, **extra})


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        state = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="baseline-")))
        state.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        nats_url = args.nats
        if nats_url is None:
            from trellis.natsserver import NatsServer

            server = NatsServer(port=0, store_dir=state / "nats", log_file=state / "logs" / "nats.log")
            (state / "logs").mkdir(exist_ok=True)
            await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            nats_url = server.url
            extra = {"nats_url": nats_url, "nats_pid": server.proc.pid if server.proc else None}
        level = {"log_level": args.log_level} if args.log_level else {}
        if args.baseline == "platform-poc":
            system = await stack.enter_async_context(start_platform_poc_services(
                nats_url, state, port=args.port, prefix=args.prefix, http_client=args.http_client, **level))
        else:
            system = await stack.enter_async_context(start_small_app_services(
                nats_url, state, args.names, bucket_prefix=args.bucket_prefix, **level))
        print(describe(system, extra), flush=True)
        stopped = asyncio.ensure_future(stop.wait())
        exited = asyncio.ensure_future(system.wait_exit())
        try:
            await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (stopped, exited):
                t.cancel()
        if exited.done() and not exited.cancelled():
            s = exited.result()
            print(f"{s.name} exited with {s.proc.returncode}; stopping the others. Its log:\n{s.log_tail()}",
                  file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (BaselineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
