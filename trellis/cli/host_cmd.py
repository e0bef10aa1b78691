"""`trellis host`: run one host in this process until stopped."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import typing
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from trellis.host.settings import default_state_dir

if TYPE_CHECKING:
    from trellis.host.host import Host
    from trellis.host.provider_group import Runner

    from .embedded_wadm import EmbeddedWadm

from .options import Conn, with_conn
from .output import fail, split_list
from .policy_opts import with_policy


@with_conn
@with_policy
def host_command(
    label: list[str] = typer.Option([], "--label", "-l", envvar="TRELLIS_LABELS",
                                    help="user label key=value (repeatable)"),
    name: str | None = typer.Option(None, "--name", envvar="TRELLIS_HOST_NAME", help="friendly name"),
    seed: str | None = typer.Option(None, "--seed", envvar="TRELLIS_HOST_SEED",
                                       help="nkeys server seed (S…); generated when unset"),
    seed_file: Path | None = typer.Option(None, "--seed-file", envvar="TRELLIS_HOST_SEED_FILE",
                                             help="keep the host's seed here (created on first start)"),
    heartbeat: float = typer.Option(1.0, "--heartbeat-interval", envvar="TRELLIS_HEARTBEAT_INTERVAL",
                                    help="seconds between heartbeats"),
    stop_timeout: float = typer.Option(10.0, "--stop-timeout", help="seconds to drain on stop"),
    workers: int = typer.Option(0, "--workers", envvar="TRELLIS_WORKERS",
                                help="Wasm worker processes (0 = one per CPU)"),
    worker_threads: int = typer.Option(8, "--worker-threads", envvar="TRELLIS_WORKER_THREADS",
                                       help="threads per worker for calls blocked in imports"),
    instance_allocator: str = typer.Option(
        "on-demand", "--instance-allocator", envvar="TRELLIS_INSTANCE_ALLOCATOR",
        help="on-demand (each instance maps its memory) or pooling (slots reserved once per worker, reused; "
             "bounded)"),
    state_dir: Path = typer.Option(default_state_dir(), "--state-dir", envvar="TRELLIS_STATE_DIR"),
    log_level: str = typer.Option("info", "--log-level", envvar="TRELLIS_LOG_LEVEL"),
    allow_insecure_registries: list[str] = typer.Option(
        [], "--allow-insecure-registries", envvar="TRELLIS_ALLOW_INSECURE_REGISTRIES",
        help="OCI registry (host or host:port) to pull from over plain HTTP (repeatable or comma-separated; "
             "'*' for all)"),
    trusted_issuer: list[str] = typer.Option(
        [], "--trusted-issuer", envvar="TRELLIS_TRUSTED_ISSUERS", metavar="KEY",
        help="run only artifacts signed by this issuer (public key A…; repeatable; the variable takes a "
             "comma/space separated list)"),
    allow_python_provider: list[str] = typer.Option(
        [], "--allow-python-provider", envvar="TRELLIS_ALLOW_PYTHON_PROVIDERS", metavar="MODULE",
        help="let python:MODULE providers run this module ('*' = any; repeatable); none by default"),
    log_format: str | None = typer.Option(None, "--log-format", envvar="TRELLIS_LOG_FORMAT",
                                             help="text or json (one object a line, with trace ids); for the "
                                                  "host's workers and providers too [default: text]"),
    log_to: str | None = typer.Option(None, "--log-to", envvar="TRELLIS_LOG_TO",
                                         help="stdout (containers, journald) or files (STATE_DIR/logs, rotated); "
                                              "default: the host to stderr, workers and providers to files"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", envvar="TRELLIS_METRICS_PORT",
                                               help="serve Prometheus metrics at http://HOST:PORT/metrics "
                                                    "(0: any free port)"),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", envvar="TRELLIS_METRICS_HOST",
                                     help="address for --metrics-port (0.0.0.0: every interface)"),
    metrics_scope: str = typer.Option("host", "--metrics-scope", hidden=True,
                                      help="host, or lattice: also gather every wadm controller (trellis up)"),
    with_wadm: bool = typer.Option(False, "--with-wadm", envvar="TRELLIS_HOST_WITH_WADM",
                                   help="also run a wadm controller in this process (what trellis up does; "
                                        "one process fewer than 'trellis wadm')"),
    secrets_key: str | None = typer.Option(
        None, "--secrets-key", envvar="TRELLIS_SECRETS_KEY",
        help="with --with-wadm: the controller's nkeys seed file (see 'trellis wadm --secrets-key')"),
    *,
    conn: Conn,
    policy: object,  # PolicySettings (typer evaluates the annotations)
) -> None:
    """Run a host that joins the lattice (until Ctrl-C, SIGTERM or 'trellis stop host')."""
    from trellis.host.host import Host
    from trellis.host.labels import LabelError, parse_label_args
    from trellis.host.settings import HostSettings
    from trellis.interfaces.logs import DESTINATIONS, FORMATS, choice, setup_logging
    from trellis.signing import parse_issuers

    try:
        log_format = choice(log_format, "TRELLIS_LOG_FORMAT", FORMATS, "text")
        log_to = choice(log_to, "TRELLIS_LOG_TO", DESTINATIONS, "stdout") if log_to else None
        setup_logging("host", level=log_level, fmt=log_format, to=log_to, log_dir=state_dir.expanduser() / "logs")
    except ValueError as exc:
        raise fail(f"--log-format/--log-to: {exc}") from None
    # read from the settings' type: importing trellis.host.runtime would load wasmtime into a process
    # that runs no Wasm (its workers do)
    allocators = typing.get_args(HostSettings.model_fields["instance_allocator"].annotation)
    if instance_allocator not in allocators:
        raise fail(f"--instance-allocator {instance_allocator!r}: expected one of {', '.join(allocators)}")
    try:
        labels = parse_label_args(label)
        settings = HostSettings(
            lattice=conn.lattice, nats=conn.nats, seed=seed, seed_file=seed_file, name=name,
            labels=labels, heartbeat_interval_s=heartbeat, stop_timeout_s=stop_timeout,
            state_dir=state_dir.expanduser(), workers=workers, worker_threads=worker_threads,
            instance_allocator=instance_allocator,
            insecure_registries=split_list(allow_insecure_registries),
            trusted_issuers=parse_issuers(trusted_issuer), policy=policy,
            allow_python_providers=tuple(split_list(allow_python_provider)),
            metrics_port=metrics_port, metrics_host=metrics_host, metrics_scope=metrics_scope,
            log_format=log_format, log_to=log_to,
        )
    except (LabelError, ValueError) as exc:
        raise fail(str(exc)) from None
    process = settings.tuning.process
    if process.worker_zygote and process.zygote_from_host:
        # before any thread or loop, and before the host loads its keys: the workers' zygote forked
        # from this process shares its pages (what the host will import is imported first)
        try:
            import uvloop  # noqa: F401 (imported before the fork, shared with the zygote)
        except ImportError:  # pragma: no cover
            pass
        if process.provider_group and process.providers_in_host:
            import trellis.providers.builtin.group  # noqa: F401 (imported before the fork, shared)
        if with_wadm:
            import trellis.cli.embedded_wadm  # noqa: F401 (imported before the fork, shared)
            import trellis.wadm.controller  # noqa: F401 (imported before the fork, shared)
        from trellis.host.workers.forks import prefork

        prefork(settings.state_dir / "logs", process.zygote_lean_after_s)
    try:
        host = Host(settings, providers_here=_providers_here)
        wadm = _embedded_wadm(conn, policy, secrets_key, log_format, log_to, state_dir) if with_wadm else None
    except (LabelError, ValueError) as exc:
        raise fail(str(exc)) from None
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()  # started by `trellis up`: it goes when that does
    code = runner(_run(host, wadm))
    raise typer.Exit(code)


def _providers_here(emit: Callable[[dict[str, Any]], None], log_env: dict[str, str]) -> Runner:
    """The built-in providers' group on this host's loop (``TRELLIS_PROVIDERS_IN_HOST=0``: a process)."""
    from trellis.providers.builtin.group import in_host

    return in_host(emit, log_env)


def _embedded_wadm(conn: Conn, policy: object, secrets_key: str | None, log_format: str, log_to: str | None,
                   state_dir: Path) -> EmbeddedWadm:
    from trellis.wadm.controller import ControllerSettings

    from .embedded_wadm import EmbeddedWadm, log_to_own_file

    settings = ControllerSettings(lattice=conn.lattice, nats=conn.nats, secrets_key_file=secrets_key,
                                  policy=policy)
    if log_to == "files":
        log_to_own_file(state_dir.expanduser() / "logs", log_format)
    return EmbeddedWadm(settings)


async def _run(host: Host, wadm: EmbeddedWadm | None = None) -> int:
    from trellis.kit import loopwatch

    loop = asyncio.get_running_loop()
    watch = loopwatch.from_env(loop, "host")  # TRELLIS_LOOP_WATCH_S: what stalls this loop, when it does
    stopper: list[asyncio.Task[None]] = []

    async def close(reason: str) -> None:
        if wadm is not None:  # it gives up its lease first: another controller takes over at once
            await wadm.stop(reason)
        await host.close(reason=reason)

    def on_signal(sig: signal.Signals) -> None:
        if not stopper:
            stopper.append(loop.create_task(close(f"signal {sig.name}")))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await host.start()
    except Exception as exc:
        print(f"error: host could not start: {exc}", file=sys.stderr)
        return 1
    if wadm is not None:
        wadm.start()
    started = {"event": "host_started", "host_id": host.id, "name": host.friendly_name,
               "lattice": host.lattice, "nats_url": host.settings.nats.url}
    if host.metrics_address is not None:
        started["metrics"] = "http://{}:{}/metrics".format(*host.metrics_address)
    print(json.dumps(started), flush=True)
    await host.finished()
    if wadm is not None:  # the host stopped ('trellis stop host'): its process, and the controller, go
        await wadm.stop(host.close_reason or "host stopped")
    if stopper:
        await stopper[0]
    if watch is not None:
        watch.stop()
    print(json.dumps({"event": "host_stopped", "host_id": host.id, "reason": host.close_reason}), flush=True)
    return 0
