"""`trellis ui`: serve the live, read-only web dashboard of a lattice."""

from __future__ import annotations

import asyncio
import sys

import typer

from .options import Conn
from .output import fail

DEFAULT_UI_PORT = 3030


def ui_command(
    host: str = typer.Option("127.0.0.1", "--host", envvar="TRELLIS_UI_HOST",
                             help="address to listen on (0.0.0.0 to let other machines see it)"),
    port: int = typer.Option(DEFAULT_UI_PORT, "--port", envvar="TRELLIS_UI_PORT", min=0, max=65535,
                             help="port to listen on (0: any free port)"),
    *,
    conn: Conn,
) -> None:
    """Serve a live dashboard of the lattice: hosts, apps, links, traffic, usage, events."""
    from trellis.ui.server import address, bind, serve

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"Trellis dashboard of lattice {conn.lattice!r} on {address(sock)} (NATS {conn.nats.url}); "
               "Ctrl-C stops")
    sys.stdout.flush()
    from trellis.kit.procs import exit_with_parent

    exit_with_parent()  # started by `trellis up`: it goes when that does
    try:
        asyncio.run(serve(conn.nats, conn.lattice, sock))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
