"""`trellis build`: Python apps into WebAssembly components."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from trellis.build import AppSpec, BuildError, BuildOptions, BuildResult, build, find_apps

from .output import console, err_console, fail, human_bytes, print_json, shown_path


def build_command(
    path: Path = typer.Argument(Path("."), help="an app folder, or a folder of apps (all are built)"),
    out_dir: Path | None = typer.Option(None, "-o", "--out-dir",
                                           help="where <name>.wasm goes (default: PATH/build)"),
    world: str | None = typer.Option(None, "--world", "-w",
                                        help="world to target, e.g. trellis:http/proxy@0.1.0 (one app only)"),
    wit: list[Path] = typer.Option([], "--wit", help="more WIT packages: a package folder or a folder of them"),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", envvar="TRELLIS_BUILD_CACHE",
                                             help="content-addressed build cache (default ~/.cache/trellis/build)"),
    json_out: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Build Python and JavaScript apps (app.py or app.js + wit/, or trellis.toml) into components."""
    options = BuildOptions(world=world, wit_dirs=tuple(wit), cache_dir=cache_dir)
    target = out_dir if out_dir is not None else path / "build"
    results: list[BuildResult] = []
    try:
        apps = find_apps(path)
        if world is not None and len(apps) > 1:
            raise BuildError(f"--world names one app's world, but {path} holds {len(apps)} apps")
        with err_console.status("", spinner="dots") as status:
            for i, app in enumerate(apps, 1):

                def stage(spec: AppSpec, what: str, i: int = i) -> None:
                    status.update(escape(f"[{i}/{len(apps)}] {spec.name}: {what}"))

                stage(app, "starting")
                result = build(app, target, options, progress=stage)
                results.append(result)
                if not json_out:
                    _print_result(result, width=max(len(a.name) for a in apps))
    except BuildError as exc:
        raise fail(str(exc)) from None
    if json_out:
        print_json([{"name": r.app.name, "path": str(r.path), "status": r.status, "world": r.world,
                     "size": r.size, "seconds": round(r.seconds, 3), "source": str(r.app.root)}
                    for r in results])


def _print_result(r: BuildResult, width: int) -> None:
    colour = {"built": "green", "cached": "cyan", "unchanged": "dim"}[r.status]
    line = f"{r.app.name:<{width}}  {shown_path(r.path)}  {human_bytes(r.size)}  {r.seconds:.1f}s  ({r.world})"
    console.print(f"[{colour}]{r.status:<9}[/{colour}] {escape(line)}", highlight=False)
