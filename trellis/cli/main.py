"""The `trellis` command: one entry point for the whole platform."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from trellis.host.settings import default_state_dir

from .apps import app_app
from .build_cmd import build_command
from .components import call_command, push_command, scale_app, start_app, update_app
from .host_cmd import host_command
from .hosts import get_app, label_app, stop_app
from .links import config_app, link_app  # also registers 'get links' on get_app
from .new_cmd import new_app
from .options import with_conn
from .output import fail, split_list
from .policy_opts import with_policy
from .secrets_cmd import secret_app
from .sign_cmd import sign_command
from .ui_cmd import ui_command
from .usage_cmd import usage_command
from .views import events_command, spy_command  # also registers 'get components|providers' on get_app
from .wadm_cmd import wadm_app

if TYPE_CHECKING:
    from trellis.interfaces.policy import PolicySettings

app = typer.Typer(
    name="trellis",
    help="Trellis: run WebAssembly components across a lattice of hosts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        import trellis

        typer.echo(f"trellis {trellis.__version__}")
        raise typer.Exit()


#: commands that run a long-lived process with its own spans (not one CLI span around them)
_SERVERS = frozenset({"host", "wadm", "up"})


@app.callback()
def _root(
    ctx: typer.Context,
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="Print the Trellis version and exit."),
) -> None:
    """Trellis: run WebAssembly components across a lattice of hosts."""
    if ctx.invoked_subcommand not in _SERVERS and os.environ.get("OTEL_TRACES_EXPORTER", "none").lower() not in (
            "", "none"):
        _trace_command(ctx)


def _trace_command(ctx: typer.Context) -> None:
    """The command is one span (``trellis call``, ...), the root of what it asks the lattice to do."""
    from opentelemetry import context, trace

    from trellis.interfaces import tracing

    tracing.setup_tracing("trellis-cli")
    words: list[str] = []
    for word in sys.argv[1:3]:  # the command and its subcommand: arguments may hold data
        if word.startswith("-"):
            break
        words.append(word)
    span = tracing.tracer().start_span("trellis " + " ".join(words), kind=trace.SpanKind.CLIENT)
    token = context.attach(trace.set_span_in_context(span))

    def end() -> None:
        span.end()
        context.detach(token)
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(5000)

    ctx.call_on_close(end)


app.add_typer(get_app, name="get")
app.add_typer(label_app, name="label")
app.add_typer(stop_app, name="stop")
app.add_typer(link_app, name="link")
app.add_typer(config_app, name="config")
app.add_typer(start_app, name="start")
app.add_typer(scale_app, name="scale")
app.add_typer(update_app, name="update")
app_app.command("usage")(usage_command)
app.add_typer(app_app, name="app")
app.add_typer(wadm_app, name="wadm")
app.add_typer(secret_app, name="secret")
app.add_typer(new_app, name="new")
app.command("host")(host_command)
app.command("call")(call_command)
app.command("push")(push_command)
app.command("build")(build_command)
app.command("events")(with_conn(events_command))
app.command("sign")(sign_command)
app.command("spy")(with_conn(spy_command))
app.command("ui")(with_conn(ui_command))


@app.command("up")
@with_policy
def up_command(
    state_dir: Path = typer.Option(default_state_dir(), "--state-dir", envvar="TRELLIS_STATE_DIR",
                                   help="where NATS data, the host's key and logs live"),
    nats_port: int = typer.Option(4222, "--nats-port", envvar="TRELLIS_NATS_PORT"),
    nats_host: str = typer.Option("127.0.0.1", "--nats-host",
                                  help="address NATS listens on (0.0.0.0 to let other machines join)"),
    lattice: str = typer.Option("default", "--lattice", envvar="TRELLIS_LATTICE"),
    label: list[str] = typer.Option([], "--label", "-l", help="label for the embedded host"),
    no_wadm: bool = typer.Option(False, "--no-wadm", help="do not start the wadm controller"),
    wadm_process: bool = typer.Option(False, "--wadm-process", envvar="TRELLIS_UP_WADM_PROCESS",
                                      help="run the wadm controller as a process of its own (default: in the "
                                           "host's process, ~35 MiB less)"),
    deploy: Path | None = typer.Option(None, "--deploy", help="once up, deploy this manifest; or build this "
                                          "folder of apps and deploy its wadm.yaml"),
    allow_insecure_registries: list[str] = typer.Option(
        [], "--allow-insecure-registries", envvar="TRELLIS_ALLOW_INSECURE_REGISTRIES",
        help="OCI registry (host or host:port) the host pulls from over plain HTTP (repeatable or "
             "comma-separated; '*' for all)"),
    trusted_issuer: list[str] = typer.Option(
        [], "--trusted-issuer", envvar="TRELLIS_TRUSTED_ISSUERS", metavar="KEY",
        help="the host runs only artifacts signed by this issuer (public key A…; repeatable)"),
    allow_python_provider: list[str] = typer.Option(
        [], "--allow-python-provider", envvar="TRELLIS_ALLOW_PYTHON_PROVIDERS", metavar="MODULE",
        help="let python:MODULE providers run this module ('*' = any; repeatable)"),
    config: list[str] = typer.Option([], "--config", metavar="NAME.KEY=VALUE",
                                     help="with --deploy: set KEY of the manifest's inline config NAME "
                                          "(repeatable), e.g. --config http-listen.address=127.0.0.1:9090"),
    no_ui: bool = typer.Option(False, "--no-ui", help="do not start the web dashboard"),
    ui_port: int = typer.Option(3030, "--ui-port", envvar="TRELLIS_UI_PORT", min=1, max=65535,
                                help="port of the web dashboard ('trellis ui')"),
    ui_host: str = typer.Option("127.0.0.1", "--ui-host", envvar="TRELLIS_UI_HOST",
                                help="address the web dashboard listens on"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", envvar="TRELLIS_METRICS_PORT",
                                               help="serve the lattice's Prometheus metrics at "
                                                    "http://HOST:PORT/metrics"),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", envvar="TRELLIS_METRICS_HOST",
                                     help="address for --metrics-port (0.0.0.0: every interface)"),
    log_format: str | None = typer.Option(None, "--log-format", envvar="TRELLIS_LOG_FORMAT",
                                             help="text or json (one object a line, with trace ids) for every "
                                                  "process [default: text]"),
    log_to: str | None = typer.Option(None, "--log-to", envvar="TRELLIS_LOG_TO",
                                         help="stdout (this terminal, containers, journald) or files "
                                              "(STATE_DIR/logs, rotated) [default: STATE_DIR/logs]"),
    ready_timeout: float = typer.Option(60.0, "--ready-timeout", envvar="TRELLIS_UP_READY_TIMEOUT", min=0.1,
                                        help="seconds to wait for wadm to answer before giving up (exit 1)"),
    *,
    policy: object,  # PolicySettings (typer evaluates the annotations)
) -> None:
    """Run NATS, a host and wadm on this machine until Ctrl-C.

    The banner is printed once the host and wadm answer: commands typed after it find them."""
    from trellis.interfaces.logs import DESTINATIONS, FORMATS, choice
    from trellis.signing import parse_issuers
    from trellis.up import Up, UpError, UpSettings

    try:
        issuers = parse_issuers(trusted_issuer)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        log_format = choice(log_format, "TRELLIS_LOG_FORMAT", FORMATS, "text") if log_format else None
        log_to = choice(log_to, "TRELLIS_LOG_TO", DESTINATIONS, "stdout") if log_to else None
    except ValueError as exc:
        raise fail(f"--log-format/--log-to: {exc}") from None
    if config and deploy is None:
        raise fail("--config applies to the manifest of --deploy")
    if config:
        from trellis.wadm.manifest.overrides import OverrideError, parse_override

        try:
            for item in config:
                parse_override(item)
        except OverrideError as exc:
            raise fail(str(exc)) from None
    settings = UpSettings(state_dir=state_dir, nats_host=nats_host, nats_port=nats_port,
                          lattice=lattice, labels=label, with_wadm=not no_wadm, wadm_in_host=not wadm_process,
                          deploy=deploy,
                          deploy_config=config, insecure_registries=split_list(allow_insecure_registries),
                          trusted_issuers=issuers, allow_python_providers=tuple(split_list(allow_python_provider)),
                          ui_host=ui_host, ui_port=None if no_ui else ui_port, policy=cast("PolicySettings", policy),
                          metrics_port=metrics_port, metrics_host=metrics_host, log_format=log_format,
                          log_to=log_to, wadm_ready_s=ready_timeout)
    try:
        code = Up(settings, say=_say).run()
    except UpError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


def _say(text: str) -> None:
    typer.echo(text)
    sys.stdout.flush()


@app.command("version")
def version() -> None:
    """Print the Trellis version."""
    import trellis

    typer.echo(trellis.__version__)


if __name__ == "__main__":
    app()
