"""`trellis new component|provider NAME`: a working project to start from."""

from __future__ import annotations

from pathlib import Path

import typer

from .output import err_console, fail, shown_path

new_app = typer.Typer(help="Create a component or provider project to start from.", no_args_is_help=True)


@new_app.command("component")
def new_component(
    name: str = typer.Argument(..., help="the component's name (lower-case, dashes), also its folder"),
    lang: str = typer.Option("python", "--lang", help="python (componentize-py) or js (componentize-js)"),
    directory: Path = typer.Option(Path("."), "--dir", help="where the project's folder is made"),
    port: int = typer.Option(8080, "--port", help="the port its manifest has the HTTP server listen on"),
) -> None:
    """An HTTP component that keeps a counter in key-value, with its WIT, manifest and README."""
    from trellis.scaffold import ScaffoldError
    from trellis.scaffold import new_component as make

    try:
        target = make(name, lang, directory, port)
    except ScaffoldError as exc:
        raise fail(str(exc)) from None
    where = shown_path(target)
    typer.echo(f"created {where} ({'JavaScript, wasi:http' if lang == 'js' else 'Python, trellis:http'})\n"
               f"next, with `trellis up` running:\n"
               f"  trellis build {where}\n"
               f"  trellis app deploy {where}/wadm.yaml --wait\n"
               f"  curl localhost:{port}/")
    if _listening(port):
        err_console.print(f"note: something already listens on 127.0.0.1:{port} (another app?): deploy with "
                          f"--config {name}-listen.address=127.0.0.1:PORT, or make the project with --port",
                          highlight=False, markup=False)


def _listening(port: int) -> bool:
    """Whether a server takes connections on 127.0.0.1:``port`` now."""
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@new_app.command("provider")
def new_provider(
    name: str = typer.Argument(..., help="the provider's name (lower-case, dashes), also its folder"),
    directory: Path = typer.Option(Path("."), "--dir", help="where the project's folder is made"),
) -> None:
    """A capability provider written with the SDK, with its WIT, a unit test, a manifest and a README."""
    from trellis.scaffold import ScaffoldError
    from trellis.scaffold import new_provider as make

    try:
        target = make(name, directory)
    except ScaffoldError as exc:
        raise fail(str(exc)) from None
    where = shown_path(target)
    typer.echo(f"created {where}\n"
               f"next:\n"
               f"  (cd {where} && python -m pytest test_provider.py)\n"
               f"  trellis app deploy {where}/wadm.yaml --wait      # with `trellis up` running")
