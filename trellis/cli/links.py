"""`trellis link put|del`, `trellis get links`, `trellis config put|get|del|list`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from trellis.interfaces.lattice_config import LatticeConfigError, parse_pairs
from trellis.interfaces.links import DEFAULT_LINK_NAME, Link, LinkError

if TYPE_CHECKING:
    from trellis.interfaces.client import LatticeClient
    from trellis.interfaces.wadm_client import WadmClient

from .hosts import get_app
from .options import Conn, with_conn
from .output import Output, OutputOpt, emit, err_console, fail, run_on, table

link_app = typer.Typer(help="Connect a component's imports to the component or provider that answers them.",
                       no_args_is_help=True)
config_app = typer.Typer(help="Named configuration (key=value maps) that links and providers refer to.",
                         no_args_is_help=True)



def _split(values: list[str]) -> list[str]:
    """Repeatable options also accept comma-separated lists: ``--interface store,atomics``."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@link_app.command("put")
@with_conn
def link_put(
    source_id: str = typer.Argument(..., help="component or provider that makes the calls"),
    target_id: str = typer.Argument(..., help="component or provider that answers them"),
    namespace: str = typer.Argument(..., help="WIT namespace, e.g. wasi"),
    package: str = typer.Argument(..., help="WIT package, e.g. keyvalue"),
    interface: list[str] = typer.Option([], "--interface", help="WIT interface of the package (repeatable)"),
    link_name: str = typer.Option(DEFAULT_LINK_NAME, "--link-name", help="link name"),
    source_config: list[str] = typer.Option([], "--source-config", help="named config for the source (repeatable)"),
    target_config: list[str] = typer.Option([], "--target-config", help="named config for the target (repeatable)"),
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """Create or replace a link: SOURCE_ID's calls to NAMESPACE:PACKAGE/INTERFACE go to TARGET_ID."""
    try:
        link = Link.build(
            source_id=source_id, target=target_id, name=link_name, wit_namespace=namespace,
            wit_package=package, interfaces=_split(interface), source_config=_split(source_config),
            target_config=_split(target_config),
        )
    except LinkError as exc:
        raise fail(exc.message) from None

    async def put(c: LatticeClient) -> tuple[Link, list[str]]:
        stored = await c.put_link(link)
        return stored, await _missing_ends(c, link)

    stored, missing = run_on(conn, put)
    for warning in missing:
        err_console.print(f"warning: {warning}", highlight=False, markup=False)
    if not emit(stored, output):
        typer.echo(f"link put: {stored.describe()}")


async def _missing_ends(c: LatticeClient, link: Link) -> list[str]:
    """Warnings for a link end that no host runs and no application declares (most likely a typo).

    The link is stored anyway: links may be put before what they connect is started."""
    from trellis.interfaces.wadm_client import WadmClient

    ends = {link.source_id, link.target}
    hosts = await c.get_hosts(timeout_s=0.5)
    running = {x.id for h in hosts for x in h.components} | {p.id for h in hosts for p in h.providers}
    unknown = ends - running
    if unknown:
        unknown -= await _declared_ids(WadmClient(c, timeout_s=1.0, wait_leader_s=0.5))
    if not hosts and not (ends - unknown):
        return [f"no hosts in lattice {c.lattice!r} (check --lattice); the link is stored for when they come"]
    if unknown == ends:
        return [f"neither {link.source_id!r} nor {link.target!r} runs anywhere in lattice {c.lattice!r} or is "
                "declared by an application; the link is stored, but check the ids ('trellis get components', "
                "'trellis get providers')"]
    return [f"{end!r} runs nowhere in lattice {c.lattice!r} and no application declares it; "
            "the link is stored for when it starts" for end in sorted(unknown)]


async def _declared_ids(w: WadmClient) -> set[str]:
    """Ids of the components and providers of deployed applications (none when no controller answers)."""
    ids: set[str] = set()
    try:
        for app in (await w.list()).apps:
            if app.deployed_version:
                ids |= {comp.id for comp in (await w.status(app.name)).components}
    except Exception:
        pass
    return ids


@link_app.command("del")
@with_conn
def link_del(
    source_id: str = typer.Argument(...),
    namespace: str = typer.Argument(...),
    package: str = typer.Argument(...),
    link_name: str = typer.Option(DEFAULT_LINK_NAME, "--link-name", help="link name"),
    target: str | None = typer.Option(None, "--target", help="delete only the link to this target"),
    *,
    conn: Conn,
) -> None:
    """Delete the link(s) of SOURCE_ID for NAMESPACE:PACKAGE under a link name."""

    gone = run_on(conn, lambda c: c.del_link(source_id, namespace, package, link_name, target))
    if not gone:
        to = f" to {target}" if target else ""
        raise fail(f"no link from {source_id} for {namespace}:{package} named {link_name!r}{to} "
                   f"in lattice {conn.lattice!r}")
    for lk in gone:
        typer.echo(f"link deleted: {lk.describe()}")


@get_app.command("links")
@with_conn
def get_links(
    source: str | None = typer.Option(None, "--source", help="only links from this source"),
    target: str | None = typer.Option(None, "--target", help="only links to this target"),
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """List the links of the lattice."""

    links = run_on(conn, lambda c: c.get_links(source=source, target=target))
    if emit(links, output):
        return
    table(
        f"links in lattice {conn.lattice!r}",
        ["SOURCE", "TARGET", "WIT", "INTERFACES", "NAME", "SOURCE CONFIG", "TARGET CONFIG"],
        [
            (lk.source_id, lk.target, f"{lk.wit_namespace}:{lk.wit_package}", ",".join(lk.interfaces),
             lk.name, ",".join(lk.source_config), ",".join(lk.target_config))
            for lk in links
        ],
        empty=f"no links in lattice {conn.lattice!r}" + (" match" if source or target else "")
        + ": 'trellis link put' adds one (an app's manifest declares its own)",
    )


@config_app.command("put")
@with_conn
def config_put(
    name: str = typer.Argument(..., help="config name"),
    pairs: list[str] = typer.Argument(..., metavar="KEY=VALUE...", help="the whole config (replaces it)"),
    *,
    conn: Conn,
) -> None:
    """Create or replace a named config."""
    try:
        values = parse_pairs(pairs)
    except LatticeConfigError as exc:
        raise fail(exc.message) from None

    stored = run_on(conn, lambda c: c.put_config(name, values))
    typer.echo(f"config {name!r} put: {', '.join(sorted(stored))}")


@config_app.command("get")
@with_conn
def config_get(
    name: str = typer.Argument(..., help="config name"),
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """Show a named config."""

    values = run_on(conn, lambda c: c.get_config(name))
    if emit(values, output):
        return
    table(f"config {name!r}", ["KEY", "VALUE"], sorted(values.items()))


@config_app.command("del")
@with_conn
def config_del(
    name: str = typer.Argument(..., help="config name"),
    *,
    conn: Conn,
) -> None:
    """Delete a named config."""

    if not run_on(conn, lambda c: c.del_config(name)):
        raise fail(f"config {name!r} not found in lattice {conn.lattice!r}")
    typer.echo(f"config {name!r} deleted")


@config_app.command("list")
@with_conn
def config_list(
    output: Output = OutputOpt,
    *,
    conn: Conn,
) -> None:
    """List the named configs of the lattice (names and keys; values with -o json|yaml).

    ``-o json`` prints an array of ``{"name", "values"}``."""

    configs = run_on(conn, lambda c: c.lattice_store().list_configs())
    if emit([{"name": n, "values": v} for n, v in sorted(configs.items())], output):
        return
    table(f"configs in lattice {conn.lattice!r}", ["NAME", "KEYS"],
          [(n, ",".join(sorted(v))) for n, v in configs.items()])
