"""`trellis get components|providers` (lattice-wide), `trellis events` (follow the lattice) and
`trellis spy` (follow one component's calls)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trellis.interfaces.client import LatticeClient
    from trellis.interfaces.taps import SpyRecord

from .hosts import get_app, no_hosts_message
from .options import Conn, with_conn
from .output import Output, OutputOpt, emit, err_console, fail, run, run_on, table

StreamOutputOpt = typer.Option(Output.table, "-o", "--output",
                               help="table: a line each for people; json: one JSON object per line; "
                                    "yaml: one YAML document each")
TimeoutOpt = typer.Option(1.0, "--timeout", help="seconds to wait for hosts to answer")
T = TypeVar("T")


def _placed(hosts: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} ({n})" if n else name for name, n in hosts)


def _lattice_rows(conn: Conn, timeout: float, output: Output, fold: Callable[[list[Any]], list[T]]) -> list[T] | None:
    """The rows ``fold`` makes of every host's inventory, or None when they were printed as
    JSON/YAML or the lattice has no hosts (said on stderr): what is left is the table."""
    found = run_on(conn, lambda c: c.get_hosts(timeout_s=timeout))
    rows = fold(found)
    if emit(rows, output):
        return None
    if not found:
        err_console.print(no_hosts_message(conn.lattice), highlight=False, markup=False)
        return None
    return rows


@get_app.command("components")
@with_conn
def get_components(output: Output = OutputOpt, timeout: float = TimeoutOpt, *, conn: Conn) -> None:
    """List the components running in the lattice, with the hosts that run them."""
    from trellis.views.inventory import components

    rows = _lattice_rows(conn, timeout, output, components)
    if rows is None:
        return
    table(f"components in lattice {conn.lattice!r}", ["ID", "APP", "IMAGE", "MAX INSTANCES", "HOSTS"], [
        (r.id, f"{r.app} {r.app_version or ''}".strip() if r.app else "", r.image, r.max_instances,
         _placed([(p.host_name, str(p.max_instances)) for p in r.hosts]))
        for r in rows
    ], empty=f"no components run in lattice {conn.lattice!r}: start one ('trellis start component') or "
             "deploy an app ('trellis app deploy')")


@get_app.command("providers")
@with_conn
def get_providers(output: Output = OutputOpt, timeout: float = TimeoutOpt, *, conn: Conn) -> None:
    """List the capability providers running in the lattice, with their hosts and health."""
    from trellis.views.inventory import providers

    rows = _lattice_rows(conn, timeout, output, providers)
    if rows is None:
        return
    table(f"providers in lattice {conn.lattice!r}", ["ID", "APP", "IMAGE", "STATUS", "HOSTS"], [
        (r.id, f"{r.app} {r.app_version or ''}".strip() if r.app else "", r.image, r.status,
         _placed([(p.host_name, p.status) for p in r.hosts]))
        for r in rows
    ], empty=f"no providers run in lattice {conn.lattice!r}: start one ('trellis start provider') or "
             "deploy an app ('trellis app deploy')")


def events_command(
    output: Output = StreamOutputOpt,
    types: list[str] = typer.Option([], "--type", "-t", help="only events of this type (repeatable; "
                                    "e.g. host_started, component_scaled, host_lost)"),
    heartbeats: bool = typer.Option(False, "--heartbeats",
                                    help="also show host_heartbeat events (every second per host)"),
    count: int | None = typer.Option(None, "--count", min=1, help="exit after this many events"),
    *,
    conn: Conn,
) -> None:
    """Follow the lattice's events as they happen: hosts, placements, apps, health, links (Ctrl-C stops).

    Hosts up and down, placements, app status, provider health, links. A host that dies without
    a word shows as host_lost."""
    from trellis.interfaces.events import Event, EventType
    from trellis.views.feed import EventFeed, local_time, summarize

    wanted = {t for item in types for t in item.split(",") if t}

    def show(ev: Event) -> bool:
        if wanted:
            return ev.type in wanted
        return heartbeats or ev.type != EventType.HOST_HEARTBEAT

    async def follow(c: LatticeClient) -> None:
        assert c.nc is not None
        async with EventFeed(c.nc, c.lattice) as feed:
            feed.seed(await c.get_hosts(timeout_s=0.5))  # names for the first events' sources
            err_console.print(f"following events of lattice {c.lattice!r} (Ctrl-C to stop)", highlight=False)
            seen = 0
            async for ev in feed.events():
                if not show(ev):
                    continue
                if output is not Output.table:
                    _write_record(ev.model_dump(mode="json"), output)
                else:
                    src = feed.host_name(ev.source)
                    src = src if len(src) <= 24 else src[:23] + "…"
                    sys.stdout.write(f"{local_time(ev.time)}  {ev.type:<22} {src:<24} "
                                     f"{summarize(ev, feed.host_name)}\n")
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    return

    _follow(conn, follow)


def _follow(conn: Conn, fn: Callable[[LatticeClient], Awaitable[None]]) -> None:
    """Run a following command until it ends or Ctrl-C (exit 0, no traceback)."""
    from trellis.interfaces.client import LatticeClient

    async def go() -> None:
        async with LatticeClient(conn.nats, conn.lattice) as c:
            # connected (a bad address failed fast): from now on ride out NATS restarts, as a follower should
            if c.nc is not None:
                c.nc.options["max_reconnect_attempts"] = -1
            await fn(c)

    try:
        run(go(), conn.nats.url)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:  # `trellis events | head`
        raise typer.Exit(0) from None



def spy_command(
    component_id: str = typer.Argument(..., help="the component to watch (see 'trellis get components')"),
    output: Output = StreamOutputOpt,
    count: int | None = typer.Option(None, "--count", min=1, help="exit after this many calls"),
    *,
    conn: Conn,
) -> None:
    """Watch every call into and out of a component as it happens (Ctrl-C stops).

    Each call: caller, function, arguments and result (abbreviated), duration, outcome. The
    component's workers stop sending records a few seconds after the last spy leaves."""
    from trellis.interfaces import subjects
    from trellis.interfaces.subjects import SubjectError
    from trellis.interfaces.taps import RENEW_EVERY_S, SpyRecord, TapWant
    from trellis.views.feed import local_time

    try:
        subject = subjects.tap_spy(conn.lattice, component_id)
    except SubjectError as exc:
        raise fail(str(exc)) from None

    async def spy(c: LatticeClient) -> None:
        nc = c.nc
        assert nc is not None
        records: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_record(msg: Any) -> None:
            records.put_nowait(msg.data)

        sub = await nc.subscribe(subject, cb=on_record)
        want = subjects.tap_want(conn.lattice)

        async def renew() -> None:
            while True:
                try:
                    await nc.publish(want, TapWant(spy=component_id).model_dump_json().encode())
                    await nc.flush(timeout=RENEW_EVERY_S)  # type: ignore[arg-type]  # nats-py says int; wait_for takes a float
                except Exception:  # NATS away for a moment: ask again on the next round
                    pass
                await asyncio.sleep(RENEW_EVERY_S)

        renewer = asyncio.get_running_loop().create_task(renew(), name="spy-renew")
        try:
            hosts = await c.get_hosts(timeout_s=0.5)
            if not any(comp.id == component_id for h in hosts for comp in h.components):
                err_console.print(f"[yellow]note:[/yellow] no host runs component {component_id!r} now; "
                                  "waiting for its calls", highlight=False)
            err_console.print(f"spying on component {component_id!r} in lattice {c.lattice!r} (Ctrl-C to stop)",
                              highlight=False)
            seen = 0
            while count is None or seen < count:
                data = await records.get()
                if output is Output.json:
                    sys.stdout.write(data.decode() + "\n")
                elif output is Output.yaml:
                    _write_record(json.loads(data), output)
                else:
                    try:
                        r = SpyRecord.model_validate_json(data)
                    except ValueError:
                        continue
                    sys.stdout.write(_spy_line(r, local_time(r.time)) + "\n")
                sys.stdout.flush()
                seen += 1
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:  # withdraw the wish at once rather than letting it lapse
                await nc.publish(want, TapWant(spy=component_id, ttl_s=0).model_dump_json().encode())
                await sub.unsubscribe()
                await nc.flush(timeout=1)
            except Exception:
                pass

    _follow(conn, spy)


def _write_record(obj: Any, output: Output) -> None:
    """One record of a stream: a JSON line, or a YAML document."""
    if output is Output.json:
        sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
    else:
        import yaml

        sys.stdout.write("---\n" + yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def _spy_line(r: SpyRecord, when: str) -> str:
    arrow = "IN " if r.direction == "in" else "OUT"
    dur = f"{r.duration_ms:.2f} ms" if r.duration_ms < 100 else f"{r.duration_ms:.0f} ms"
    tags = [dur, r.outcome if r.outcome == "ok" else f"{r.outcome} ({r.error_kind})"]
    if r.via:
        tags.append(r.via)
    if r.cold:
        tags.append("cold")
    sign = "=>" if r.outcome == "ok" else "!!"
    return f"{when} {arrow} {r.caller} -> {r.target}  {r.function} {r.args} {sign} {r.result}  ({', '.join(tags)})"
