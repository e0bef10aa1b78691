"""`trellis start|stop|scale|update component`, `trellis call`, `trellis push`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from trellis.interfaces.client import LatticeClient
    from trellis.signing import IssuerKey

from trellis.host.oci import Credentials

from .hosts import stop_app
from .options import Conn, with_conn
from .output import fail, print_json, run, run_on, with_progress

start_app = typer.Typer(help="Start components and providers.", no_args_is_help=True)
scale_app = typer.Typer(help="Scale components.", no_args_is_help=True)
update_app = typer.Typer(help="Update components to a new image.", no_args_is_help=True)


def _constraints(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise fail(f"{p!r} must be KEY=VALUE")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _image(ref: str) -> str:
    """Files are sent as absolute file:// references so any local host can read them."""
    from trellis.interfaces.artifacts import parse_ref

    kind = parse_ref(ref)
    if kind.kind == "file":
        if not Path(kind.location).exists():
            raise fail(f"{ref}: no such file")
        return "file://" + kind.location
    return ref


@start_app.command("component")
@with_conn
def start_component(
    ref: str = typer.Argument(..., help="path, file://, http(s):// or lattice://sha256:… reference"),
    component_id: str = typer.Argument(..., metavar="ID", help="the component's id on the lattice"),
    max_instances: int = typer.Option(1, "--max-instances", help="concurrent invocations per host"),
    host_id: str | None = typer.Option(None, "--host-id", help="run on this host (id, name or unique id prefix)"),
    constraint: list[str] = typer.Option([], "--constraint", help="pick a host with label key=value"),
    reuse: int = typer.Option(1, "--reuse", help="invocations one instance serves (1 = fresh per call)"),
    reuse_idle: float | None = typer.Option(None, "--reuse-idle", help="drop a reused instance idle this long (s)"),
    timeout_ms: int | None = typer.Option(
        None, "--timeout-ms",
        help="per-invocation deadline in the component (a wasi:http handler's: time its bodies do not move)"),
    fuel: int | None = typer.Option(None, "--fuel", help="instruction budget per invocation"),
    memory_mb: int | None = typer.Option(None, "--memory-mb", help="linear-memory cap per instance"),
    annotation: list[str] = typer.Option([], "--annotation", help="key=value annotation"),
    config: list[str] = typer.Option([], "--config", help="named config the component reads (repeatable)"),
    digest: str | None = typer.Option(None, "--digest", help="pin the artifact: sha256:<hex>"),
    env: list[str] = typer.Option([], "--env", help="WASI: environment variable KEY=VALUE to grant"),
    preopen: list[str] = typer.Option([], "--preopen", help="WASI: HOST_DIR:GUEST_DIR[:rw] to grant"),
    inherit_stdio: bool = typer.Option(False, "--inherit-stdio", help="WASI: guest stdout/stderr to the host log"),
    non_retryable: list[str] = typer.Option([], "--non-retryable",
                                            help="function that must run at most once (repeatable)"),
    no_wait: bool = typer.Option(False, "--no-wait", help="return once the host accepted the request"),
    wait_timeout: float = typer.Option(120.0, "--wait-timeout"),
    *,
    conn: Conn,
) -> None:
    """Start a component on a host (chosen by capacity unless --host-id or --constraint).

    WASI is deny-by-default: no environment, files or stdio unless granted here.
    """
    preopens = []
    for p in preopen:
        parts = p.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise fail(f"--preopen {p!r}: use HOST_DIR:GUEST_DIR or HOST_DIR:GUEST_DIR:rw")
        preopens.append({"host_path": str(Path(parts[0]).resolve()), "guest_path": parts[1],
                         "writable": len(parts) == 3 and parts[2] == "rw"})
    limits: dict[str, Any] = {}
    if timeout_ms is not None:
        limits["timeout_s"] = timeout_ms / 1000
    if fuel is not None:
        limits["fuel"] = fuel
    if memory_mb is not None:
        limits["memory_bytes"] = memory_mb * 1024 * 1024
    image = _image(ref)

    async def start(c: LatticeClient) -> dict[str, Any]:
        host = (await c.pick_host(_constraints(constraint))).id if host_id is None else await c.resolve_host(host_id)
        op = c.start_component(
            image, component_id, max_instances=max_instances, host_id=host,
            wait=not no_wait, timeout_s=wait_timeout,
            annotations=_constraints(annotation), config=config, digest=digest,
            non_retryable=non_retryable,
            wasi={"env": _constraints(env), "preopens": preopens, "inherit_stdio": inherit_stdio},
            reuse={"max_invocations": reuse, "max_idle_s": reuse_idle}, limits=limits)
        return await op if no_wait else await with_progress(c, host, component_id, op)

    data = run_on(conn, start)
    typer.echo(f"component {component_id} {'starting' if no_wait else 'running'} on host {data['host_id']}"
               + (f" (max {data.get('max_instances')} instances)" if not no_wait else ""))


@stop_app.command("component")
@with_conn
def stop_component(
    component_id: str = typer.Argument(..., metavar="ID"),
    host_id: str | None = typer.Option(None, "--host-id",
                                       help="only on this host (id, name or unique id prefix; default: everywhere)"),
    no_wait: bool = typer.Option(False, "--no-wait"),
    *,
    conn: Conn,
) -> None:
    """Stop a component (on every host running it, or on one)."""

    hosts = run_on(conn, lambda c: c.stop_component(component_id, host_id=host_id, wait=not no_wait))
    typer.echo(f"component {component_id} stopped on {len(hosts)} host(s)")


@scale_app.command("component")
@with_conn
def scale_component(
    component_id: str = typer.Argument(..., metavar="ID"),
    max_instances: int = typer.Option(..., "--max-instances", help="0 stops it"),
    host_id: str | None = typer.Option(None, "--host-id", help="only on this host (id, name or unique id prefix)"),
    no_wait: bool = typer.Option(False, "--no-wait"),
    *,
    conn: Conn,
) -> None:
    """Change how many concurrent invocations a component may serve per host."""

    hosts = run_on(conn, lambda c: c.scale_component(component_id, max_instances, host_id=host_id, wait=not no_wait))
    typer.echo(f"component {component_id} scaled to {max_instances} on {len(hosts)} host(s)")


@update_app.command("component")
@with_conn
def update_component(
    component_id: str = typer.Argument(..., metavar="ID"),
    new_ref: str = typer.Argument(..., metavar="NEW_REF"),
    host_id: str | None = typer.Option(None, "--host-id", help="only on this host (id, name or unique id prefix)"),
    no_wait: bool = typer.Option(False, "--no-wait"),
    *,
    conn: Conn,
) -> None:
    """Replace a running component's image; the new version serves before the old one drains.

    While it waits, it says on stderr what each host is doing (fetching, compiling, ...)."""
    image = _image(new_ref)

    async def update(c: LatticeClient) -> list[str]:
        hosts = await c.hosts_running(component_id, host_id)
        for h in hosts:  # one at a time, as the client does: the others keep serving the old image
            op = c.update_component(component_id, image, host_id=h, wait=not no_wait)
            await (op if no_wait else with_progress(c, h, component_id, op))
        return hosts

    hosts = run_on(conn, update)
    typer.echo(f"component {component_id} updated to {new_ref} on {len(hosts)} host(s)")


def to_json(value: Any) -> Any:
    """Plain WIT values as JSON: list<u8> (bytes) becomes a list of integers."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def is_err(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "err" in value


@with_conn
def call_command(
    component_id: str = typer.Argument(..., metavar="ID"),
    operation: str = typer.Argument(..., metavar="ns:pkg/iface.func"),
    args: str = typer.Argument("[]", metavar="[JSON_ARGS]", help="the arguments as a JSON array"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds"),
    repeat: int = typer.Option(1, "--repeat", min=1, help="call N times and print a JSON summary"),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="calls in flight with --repeat"),
    no_retry: bool = typer.Option(False, "--no-retry", help="at-most-once: do not resend a call lost in flight"),
    *,
    conn: Conn,
) -> None:
    """Invoke a component's function and print the result as JSON."""
    try:
        parsed = json.loads(args)
    except ValueError as exc:
        raise fail(f"arguments must be a JSON array: {exc}") from None
    if not isinstance(parsed, list):
        raise fail("arguments must be a JSON array, e.g. '[1, \"two\"]'")

    if repeat == 1:
        from trellis.interfaces.errors import ErrorCode
        from trellis.interfaces.rpc_client import RpcError

        async def once(c: LatticeClient) -> Any:
            call = asyncio.ensure_future(c.call(component_id, operation, *parsed, timeout_s=timeout,
                                                retryable=not no_retry))
            try:
                # a call nobody answers waits for an instance (one may be starting, or failing over)
                # until its deadline; a typo or a stopped component should not take that long
                done, _ = await asyncio.wait({call}, timeout=min(NOT_SERVED_GRACE_S, timeout))
                if not done and not await _served_anywhere(c, component_id):
                    call.cancel()
                    return RpcError(f"nothing on lattice {conn.lattice!r} runs {component_id!r}: no host has a "
                                    "component or provider with that id (see 'trellis get components')",
                                    ErrorCode.NOT_FOUND, "not_running")
                return await call
            except RpcError as exc:  # the call's own failure, with its code and kind
                return exc
            finally:
                call.cancel()

        result = run_on(conn, once)  # connection and lattice errors: a message, exit 1
        if isinstance(result, RpcError):
            kinds = [result.code.value] + ([result.kind] if result.kind and result.kind != result.code.value else [])
            raise fail(f"{result.message} ({', '.join(kinds)})")
        if is_err(result):
            sys.stderr.write(json.dumps(to_json(result["err"])) + "\n")
            raise typer.Exit(1)
        sys.stdout.write(json.dumps(to_json(result)) + "\n")
        return

    summary = run(_load(conn, component_id, operation, parsed, timeout, repeat, concurrency, not no_retry),
                  conn.nats.url)
    print_json(summary)
    if summary["failed"]:
        raise typer.Exit(1)


#: seconds a CLI call waits before checking that something on the lattice runs its target
NOT_SERVED_GRACE_S = 3.0


async def _served_anywhere(c: LatticeClient, target: str) -> bool:
    """Whether a live host runs a component or provider ``target`` (a failed look counts as yes)."""
    try:
        hosts = await c.get_hosts(timeout_s=0.5)
    except Exception:
        return True
    return any(target in {x.id for x in h.components} | {p.id for p in h.providers} for h in hosts)


async def _load(conn: Conn, cid: str, op: str, args: list[Any], timeout: float, repeat: int,
                concurrency: int, retryable: bool) -> dict[str, Any]:
    from trellis.interfaces.client import LatticeClient
    from trellis.interfaces.rpc_client import RpcError

    latencies: list[float] = []
    failed = 0
    errors: dict[str, int] = {}
    async with LatticeClient(conn.nats, conn.lattice) as c:
        remaining = repeat

        async def worker() -> None:
            nonlocal remaining, failed
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    result = await c.call(cid, op, *args, timeout_s=timeout, retryable=retryable)
                    if is_err(result):
                        raise RpcError(json.dumps(to_json(result["err"])))
                    latencies.append((time.perf_counter() - t0) * 1000)
                except RpcError as exc:
                    failed += 1
                    errors[exc.message[:120]] = errors.get(exc.message[:120], 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, repeat))))
        elapsed = time.perf_counter() - start
        stats = dict(c.rpc.stats)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3) if latencies else 0.0

    return {"ok": len(latencies), "failed": failed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "rps": round(repeat / elapsed, 1) if elapsed else 0.0, "elapsed_s": round(elapsed, 3),
            "concurrency": concurrency, "retries": stats.get("retries", 0), "errors": errors}


@with_conn
def push_command(
    target: str = typer.Argument(..., metavar="[oci://REGISTRY/REPO:TAG] FILE",
                                 help="a .wasm file (or a provider .py file or folder), or "
                                      "oci://REGISTRY/REPO:TAG followed by the .wasm file"),
    file: Path | None = typer.Argument(None, metavar="", dir_okay=False, show_default=False),
    insecure: bool = typer.Option(False, "--insecure", help="OCI: talk plain HTTP to the registry"),
    user: str | None = typer.Option(None, "--user", envvar="TRELLIS_OCI_USER", help="OCI: registry user"),
    password: str | None = typer.Option(None, "--password", envvar="TRELLIS_OCI_PASSWORD",
                                           help="OCI: registry password"),
    token: str | None = typer.Option(None, "--token", envvar="TRELLIS_OCI_TOKEN", help="OCI: bearer token"),
    key_file: Path | None = typer.Option(None, "--issuer-key", envvar="TRELLIS_ISSUER_KEY",
                                            help="sign it with this issuer key on the way (see 'trellis sign')"),
    new_key_file: Path | None = typer.Option(None, "--new-issuer-key",
                                                help="create an issuer key in this file and sign with it"),
    *,
    conn: Conn,
) -> None:
    """Put a .wasm or a provider into the lattice's artifact store, or a .wasm into an OCI registry.

    A .wasm, a provider .py file or package folder goes to the artifact store (prints
    lattice://sha256:…); ``oci://REGISTRY/REPO:TAG FILE`` publishes a .wasm in the format wash and
    wkg use (prints REGISTRY/REPO:TAG@sha256:…)."""
    from .sign_cmd import issuer_key

    key = issuer_key(key_file, new_key_file)
    if target.startswith("oci://"):
        if file is None:
            raise fail("push oci://REGISTRY/REPO:TAG FILE: name the .wasm file to publish")
        typer.echo(_push_oci(target, file, insecure, Credentials(user, password, token), key))
        return
    if file is not None:
        raise fail(f"push takes one file, or oci://REGISTRY/REPO:TAG and a file (got {target!r} and {str(file)!r})")
    data = _wasm_bytes(Path(target), key, providers=True)
    typer.echo(run_on(conn, lambda c: c.push(data)))


def _wasm_bytes(file: Path, key: IssuerKey | None = None, *, providers: bool = False) -> bytes:
    """The file's bytes, signed with ``key`` when one is given. With ``providers``, a provider
    ``.py`` file or package folder is accepted too (a folder travels packed, and unsigned)."""
    if providers and file.is_dir():
        from trellis.interfaces.provider_package import PackageError, pack_folder

        if key is not None:
            raise fail(f"{file} is a folder: only a .wasm or a provider .py file can be signed")
        try:
            return pack_folder(file)
        except (PackageError, OSError) as exc:
            raise fail(str(exc)) from None
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    kind = "wasm" if data.startswith(b"\x00asm") else "py" if providers and file.suffix == ".py" else ""
    if not kind:
        raise fail(f"{file} is not a WebAssembly binary" + (" nor a provider .py file or folder" if providers else ""))
    if key is not None:
        from .sign_cmd import sign_bytes

        data = sign_bytes(data, kind, key, name=file.stem)
    return data


def _push_oci(target: str, file: Path, insecure: bool, creds: Credentials, key: IssuerKey | None) -> str:
    from trellis.host import oci
    from trellis.interfaces.artifacts import ArtifactError

    data = _wasm_bytes(file, key)
    try:
        ref = oci.parse_oci(target)
        digest = oci.push(ref, data, insecure=insecure, creds=creds)
    except ArtifactError as exc:
        raise fail(str(exc)) from None
    return f"{ref}@{digest}"


@start_app.command("provider")
@with_conn
def start_provider(
    ref: str = typer.Argument(..., help="builtin:NAME, python:MODULE, lattice://sha256:…, or a path to a "
                                        "provider .py file or package folder"),
    provider_id: str = typer.Argument(..., metavar="ID"),
    host_id: str | None = typer.Option(None, "--host-id", help="run on this host (id, name or unique id prefix)"),
    constraint: list[str] = typer.Option([], "--constraint", help="pick a host with label key=value"),
    config: list[str] = typer.Option([], "--config", help="named config (repeatable, merged in order)"),
    annotation: list[str] = typer.Option([], "--annotation", help="key=value annotation"),
    no_wait: bool = typer.Option(False, "--no-wait"),
    wait_timeout: float = typer.Option(60.0, "--wait-timeout"),
    *,
    conn: Conn,
) -> None:
    """Start a capability provider process on a host."""
    if (ref.endswith(".py") or Path(ref).expanduser().is_dir()) and not ref.startswith("file://"):
        if not Path(ref).expanduser().exists():  # not the host's "cannot read it (not on that machine)"
            raise fail(f"{ref}: no such file")
        ref = str(Path(ref).expanduser().resolve())  # a file or a package folder, for a host on this machine

    data = run_on(conn, lambda c: c.start_provider(ref, provider_id, host_id=host_id,
                                                   constraints=_constraints(constraint),
                                  config=config, annotations=_constraints(annotation),
                                  wait=not no_wait, timeout_s=wait_timeout))
    typer.echo(f"provider {provider_id} {'starting' if no_wait else 'running'} on host {data['host_id']}")


@stop_app.command("provider")
@with_conn
def stop_provider(
    provider_id: str = typer.Argument(..., metavar="ID"),
    host_id: str | None = typer.Option(None, "--host-id",
                                       help="only on this host (id, name or unique id prefix; default: everywhere)"),
    no_wait: bool = typer.Option(False, "--no-wait"),
    *,
    conn: Conn,
) -> None:
    """Stop a provider (on every host running it, or on one)."""

    hosts = run_on(conn, lambda c: c.stop_provider(provider_id, host_id=host_id, wait=not no_wait))
    typer.echo(f"provider {provider_id} stopped on {len(hosts)} host(s)")
