"""Building an app: its WIT laid out, its world resolved, the cache key, the componentizer run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis.interfaces.wit_packages import package_dirs, package_name, wit_files

from . import js as build_js
from .apps import (
    _MAX_ERROR_LINES,
    _NOT_SOURCES,
    _QUALIFIED_WORLD,
    APP_FILE,
    OUTPUT_DIR,
    AppSpec,
    BuildError,
    BuildOptions,
    BuildResult,
    Progress,
    Status,
    default_cache_dir,
    find_apps,
    load_app,
)

# ---------------------------------------------------------------- tools


def find_tool(name: str) -> str:
    """A console script: beside this Python first (the active environment), then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise BuildError(f"{name} not found beside {sys.executable} or on PATH: building components needs the "
                     f"build extra (pip install 'trellis-wasm[build]')")


_VERSIONS: dict[str, str] = {}


def _tool_version(tool: str) -> str:
    if tool not in _VERSIONS:
        _VERSIONS[tool] = _run([tool, "--version"], what=f"{Path(tool).name} --version").strip()
    return _VERSIONS[tool]


def _run(cmd: list[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout_s: float = 60.0, clean: Callable[[str], str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took longer than {timeout_s:.0f} s") from None
    except OSError as exc:
        raise BuildError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise BuildError(f"{what} failed:\n{(clean or _trim)(output)}")
    return proc.stdout


# ---------------------------------------------------------------- building


def _extra_packages(dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """(package name, folder) for each ``--wit`` folder: a package, or a folder of packages."""
    found: list[tuple[str, Path]] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise BuildError(f"--wit {d}: no such folder")
        name = package_name(d)
        if name is not None:
            found.append((name, d))
            continue
        inner = package_dirs(d)
        if not inner:
            raise BuildError(f"--wit {d}: no WIT package here (no `package ns:name;` in its .wit files)")
        found.extend(inner.items())
    return found


def _present_packages(deps: Path) -> set[str]:
    """Packages an app's own ``wit/deps/`` already provides (folders or single files)."""
    names = {package_name(entry) for entry in deps.iterdir()} if deps.is_dir() else set()
    return {n for n in names if n}


def _assemble_wit(app: AppSpec, target: Path, extra: Sequence[tuple[str, Path]]) -> str:
    """Lay out the WIT to build against in ``target``; return the main package's name."""
    if app.wit is not None:
        shutil.copytree(app.wit, target, ignore=shutil.ignore_patterns(".*"))
        main = package_name(target)
        if main is None:
            if not wit_files(target):
                raise BuildError(f"{app.wit} holds no .wit files")
            raise BuildError(f"{app.wit}: no `package ns:name;` declaration")
    else:
        target.mkdir(parents=True)
        main = "trellis-build:app"
        (target / "app.wit").write_text(f"package {main};\n", encoding="utf-8")
    deps = target / "deps"
    present = _present_packages(deps)
    for name, folder in [*extra, *package_dirs().items()]:
        if name in present:
            continue
        present.add(name)
        shutil.copytree(folder, deps / re.sub(r"[^A-Za-z0-9.-]+", "-", name),
                        ignore=shutil.ignore_patterns("deps", ".*"))
    return main


def _wit_json(wasm_tools: str, wit: Path, app: AppSpec) -> dict[str, Any]:
    """The assembled WIT, resolved by wasm-tools, as JSON."""
    where = str(app.wit) if app.wit else "the shared WIT packages"
    out = _run([wasm_tools, "component", "wit", str(wit), "--json"], what=f"WIT of {app.name} ({where})",
               clean=lambda s: _trim(s.replace(str(wit), where)))
    data: dict[str, Any] = json.loads(out)
    return data


def _worlds(data: dict[str, Any]) -> dict[str, list[str]]:
    """``{package: [world, ...]}`` of the resolved WIT."""
    packages = [p["name"] for p in data["packages"]]
    worlds: dict[str, list[str]] = {name: [] for name in packages}
    for w in data["worlds"]:
        worlds[packages[w["package"]]].append(w["name"])
    return worlds


def _resolve_world(requested: str | None, main: str, worlds: dict[str, list[str]], app: AppSpec) -> str:
    """The fully qualified world (``ns:pkg/world@version``) to build."""
    known = sorted(f"{_bare(p)}/{w}@{_version(p)}" if _version(p) else f"{p}/{w}"
                   for p, ws in worlds.items() for w in ws)
    if requested is None:
        own = worlds.get(main, [])
        if app.wit is None:
            raise BuildError(f"{app.name}: no world to build: add a wit/ folder, or set world in "
                             f"{app.root / APP_FILE} (for example \"trellis:http/proxy@0.1.0\")")
        if len(own) == 1:
            return _qualify(main, own[0])
        if not own:
            raise BuildError(f"{app.name}: {app.wit} defines no world")
        raise BuildError(f"{app.name}: {app.wit} defines several worlds ({', '.join(own)}): "
                         f"pick one with world = \"...\" in {APP_FILE} or --world")
    if ":" not in requested:
        if requested in worlds.get(main, []):
            return _qualify(main, requested)
        own = worlds.get(main, [])
        hint = f"{app.wit or 'the app'} defines {', '.join(own)}" if own else "the app defines no world"
        raise BuildError(f"{app.name}: unknown world {requested!r}: {hint}")
    match = _QUALIFIED_WORLD.match(requested)
    if match:
        candidates = [p for p in worlds if _bare(p) == match["pkg"]
                      and (match["version"] is None or _version(p) == match["version"])]
        hits = [p for p in candidates if match["world"] in worlds[p]]
        if len(hits) == 1:
            return _qualify(hits[0], match["world"])
        if len(hits) > 1:
            raise BuildError(f"{app.name}: world {requested!r} is ambiguous: give a version "
                             f"({', '.join(_qualify(p, match['world']) for p in hits)})")
    raise BuildError(f"{app.name}: unknown world {requested!r}; known worlds:\n  " + "\n  ".join(known))


def _bare(package: str) -> str:
    return package.split("@", 1)[0]


def _version(package: str) -> str | None:
    return package.split("@", 1)[1] if "@" in package else None


def _qualify(package: str, world: str) -> str:
    version = _version(package)
    return f"{_bare(package)}/{world}" + (f"@{version}" if version else "")


def _source_files(root: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """An app's files, as hashed and copied: no hidden files, outputs or caches."""
    skipped = {p.resolve() for p in skip}
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _NOT_SOURCES
                             and not (here == root and d == OUTPUT_DIR)
                             and (here / d).resolve() not in skipped)
        files.extend(here / f for f in sorted(filenames)
                     if not f.startswith(".") and not f.endswith((".wasm", ".pyc")))
    return files


def _hash(parts: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for label, data in parts:
        h.update(label.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:24]


def _key(app: AppSpec, world: str, wit: Path, tool_version: str, out_dir: Path) -> str:
    parts: list[tuple[str, bytes]] = [("tool", tool_version.encode()), ("world", world.encode()),
                                      ("module", app.module.encode())]
    for f in sorted(p for p in wit.rglob("*") if p.is_file()):
        parts.append((f"wit/{f.relative_to(wit)}", f.read_bytes()))
    wit_inside = [app.wit] if app.wit is not None else []
    for f in _source_files(app.root, skip=[out_dir, *wit_inside]):
        parts.append((f"app/{f.relative_to(app.root)}", f.read_bytes()))
    for i, extra in enumerate(app.python_path):
        for f in _source_files(extra, skip=[out_dir]):
            parts.append((f"path{i}/{f.relative_to(extra)}", f.read_bytes()))
    return _hash(parts)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stamp_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.key")


def _up_to_date(out: Path, key: str) -> bool:
    stamp = _stamp_path(out)
    if not out.is_file() or not stamp.is_file():
        return False
    return stamp.read_text().split() == [key, _file_digest(out)]


def _publish(src: Path, dest: Path) -> None:
    """Copy into place atomically: a reader never sees half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


_KEPT_PER_APP = 4  # cached outputs kept per app name, newest first


def _prune_cache(cache_dir: Path, name: str) -> None:
    pattern = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{24}}\.wasm$")
    entries = sorted((p for p in cache_dir.iterdir() if pattern.match(p.name)),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[_KEPT_PER_APP:]:
        old.unlink(missing_ok=True)


def _module_exists(app: AppSpec) -> bool:
    if app.language == "js":
        return (app.root / app.module).is_file()
    rel = Path(*app.module.split("."))
    return any((base / rel).with_suffix(".py").is_file() or (base / rel / "__init__.py").is_file()
               for base in (app.root, *app.python_path))


def _trim(text: str) -> str:
    """componentize-py's output, shortened to what a person needs."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = text.split("\nStack backtrace:", 1)[0]
    # componentize-py's console script wraps the real error in its own traceback.
    marker = "AssertionError: "
    if "sys.exit(script())" in text and marker in text:
        text = text.split(marker, 1)[1]
    head, sep, cause = text.partition("\n\nCaused by:")
    if sep and cause.strip() and cause.strip() in head:
        text = head  # the cause only repeats the last line
    lines = text.strip().splitlines()
    if len(lines) > _MAX_ERROR_LINES:
        lines = [f"... ({len(lines) - _MAX_ERROR_LINES} lines omitted)", *lines[-_MAX_ERROR_LINES:]]
    return "\n".join(lines)


@dataclass(frozen=True)
class BuildPlan:
    """What building an app would do, decided before any componentize-py run."""

    app: AppSpec
    out: Path
    world: str  # fully qualified: ns:pkg/world@version
    key: str  # content hash of everything the output depends on
    status: Status  # "unchanged": out is current; "cached": copy from the cache; "built": run componentize-py
    cached: Path  # where the output lives in the cache
    features_off: tuple[str, ...] = ()  # JavaScript: the engine features the world does not use


def _prepare(app: AppSpec, out_dir: Path, options: BuildOptions, tmp: Path) -> BuildPlan:
    """Check the app, lay out its WIT in ``tmp/wit`` and decide what to do."""
    if not _module_exists(app):
        expected = app.module if app.language == "js" else f"{app.module.replace('.', '/')}.py"
        raise BuildError(f"{app.name}: no {'JavaScript' if app.language == 'js' else 'Python'} module "
                         f"{app.module!r} in {app.root} (expected {expected})")
    wasm_tools = find_tool("wasm-tools")
    cache_dir = options.cache_dir if options.cache_dir is not None else default_cache_dir()
    wit = tmp / "wit"
    main = _assemble_wit(app, wit, _extra_packages(options.wit_dirs))
    resolved = _wit_json(wasm_tools, wit, app)
    world = _resolve_world(options.world or app.world, main, _worlds(resolved), app)
    features_off: tuple[str, ...] = ()
    if app.language == "js":
        try:
            version = build_js.tool_version()
        except build_js.JsBuildError as exc:
            raise BuildError(f"{app.name}: {exc}") from None
        features_off = tuple(build_js.disabled_features(resolved, world))
        version += " features-off " + ",".join(features_off)
    else:
        version = _tool_version(find_tool("componentize-py"))
    key = _key(app, world, wit, version, out_dir)
    out = out_dir / f"{app.name}.wasm"
    cached = cache_dir / f"{app.name}-{key}.wasm"
    status: Status = "unchanged" if _up_to_date(out, key) else "cached" if cached.is_file() else "built"
    return BuildPlan(app=app, out=out, world=world, key=key, status=status, cached=cached,
                     features_off=features_off)


def plan(app: AppSpec, out_dir: Path | str, options: BuildOptions = BuildOptions()) -> BuildPlan:
    """What :func:`build` would do for ``app``, without doing it (takes ~0.1 s)."""
    with tempfile.TemporaryDirectory(prefix=f"trellis-plan-{app.name}-") as tmp:
        return _prepare(app, Path(out_dir).resolve(), options, Path(tmp))


def build(app: AppSpec, out_dir: Path | str, options: BuildOptions = BuildOptions(),
          progress: Progress | None = None) -> BuildResult:
    """Build one app into ``out_dir/<name>.wasm`` (or leave an up-to-date one alone)."""
    started = time.monotonic()
    say = progress or (lambda _app, _stage: None)
    with tempfile.TemporaryDirectory(prefix=f"trellis-build-{app.name}-") as tmp_name:
        tmp = Path(tmp_name)
        say(app, "resolving WIT")
        p = _prepare(app, Path(out_dir).resolve(), options, tmp)
        if p.status == "built" and app.language == "js":
            built = _componentize_js(app, p, tmp, options.timeout_s, lambda stage: say(app, stage))
            _publish(built, p.cached)
            _prune_cache(p.cached.parent, app.name)
        elif p.status == "built":
            say(app, f"componentize-py ({p.world})")
            built = _componentize(find_tool("componentize-py"), app, p.world, tmp / "wit", tmp,
                                  options.timeout_s)
            _publish(built, p.cached)
            _prune_cache(p.cached.parent, app.name)
        if p.status != "unchanged":
            _publish(p.cached, p.out)
            _stamp_path(p.out).write_text(f"{p.key} {_file_digest(p.out)}\n")
    return BuildResult(app=app, path=p.out, status=p.status, seconds=time.monotonic() - started,
                       size=p.out.stat().st_size, world=p.world, key=p.key)


def _componentize(tool: str, app: AppSpec, world: str, wit: Path, tmp: Path, timeout_s: float) -> Path:
    src = tmp / "src"
    src.mkdir()
    for f in _source_files(app.root, skip=[app.wit] if app.wit else []):
        dest = src / f.relative_to(app.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    venv = tmp / "empty-venv"
    (venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages").mkdir(parents=True)
    built = tmp / f"{app.name}.wasm"
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PYTHONDONTWRITEBYTECODE": "1", "RUST_BACKTRACE": "0"}
    env.pop("PYTHONPATH", None)
    cmd = [tool, "-q", "-d", str(wit), "-w", world, "componentize", app.module, "-p", str(src)]
    for p in app.python_path:
        cmd += ["-p", str(p)]
    cmd += ["-o", str(built)]

    # componentize-py shows the search path entries as /0/, /1/, ...: map them back.
    roots = [app.root, *app.python_path]

    def clean(text: str) -> str:
        for i, root in reversed(list(enumerate(roots))):
            text = text.replace(f'"/{i}/', f'"{root}/')
        return _trim(text.replace(str(src), str(app.root)).replace(str(wit), str(app.wit or "wit")))

    _run(cmd, what=f"componentize-py for {app.name}", cwd=src, env=env, timeout_s=timeout_s, clean=clean)
    if not built.is_file():
        raise BuildError(f"componentize-py for {app.name} wrote no output")
    return built


def _componentize_js(app: AppSpec, p: BuildPlan, tmp: Path, timeout_s: float,
                     say: Callable[[str], None]) -> Path:
    src = tmp / "src"
    for f in _source_files(app.root, skip=[app.wit] if app.wit else []):
        dest = src / f.relative_to(app.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    try:
        return build_js.componentize(src / app.module, tmp / "wit", p.world, tmp / f"{app.name}.wasm",
                                     list(p.features_off), timeout_s=timeout_s, say=say)
    except build_js.JsBuildError as exc:
        raise BuildError(f"{app.name}: {str(exc).replace(str(src), str(app.root))}") from None


def build_all(path: Path | str, out_dir: Path | str | None = None, options: BuildOptions = BuildOptions(),
              progress: Progress | None = None) -> list[BuildResult]:
    """Build the app at ``path`` or every app below it; outputs go to ``out_dir``
    (default ``<path>/build``). Stops at the first failure."""
    apps = find_apps(path)
    if options.world is not None and len(apps) > 1:
        raise BuildError(f"--world names one app's world, but {path} holds {len(apps)} apps")
    target = Path(out_dir) if out_dir is not None else Path(path) / OUTPUT_DIR
    return [build(app, target, options, progress) for app in apps]


def build_app(path: Path | str, out_dir: Path | str | None = None, *, world: str | None = None,
              wit_dirs: Sequence[Path | str] = (), cache_dir: Path | str | None = None) -> Path:
    """Build the app in ``path``; return the ``.wasm`` (default ``<path>/build/<name>.wasm``)."""
    app = load_app(path)
    options = BuildOptions(world=world, wit_dirs=tuple(Path(d) for d in wit_dirs),
                           cache_dir=Path(cache_dir) if cache_dir is not None else None)
    target = Path(out_dir) if out_dir is not None else Path(path) / OUTPUT_DIR
    return build(app, target, options).path


def build_tree(path: Path | str, out_dir: Path | str | None = None, *, wit_dirs: Sequence[Path | str] = (),
               cache_dir: Path | str | None = None) -> list[Path]:
    """Build every app at or below ``path``; return the ``.wasm`` paths."""
    options = BuildOptions(wit_dirs=tuple(Path(d) for d in wit_dirs),
                           cache_dir=Path(cache_dir) if cache_dir is not None else None)
    return [r.path for r in build_all(path, out_dir, options)]
