"""``run(provider)``: the entry point of a provider process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from trellis.interfaces import tracing
from trellis.interfaces.logs import setup_logging
from trellis.kit import gc_tuning

from .bootstrap import Bootstrap, BootstrapError, arg_parser, bootstrap_from_args, read_bootstrap
from .definition import Provider
from .runtime import ProviderRuntime

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_BAD_BOOTSTRAP = 2


def run(provider: Provider, argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``provider`` until SIGTERM/SIGINT, then exit.

    With no arguments and stdin not a terminal, the bootstrap JSON is read from
    stdin (how a host starts providers). Otherwise flags describe it (``--help``).
    """
    sys.exit(main(provider, argv))


def main(provider: Provider, argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = arg_parser(Path(sys.argv[0]).name if argv is None else provider.name, provider.name)
    ns = parser.parse_args(args)
    try:
        if ns.bootstrap == "-" or (not args and not sys.stdin.isatty()):
            bootstrap = read_bootstrap(sys.stdin.buffer)
        elif ns.bootstrap:
            bootstrap = Bootstrap.parse(Path(ns.bootstrap).read_bytes())
        else:
            bootstrap = bootstrap_from_args(ns)
    except (BootstrapError, OSError) as exc:
        print(f"error: provider {provider.name}: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_BOOTSTRAP
    try:  # TRELLIS_LOG_FORMAT / TRELLIS_LOG_TO, as its host was asked (interfaces/logs.py)
        setup_logging(f"provider-{bootstrap.provider_id}", level=bootstrap.log_level,
                      log_dir=Path(bootstrap.state_dir) / "logs" if bootstrap.state_dir else None)
    except ValueError as exc:
        logging.basicConfig(stream=sys.stderr, level=bootstrap.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger(__name__).warning("logging as text to stderr: %s", exc)
    for key, value in bootstrap.otel.items():
        if key.startswith("OTEL_"):
            os.environ.setdefault(key, value)
    tracing.setup_tracing(f"provider-{bootstrap.provider_id}")
    gc_tuning.tune(bootstrap.gc_threshold)
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()  # started by a host: it does not outlive it
    try:
        import uvloop

        return uvloop.run(serve(provider, bootstrap))
    except ImportError:  # pragma: no cover
        return asyncio.run(serve(provider, bootstrap))


async def serve(provider: Provider, bootstrap: Bootstrap) -> int:
    """Run until a signal or until the runtime closes; announce start and stop as JSON lines on stdout."""
    runtime = ProviderRuntime(provider, bootstrap)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        if not stopping:
            stopping.append(loop.create_task(runtime.close(reason=f"signal {sig.name}")))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await runtime.start()
    except Exception as exc:
        print(f"error: provider {bootstrap.provider_id} could not start: {exc}", file=sys.stderr, flush=True)
        return EXIT_START_FAILED
    announce = {"provider_id": runtime.id, "host_id": runtime.host_id, "instance_id": bootstrap.instance_id,
                "lattice": runtime.lattice}
    print(json.dumps({"event": "provider_started", **announce}), flush=True)
    await runtime.finished()
    if stopping:
        await stopping[0]
    print(json.dumps({"event": "provider_stopped", **announce, "reason": runtime.close_reason}), flush=True)
    return EXIT_OK
