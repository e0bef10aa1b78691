"""`trellis app put|deploy|undeploy|delete|list|get|versions|status|validate`: applications via wadm.

Tables for people, ``-o json`` for scripts. The JSON shapes are the API models of
`trellis.interfaces.wadm_api` (``status -o json`` prints an `AppStatusReply`: ``status`` is
one of ``undeployed``, ``reconciling``, ``deployed``, ``degraded``, ``failed``).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:  # imported where used: `trellis --help` stays quick
    from trellis.interfaces.wadm_api import AppStatusReply, StatusState
    from trellis.interfaces.wadm_client import WadmClient

from .options import Conn, with_conn
from .output import Output, OutputOpt, console, emit, err_console, fail, print_error, run, table

T = TypeVar("T")

app_app = typer.Typer(help="Applications: declare them in manifests; wadm places them and keeps them placed.",
                      no_args_is_help=True)

WaitOpt = typer.Option(False, "--wait", help="show progress until the app is deployed with its providers healthy "
                                             "(exit 0), or failed or degraded (exit 1, with the reason)")
TimeoutOpt = typer.Option(120.0, "--timeout", help="seconds --wait waits at most")


def _wadm_run(conn: Conn, fn: Callable[[WadmClient], Awaitable[T]]) -> T:
    """Run one wadm exchange; an error prints its message and every manifest problem, then exits 1."""

    from trellis.interfaces.client import LatticeClient
    from trellis.interfaces.wadm_client import WadmClient

    async def go() -> T:
        async with LatticeClient(conn.nats, conn.lattice) as c:
            return await fn(WadmClient(c))

    try:
        return run(_wrap(go()), conn.nats.url)
    except _Problems as exc:
        errors = sum(p.startswith("error:") for p in exc.problems)
        # the message repeats the first problem: the list says them all
        head = f"invalid manifest ({errors} error(s))" if exc.message.startswith("invalid manifest") else exc.message
        _print_problems(head, exc.problems)
        raise typer.Exit(1) from None


class _Problems(Exception):
    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


async def _wrap(coro: Coroutine[Any, Any, T]) -> T:
    from trellis.interfaces.wadm_client import WadmError

    try:
        return await coro
    except WadmError as exc:
        if exc.problems:
            raise _Problems(exc.message, exc.problems) from None
        raise


def _read(file: Path, overrides: list[str] | None = None) -> tuple[str, str]:
    """The manifest's text (with ``--config`` overrides applied) and its folder."""
    file = _manifest_in(file)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None
    if overrides:
        from trellis.wadm.manifest import ManifestError
        from trellis.wadm.manifest.overrides import OverrideError, apply_overrides

        try:
            text = apply_overrides(text, overrides)
        except OverrideError as exc:
            raise fail(str(exc)) from None
        except ManifestError as exc:
            raise fail(f"{file}: {exc}") from None
    base = str(file.resolve().parent)
    _check(file, text, base)
    return text, base


def _check(file: Path, text: str, base: str) -> None:
    """Refuse a manifest with errors here, before its files are uploaded: every error, said once."""
    from trellis.wadm.manifest import ManifestError, load_manifest

    try:
        load_manifest(text, base_dir=base)
    except ManifestError as exc:
        _print_problems(f"{file}: invalid manifest ({len(exc.errors)} error(s))", [str(p) for p in exc.errors])
        raise typer.Exit(1) from None


def _print_problems(head: str, problems: list[str]) -> None:
    print_error(head)
    for p in problems:
        err_console.print(f"  {p}", highlight=False, markup=False)


ConfigOpt = typer.Option([], "--config", metavar="NAME.KEY=VALUE",
                         help="set KEY of the manifest's inline config NAME to VALUE (repeatable), "
                              "e.g. --config http-listen.address=127.0.0.1:9090")


def _is_file_arg(arg: str) -> bool:
    """A manifest (or a project folder with one), not the name of a stored application."""
    from trellis.interfaces.wadm_api import APP_NAME_PATTERN

    path = Path(arg)
    if path.is_file() or path.is_dir() or arg.endswith((".yaml", ".yml", ".json")):
        return True
    if not re.fullmatch(APP_NAME_PATTERN, arg):
        raise fail(f"no such file {arg!r} (and an application's name has only letters, digits, '-' and '_')")
    return False


def _manifest_in(path: Path) -> Path:
    """``path``, or for a folder (a project made by ``trellis new``) its ``wadm.yaml``."""
    if not path.is_dir():
        return path
    if (path / "wadm.yaml").is_file():
        return path / "wadm.yaml"
    raise fail(f"{path} is a folder without a wadm.yaml: give the manifest file")


# --- validate (local) ----------------------------------------------------------------------


@app_app.command("validate")
def validate_command(file: Path = typer.Argument(..., help="manifest file (YAML or JSON), or a folder with one "
                                                           "(wadm.yaml)"),
                     output: Output = OutputOpt) -> None:
    """Check a manifest: exit 0 when valid (warnings printed), 1 with every error when not.

    Nothing is deployed. Besides the manifest itself it checks what this machine can
    tell: built-in provider names, local image files, and that each link names
    interfaces its target exports (read from the target's file when it is local).
    """
    from trellis.wadm.manifest import validation_report, validation_result

    file = _manifest_in(file)
    result = validation_result(file)
    if emit(result, output):
        raise typer.Exit(0 if result["valid"] else 1)
    ok, text = validation_report(file)
    (console if ok else err_console).print(text, highlight=False, markup=False)
    raise typer.Exit(0 if ok else 1)


# --- put / deploy ----------------------------------------------------------------------------


@app_app.command("put")
@with_conn
def put_command(
    file: Path = typer.Argument(..., help="manifest file (YAML or JSON), or a folder with one (wadm.yaml)"),
    config: list[str] = ConfigOpt,
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """Store a new version of an application (not deployed yet).

    Local files it names (component .wasm files, provider .py files and folders) are uploaded
    to the lattice's artifact store first, so hosts on every machine can fetch them.
    """
    text, base = _read(file, config)
    reply = _wadm_run(conn, lambda w: _put(w, text, base, output))
    if emit(reply, output):
        return
    for w in reply.warnings:
        err_console.print(f"  {w}", highlight=False, markup=False)
    typer.echo(f"{reply.name} {reply.version} " + ("stored" if reply.created else "was already stored"))


async def _put(w: WadmClient, text: str, base: str, output: Output) -> Any:
    """Upload the manifest's local files, then store it (images pointing at the uploads)."""
    from trellis.uploads import UploadError, upload_local_files

    assert w.client.nc is not None
    try:
        prepared = await upload_local_files(w.client.nc, w.lattice, text, Path(base))
    except UploadError as exc:
        raise _Problems(exc.message, []) from None
    for warning in prepared.warnings:
        err_console.print(f"  warning: {warning}", highlight=False, markup=False)
    if prepared.uploads and output is Output.table:
        err_console.print(prepared.summary(), highlight=False, markup=False)
    return await w.put(prepared.manifest, base_dir=base)


@app_app.command("deploy")
@with_conn
def deploy_command(
    app: str = typer.Argument(..., metavar="FILE_OR_NAME", help="a manifest file or a folder with a wadm.yaml "
                                                              "(stored, then deployed) "
                                                              "or the name of a stored application"),
    version: str | None = typer.Option(None, "--version", help="deploy this stored version (default: latest)"),
    config: list[str] = ConfigOpt,
    wait: bool = WaitOpt,
    timeout: float = TimeoutOpt,
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """Deploy an application (a file is stored as a new version first, its local files uploaded).

    ``--config NAME.KEY=VALUE`` changes a value of the file's inline config NAME (an HTTP
    port, a database URL) without editing the file; the result is stored as the version.
    """
    from trellis.interfaces.wadm_api import StatusState

    if config and not _is_file_arg(app):
        raise fail("--config changes a manifest file; give the file, not the name of a stored application")

    source = _read(Path(app), config) if _is_file_arg(app) else None

    async def go(w: WadmClient) -> tuple[Any, Any, AppStatusReply | None]:
        put = None
        name, ver = app, version
        if source is not None:
            text, base = source
            put = await _put(w, text, base, output)
            name, ver = put.name, version or put.version
        dep = await w.deploy(name, ver)
        final = await _follow(w, name, StatusState.DEPLOYED, timeout, output) if wait else None
        return put, dep, final

    put, dep, final = _wadm_run(conn, go)
    if not emit(final if final is not None else dep, output):
        if put is not None:
            for warning in put.warnings:
                err_console.print(f"  {warning}", highlight=False, markup=False)
        typer.echo(dep.message)
    _exit_for(final, StatusState.DEPLOYED, output)


@app_app.command("undeploy")
@with_conn
def undeploy_command(
    name: str = typer.Argument(..., help="application name"),
    wait: bool = WaitOpt,
    timeout: float = TimeoutOpt,
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """Stop everything an application placed (its manifests stay stored)."""
    from trellis.interfaces.wadm_api import StatusState

    async def go(w: WadmClient) -> tuple[Any, AppStatusReply | None]:
        dep = await w.undeploy(name)
        final = await _follow(w, name, StatusState.UNDEPLOYED, timeout, output) if wait else None
        return dep, final

    dep, final = _wadm_run(conn, go)
    if not emit(final if final is not None else dep, output):
        typer.echo(dep.message)
    _exit_for(final, StatusState.UNDEPLOYED, output)


@app_app.command("delete")
@with_conn
def delete_command(
    name: str = typer.Argument(..., help="application name"),
    version: str | None = typer.Option(None, "--version", help="delete only this (undeployed) version"),
    undeploy: bool = typer.Option(False, "--undeploy", "--force",
                                  help="undeploy first if deployed (otherwise a deployed app is refused)"),
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """Delete an application's stored manifests (a deployed one only with --undeploy)."""
    reply = _wadm_run(conn, lambda w: w.delete(name, version, undeploy=undeploy))
    if not emit(reply, output):
        typer.echo(reply.message)


# --- reading ----------------------------------------------------------------------------------


@app_app.command("list")
@with_conn
def list_command(output: Output = OutputOpt, *, conn: Conn) -> None:
    """List the applications, their versions and status (and which controller leads).

    ``-o json`` prints an array of applications (``trellis wadm status`` shows the controllers)."""
    reply = _wadm_run(conn, lambda w: w.list())
    if emit(reply.apps, output):
        return
    table(f"applications in lattice {conn.lattice!r}", ["NAME", "DEPLOYED", "LATEST", "STATUS", "MESSAGE"],
          [(a.name, a.deployed_version or "-", a.latest_version, a.status.value, a.message) for a in reply.apps],
          empty=f"no applications in lattice {conn.lattice!r} yet: 'trellis app deploy MANIFEST' deploys one")
    console.print(f"controller {reply.controller.id} ({reply.controller.role.value})", highlight=False)


@app_app.command("get")
@with_conn
def get_command(
    name: str = typer.Argument(..., help="application name"),
    version: str | None = typer.Option(None, "--version", help="a stored version (default: latest)"),
    output: Output = typer.Option(Output.table, "-o", "--output",
                                  help="table prints the manifest as YAML; json or yaml print the stored reply"),
    *,
    conn: Conn,
) -> None:
    """Print a stored manifest (image paths as resolved when it was stored)."""
    reply = _wadm_run(conn, lambda w: w.get(name, version))
    if emit(reply, output):
        return
    sys.stdout.write(f"# {reply.name} {reply.version}{' (deployed)' if reply.deployed else ''}\n")
    import yaml

    sys.stdout.write(yaml.safe_dump(reply.manifest, sort_keys=False))


@app_app.command("versions")
@with_conn
def versions_command(name: str = typer.Argument(..., help="application name"), output: Output = OutputOpt,
                     *, conn: Conn) -> None:
    """List the stored versions of an application, oldest first."""
    reply = _wadm_run(conn, lambda w: w.versions(name))
    if emit(reply.versions, output):
        return
    table(f"versions of {name}", ["VERSION", "CREATED", "DEPLOYED"],
          [(v.version, v.created_at, "yes" if v.deployed else "") for v in reply.versions])


@app_app.command("status")
@with_conn
def status_command(name: str = typer.Argument(..., help="application name"), output: Output = OutputOpt,
                   *, conn: Conn) -> None:
    """How an application stands: undeployed, reconciling, deployed, degraded or failed, per part."""
    st = _wadm_run(conn, lambda w: w.status(name))
    if emit(st, output):
        return
    print_status(st)


def print_status(st: AppStatusReply) -> None:
    colour = {"deployed": "green", "failed": "red", "reconciling": "yellow",
              "degraded": "dark_orange"}.get(st.status.value, "white")
    head = f"{st.name} {st.version or ''}".strip()
    console.print(f"{head}: [{colour}]{st.status.value}[/{colour}]" + (f"  {st.message}" if st.message else ""),
                  highlight=False)
    if st.components:
        table(None, ["COMPONENT", "ID", "KIND", "STATUS", "RUNNING", "MESSAGE"],
              [(c.name, c.id, c.kind, c.status.value, f"{c.running}/{c.desired}", c.message)
               for c in st.components])
    if st.links:
        table(None, ["LINK", "STATUS", "MESSAGE"], [(lk.description, lk.status.value, lk.message) for lk in st.links])


# --- waiting --------------------------------------------------------------------------------


async def _follow(w: WadmClient, name: str, goal: StatusState, timeout_s: float, output: Output) -> AppStatusReply:
    """Poll the status until it reaches `goal` or fails; show progress (on stderr) meanwhile."""
    from trellis.interfaces.wadm_api import StatusState

    from .settle import settle

    deadline = time.monotonic() + timeout_s
    last = ""
    live = output is Output.table and err_console.is_terminal
    spinner = err_console.status(f"waiting for {name}…") if live else None
    if spinner is not None:
        spinner.start()
    try:
        while True:
            st = await w.status(name)
            line = _progress_line(st)
            if line != last:
                if spinner is not None:
                    spinner.update(line)
                elif output is Output.table:
                    err_console.print(line, highlight=False, markup=False)
                last = line
            if st.status is StatusState.FAILED or (st.status is goal and goal is not StatusState.DEPLOYED):
                return st
            if goal is StatusState.DEPLOYED and st.status in (StatusState.DEPLOYED, StatusState.DEGRADED):
                settled = await settle(w.client, st)  # its providers' own word, after their links
                if settled is not None:
                    return settled
            if time.monotonic() >= deadline:
                return st.model_copy(update={"message": f"timed out after {timeout_s:g}s: {st.message}"})
            await asyncio.sleep(0.3)
    finally:
        if spinner is not None:
            spinner.stop()


def _progress_line(st: AppStatusReply) -> str:
    parts = [f"{c.name} {c.running}/{c.desired}" for c in st.components]
    detail = f" [{', '.join(parts)}]" if parts else ""
    return f"{st.name}: {st.status.value}{detail}" + (f" - {st.message}" if st.message else "")


def _exit_for(final: AppStatusReply | None, goal: StatusState, output: Output) -> None:
    if final is None:
        return
    if final.status is goal:
        if output is Output.table:
            print_status(final)
        return
    if output is Output.table:
        print_status(final)
    reason = final.message or final.status.value
    raise fail(f"{final.name} is {final.status.value}: {reason}")
