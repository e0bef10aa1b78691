"""`trellis secret put|list|del`: secrets sealed to the lattice's keyholder. No command prints a value."""

from __future__ import annotations

import re
import sys
from dataclasses import asdict
from pathlib import Path

import typer

from trellis.interfaces import secrets as sx
from trellis.signing import secrets as sealed

from .options import Conn, with_conn
from .output import Output, OutputOpt, emit, fail, run_on, table

secret_app = typer.Typer(
    help="Secrets for components and providers: stored sealed in the lattice, readable only by the hosts "
         "running a part whose manifest grants them. No command prints a value.",
    no_args_is_help=True)


def _check_name(name: str) -> None:
    if not re.match(sx.NAME_PATTERN, name):
        raise fail(f"invalid secret name {name!r}: use 1-256 letters, digits, '-', '_', '.', '=' and '/'")


@secret_app.command("put")
@with_conn
def secret_put(
    name: str = typer.Argument(..., help="the secret's name (a manifest's secrets[].properties.key)"),
    value: str | None = typer.Argument(None, help="the value; better from --from-file or stdin ('-'), "
                                          "which keep it out of your shell history"),
    from_file: Path | None = typer.Option(None, "--from-file", "-f", help="read the value from this file"),
    *,
    conn: Conn,
) -> None:
    """Create or replace a secret. `trellis secret put NAME -` (or no VALUE) reads it from stdin."""
    _check_name(name)
    if from_file is not None and value is not None:
        raise fail("give the value once: as VALUE or --from-file, not both")
    if from_file is not None:
        try:
            data = from_file.read_bytes()
        except OSError as exc:
            raise fail(f"cannot read {from_file}: {exc.strerror or exc}") from None
    elif value is None or value == "-":
        if sys.stdin.isatty():
            import getpass

            data = getpass.getpass(f"value for {name}: ").encode()
        else:
            data = sys.stdin.buffer.read()
            if data.endswith(b"\n") and data.count(b"\n") == 1:
                data = data[:-1]  # `echo VALUE |`: the newline is not part of it
    else:
        data = value.encode()
    if not data:
        raise fail("the value is empty")
    try:
        secret = sx.value_from_input(data)
    except ValueError as exc:
        raise fail(str(exc)) from None
    revision = run_on(conn, lambda c: sealed.put(c, name, secret))
    typer.echo(f"secret {name!r} put (revision {revision})")


@secret_app.command("list")
@with_conn
def secret_list(
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """The lattice's secrets: names, revisions and when they changed (never values)."""
    found = run_on(conn, lambda c: sealed.list_names(c))
    if emit([asdict(s) for s in found], output):
        return
    table(f"secrets in lattice {conn.lattice!r}", ["NAME", "REVISION", "KIND", "UPDATED"],
          [(s.name, s.revision, s.kind, s.updated_at) for s in found])


@secret_app.command("del")
@with_conn
def secret_del(
    name: str = typer.Argument(..., help="the secret's name"),
    *,
    conn: Conn,
) -> None:
    """Delete a secret, every stored version of it."""
    _check_name(name)
    run_on(conn, lambda c: sealed.delete(c, name))
    typer.echo(f"secret {name!r} deleted")
