"""`trellis wadm`: run the wadm controller; `trellis wadm status`: which controllers run and who leads."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from trellis.host.settings import default_state_dir

from .options import Conn, with_conn
from .output import Output, OutputOpt, emit, fail, run_on, table
from .policy_opts import with_policy

if TYPE_CHECKING:
    from trellis.wadm.controller import Controller

wadm_app = typer.Typer(
    help="The wadm controller: run it (no subcommand), or see which controllers run and who leads.",
    invoke_without_command=True,
)


@wadm_app.callback()
@with_conn
@with_policy
def wadm_command(
    ctx: typer.Context,
    tick: float = typer.Option(1.0, "--tick", envvar="TRELLIS_WADM_TICK",
                               help="seconds between reconcile passes when nothing happens"),
    lease_ttl: float = typer.Option(3.0, "--lease-ttl", envvar="TRELLIS_WADM_LEASE_TTL",
                                    help="leader lease lifetime in seconds (takeover time after a leader dies)"),
    controller_id: str | None = typer.Option(None, "--id", envvar="TRELLIS_WADM_ID",
                                                help="this controller's id (generated when unset)"),
    log_level: str = typer.Option("info", "--log-level", envvar="TRELLIS_LOG_LEVEL"),
    secrets_key: str | None = typer.Option(
        None, "--secrets-key", envvar="TRELLIS_SECRETS_KEY",
        help="nkeys seed file (made 0600 when missing): run the secrets keyholder and sign hosts' secret grants"),
    log_format: str | None = typer.Option(None, "--log-format", envvar="TRELLIS_LOG_FORMAT",
                                             help="text or json (one object a line, with trace ids) [default: text]"),
    log_to: str | None = typer.Option(None, "--log-to", envvar="TRELLIS_LOG_TO",
                                         help="stdout (containers, journald) or files (STATE_DIR/logs/wadm.log, "
                                              "rotated); default: stderr"),
    state_dir: Path = typer.Option(default_state_dir(), "--state-dir", envvar="TRELLIS_STATE_DIR",
                                   help="where --log-to files writes (STATE_DIR/logs)"),
    *,
    conn: Conn,
    policy: object,  # PolicySettings (typer evaluates the annotations)
) -> None:
    """Run the wadm controller until Ctrl-C or SIGTERM (several may run: one leads at a time)."""
    if ctx.invoked_subcommand is not None:
        return
    from trellis.interfaces.logs import setup_logging
    from trellis.wadm.controller import Controller, ControllerSettings

    try:
        setup_logging("wadm", level=log_level, fmt=log_format, to=log_to, log_dir=state_dir.expanduser() / "logs")
    except ValueError as exc:
        raise fail(f"--log-format/--log-to: {exc}") from None
    try:
        settings = ControllerSettings(lattice=conn.lattice, nats=conn.nats, controller_id=controller_id,
                                      tick_s=tick, lease_ttl_s=lease_ttl, secrets_key_file=secrets_key,
                                      policy=policy)
        controller = Controller(settings)
    except ValueError as exc:
        raise fail(str(exc)) from None
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()  # started by `trellis up`: it goes when that does
    raise typer.Exit(asyncio.run(_run(controller)))


async def _run(controller: Controller) -> int:
    loop = asyncio.get_running_loop()
    stopper: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        if not stopper:
            stopper.append(loop.create_task(controller.close(reason=f"signal {sig.name}")))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await controller.start()
    except Exception as exc:
        print(f"error: wadm could not start: {exc}", file=sys.stderr)  # output's style, before logging owns stderr
        return 1
    print(json.dumps({"event": "wadm_started", "id": controller.id, "lattice": controller.lattice}), flush=True)
    await controller.finished()
    if stopper:
        await stopper[0]
    reason = controller.close_reason or ""
    print(json.dumps({"event": "wadm_stopped", "id": controller.id, "reason": reason}), flush=True)
    return 1 if reason.startswith("fatal") else 0


@wadm_app.command("status")
@with_conn
def wadm_status(
    output: Output = OutputOpt,
    timeout: float = typer.Option(1.0, help="seconds to wait for controllers to answer"),
    *,
    conn: Conn,
) -> None:
    """Every running controller of the lattice, and which one leads."""

    from trellis.interfaces.wadm_client import WadmClient

    found = run_on(conn, lambda c: WadmClient(c).controllers(timeout_s=timeout))
    if emit(found, output):  # an array of controllers; the leader has "role": "leader"
        return
    if not found:
        raise fail(f"no wadm controller answers in lattice {conn.lattice!r}")
    table(f"wadm controllers in lattice {conn.lattice!r}", ["ID", "ROLE", "LEADER SINCE", "STARTED", "LEASE TTL"],
          [(c.id, c.role.value, c.leader_since or "", c.started_at, f"{c.lease_ttl_s:g}s") for c in found])
