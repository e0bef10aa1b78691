"""`trellis get hosts|inventory`, `trellis label put|del`, `trellis stop host`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trellis.interfaces.client import LatticeClient
    from trellis.interfaces.control import HostInfo

from .options import Conn, with_conn
from .output import Output, OutputOpt, emit, err_console, fail, human_bytes, human_duration, run_on, table

get_app = typer.Typer(help="Show what runs on the lattice.", no_args_is_help=True)
label_app = typer.Typer(help="Change a host's labels at run time.", no_args_is_help=True)
stop_app = typer.Typer(help="Stop hosts, components and providers.", no_args_is_help=True)

_HOST_HELP = "the host: its id, its name, or a unique prefix of its id (see 'trellis get hosts')"


def _labels(h: HostInfo) -> str:
    """Every label, built-in ones (os, arch, hostname, python) included: what -o json shows."""
    return ",".join(f"{k}={v}" for k, v in sorted(h.labels.items()))


def no_hosts_message(lattice: str) -> str:
    return (f"no hosts in lattice {lattice!r}: none answered (hosts of other lattices do not; check --lattice "
            "or TRELLIS_LATTICE, and that 'trellis up' or 'trellis host' runs)")


@get_app.command("hosts")
@with_conn
def get_hosts(
    output: Output = OutputOpt,
    timeout: float = typer.Option(1.0, help="seconds to wait for hosts to answer"),
    *,
    conn: Conn,
) -> None:
    """List the hosts of the lattice (every live host answers a ping)."""

    hosts = run_on(conn, lambda c: c.get_hosts(timeout_s=timeout))
    if emit(hosts, output):
        return
    if not hosts:
        err_console.print(no_hosts_message(conn.lattice), highlight=False, markup=False)
        return
    table(
        f"hosts in lattice {conn.lattice!r}",
        ["ID", "NAME", "LABELS", "CPUS", "MEM AVAIL", "LOAD", "COMPONENTS", "PROVIDERS", "UPTIME"],
        [
            (
                h.id, h.name, _labels(h), h.capacity.cpus,
                f"{human_bytes(h.capacity.memory_available_bytes)}/{human_bytes(h.capacity.memory_total_bytes)}",
                h.capacity.load_1m, len(h.components), len(h.providers), human_duration(h.uptime_s),
            )
            for h in hosts
        ],
    )


@get_app.command("inventory")
@with_conn
def get_inventory(
    host_id: str = typer.Argument(..., help=_HOST_HELP),
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """One host's labels, capacity, components and providers."""

    h = run_on(conn, lambda c: c.get_inventory(host_id))
    if emit(h, output):
        return
    cap = h.capacity
    table(f"host {h.name}", ["FIELD", "VALUE"], [
        ("id", h.id), ("version", h.version), ("uptime", human_duration(h.uptime_s)),
        ("cpus", cap.cpus), ("memory",
                             f"{human_bytes(cap.memory_available_bytes)} available of "
                             f"{human_bytes(cap.memory_total_bytes)}"),
        ("load (1m/5m/15m)", f"{cap.load_1m} / {cap.load_5m} / {cap.load_15m}"),
    ])
    table("labels", ["KEY", "VALUE"], sorted(h.labels.items()))
    table("components", ["ID", "IMAGE", "MAX INSTANCES"], [(c.id, c.image, c.max_instances) for c in h.components])
    table("providers", ["ID", "IMAGE", "STATUS"], [(p.id, p.image, p.status) for p in h.providers])


@label_app.command("put")
@with_conn
def label_put(
    host_id: str = typer.Argument(..., help=_HOST_HELP),
    pairs: list[str] = typer.Argument(..., metavar="KEY=VALUE..."),
    *,
    conn: Conn,
) -> None:
    """Set labels on a host."""
    parsed = []
    for pair in pairs:
        if "=" not in pair:
            raise fail(f"label {pair!r} must be KEY=VALUE")
        k, v = pair.split("=", 1)
        parsed.append((k, v))

    _change_labels(conn, [_put_label(host_id, k, v) for k, v in parsed])


@label_app.command("del")
@with_conn
def label_del(
    host_id: str = typer.Argument(..., help=_HOST_HELP),
    keys: list[str] = typer.Argument(..., metavar="KEY..."),
    *,
    conn: Conn,
) -> None:
    """Remove labels from a host."""
    _change_labels(conn, [_del_label(host_id, k) for k in keys])


def _put_label(host_id: str, key: str, value: str) -> Callable[[LatticeClient], Awaitable[HostInfo]]:
    return lambda c: c.put_label(host_id, key, value)


def _del_label(host_id: str, key: str) -> Callable[[LatticeClient], Awaitable[HostInfo]]:
    return lambda c: c.del_label(host_id, key)


def _change_labels(conn: Conn, changes: list[Callable[[LatticeClient], Awaitable[HostInfo]]]) -> None:
    """Apply label changes one after another; print the host's labels after the last."""

    async def apply(c: LatticeClient) -> HostInfo:
        info = None
        for change in changes:
            info = await change(c)
        assert info is not None
        return info

    h = run_on(conn, apply)
    typer.echo(f"labels of {h.name}: " + ", ".join(f"{k}={v}" for k, v in sorted(h.labels.items())))


@stop_app.command("host")
@with_conn
def stop_host(
    host_id: str = typer.Argument(..., help=_HOST_HELP),
    timeout: float = typer.Option(None, "--timeout", help="seconds the host may take to drain"),
    *,
    conn: Conn,
) -> None:
    """Stop a host gracefully: it drains, announces host_stopped and exits."""

    async def stop(c: LatticeClient) -> str:
        hid = await c.resolve_host(host_id)
        await c.stop_host(hid, timeout)
        return hid

    typer.echo(f"host {run_on(conn, stop)} is stopping")
