"""Building Python apps into WebAssembly components (`trellis build`).

An *app* is a folder holding a Python module (``app.py`` by default) and
either a ``wit/`` folder with the world it targets, or a ``trellis.toml``::

    [component]
    name = "hello"                       # output hello.wasm (default: folder name)
    world = "trellis:http/proxy@0.1.0"   # a world of wit/ or of a shared package
    module = "app"                       # the Python module (default: app)
    wit = "wit"                          # the app's WIT folder (default: wit, if present)
    python-path = ["../common"]          # more folders on the module path

The shared packages of ``interfaces/wit/`` (``wasi:keyvalue``, ``trellis:http``,
...) are always available to the app's WIT as dependencies, plus any folders
given with ``wit_dirs``; a package the app's own ``wit/deps/`` already holds
wins. componentize-py runs on a copy of the sources with ``VIRTUAL_ENV``
pointing at an empty folder (it would otherwise scan the active environment
for packages shipping WIT).

Outputs are cached by content hash: the key covers the app's files, every WIT
file it is built against, the world, the module and the componentize-py
version. A build whose output is already in place with the same key is
skipped ("unchanged"); one whose key is in the cache is copied ("cached").

    from trellis.build import build_app, build_tree
    wasm = build_app("examples/hello-python/greeter")      # -> .../build/greeter.wasm
    wasms = build_tree("examples/hello-python")            # every app below
"""

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
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from interfaces.wit_packages import package_dirs, package_name, wit_files

__all__ = [
    "APP_FILE",
    "AppSpec",
    "BuildError",
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "Progress",
    "build",
    "build_all",
    "build_app",
    "build_tree",
    "default_cache_dir",
    "find_apps",
    "find_tool",
    "is_app",
    "load_app",
    "plan",
]

APP_FILE = "trellis.toml"
DEFAULT_MODULE = "app"
OUTPUT_DIR = "build"
# Folders never searched for apps, nor copied or hashed as app sources.
_SKIP_DIRS = frozenset({OUTPUT_DIR, "deps", "wit", "__pycache__", "node_modules", "venv", "dist", "target"})
# Folders inside an app that are never bundled or hashed.
_NOT_SOURCES = frozenset({"__pycache__", "node_modules", "venv"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_QUALIFIED_WORLD = re.compile(r"^(?P<pkg>[a-z0-9-]+:[a-z0-9-]+)/(?P<world>[a-z0-9-]+)(?:@(?P<version>[0-9A-Za-z.+-]+))?$")
_TOML_KEYS = frozenset({"name", "world", "module", "wit", "python-path"})
_MAX_ERROR_LINES = 60

Status = Literal["built", "cached", "unchanged"]
Progress = Callable[["AppSpec", str], None]


class BuildError(Exception):
    """A build could not be done; the message says why, for people."""


@dataclass(frozen=True)
class AppSpec:
    """One app, as found on disk."""

    root: Path
    name: str
    module: str = DEFAULT_MODULE
    world: str | None = None  # None: the only world of the app's WIT package
    wit: Path | None = None  # None: the app has no WIT of its own
    python_path: tuple[Path, ...] = ()


@dataclass(frozen=True)
class BuildOptions:
    """Settings shared by every app of one build."""

    world: str | None = None  # overrides the app's world
    wit_dirs: tuple[Path, ...] = ()  # extra WIT packages (a package folder or a folder of them)
    cache_dir: Path | None = None  # None: default_cache_dir()
    timeout_s: float = 600.0  # one componentize-py run; a cold build takes ~10 s


@dataclass(frozen=True)
class BuildResult:
    app: AppSpec
    path: Path
    status: Status
    seconds: float
    size: int
    world: str  # fully qualified: ns:pkg/world@version
    key: str


# ---------------------------------------------------------------- finding apps


def default_cache_dir() -> Path:
    """``$TRELLIS_BUILD_CACHE``, else ``$XDG_CACHE_HOME/trellis/build``, else ``~/.cache/trellis/build``."""
    env = os.environ.get("TRELLIS_BUILD_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "trellis" / "build"


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``[component]`` table of ``folder/trellis.toml``, or None without one."""
    path = folder / APP_FILE
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BuildError(f"{path}: {exc}") from None
    table = data.get("component")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise BuildError(f"{path}: [component] must be a table")
    unknown = sorted(set(table) - _TOML_KEYS)
    if unknown:
        raise BuildError(f"{path}: unknown key(s) in [component]: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(_TOML_KEYS))})")
    return table


def is_app(folder: Path) -> bool:
    """A folder with a ``trellis.toml`` ``[component]`` table, or with ``app.py`` and ``wit/``."""
    if _read_manifest(folder) is not None:
        return True
    return (folder / f"{DEFAULT_MODULE}.py").is_file() and (folder / "wit").is_dir()


def load_app(folder: Path | str) -> AppSpec:
    """Read the app in ``folder``; raise :class:`BuildError` when it is not one."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise BuildError(f"{folder}: no such folder")
    table = _read_manifest(root)
    if table is None:
        if not is_app(root):
            raise BuildError(f"{folder} is not a Trellis app: expected {DEFAULT_MODULE}.py and wit/, "
                             f"or a {APP_FILE} with a [component] table")
        table = {}
    where = root / APP_FILE

    def text(key: str, default: str | None) -> str | None:
        value = table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise BuildError(f"{where}: {key} must be a non-empty string")
        return value

    name = text("name", root.name) or root.name
    if not _NAME.match(name):
        raise BuildError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-'")
    module = text("module", DEFAULT_MODULE) or DEFAULT_MODULE
    if not _MODULE.match(module):
        raise BuildError(f"{where}: module {module!r} is not a Python module name")
    wit_name = text("wit", None)
    wit: Path | None
    if wit_name is not None:
        wit = (root / wit_name).resolve()
        if not wit.is_dir():
            raise BuildError(f"{where}: wit folder {wit_name!r} does not exist")
    else:
        wit = root / "wit" if (root / "wit").is_dir() else None
    paths = table.get("python-path", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BuildError(f"{where}: python-path must be a list of folders")
    python_path = tuple((root / p).resolve() for p in paths)
    for p in python_path:
        if not p.is_dir():
            raise BuildError(f"{where}: python-path folder {p} does not exist")
    return AppSpec(root=root, name=name, module=module, world=text("world", None), wit=wit,
                   python_path=python_path)


def find_apps(path: Path | str) -> list[AppSpec]:
    """The app at ``path``, or every app below it (not looking inside apps)."""
    top = Path(path)
    if not top.is_dir():
        raise BuildError(f"{path}: no such folder")
    if is_app(top):
        return [load_app(top)]
    found: list[AppSpec] = []
    for dirpath, dirnames, _ in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        here = Path(dirpath)
        if here != top and is_app(here):
            found.append(load_app(here))
            dirnames[:] = []
    if not found:
        raise BuildError(f"no Trellis apps in {path}: an app is a folder with {DEFAULT_MODULE}.py and wit/, "
                         f"or a {APP_FILE} with a [component] table")
    seen: dict[str, Path] = {}
    for app in found:
        if app.name in seen:
            raise BuildError(f"two apps are named {app.name!r} ({seen[app.name]} and {app.root}): "
                             f"set a different name in {APP_FILE}")
        seen[app.name] = app.root
    return found


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


def _worlds(wasm_tools: str, wit: Path, app: AppSpec) -> dict[str, list[str]]:
    """Parse the assembled WIT; return ``{package: [world, ...]}``."""
    where = str(app.wit) if app.wit else "the shared WIT packages"
    out = _run([wasm_tools, "component", "wit", str(wit), "--json"], what=f"WIT of {app.name} ({where})",
               clean=lambda s: _trim(s.replace(str(wit), where)))
    data = json.loads(out)
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


def _prepare(app: AppSpec, out_dir: Path, options: BuildOptions, tmp: Path) -> BuildPlan:
    """Check the app, lay out its WIT in ``tmp/wit`` and decide what to do."""
    if not _module_exists(app):
        raise BuildError(f"{app.name}: no Python module {app.module!r} in {app.root} "
                         f"(expected {app.module.replace('.', '/')}.py)")
    componentize = find_tool("componentize-py")
    wasm_tools = find_tool("wasm-tools")
    cache_dir = options.cache_dir if options.cache_dir is not None else default_cache_dir()
    wit = tmp / "wit"
    main = _assemble_wit(app, wit, _extra_packages(options.wit_dirs))
    world = _resolve_world(options.world or app.world, main, _worlds(wasm_tools, wit, app), app)
    key = _key(app, world, wit, _tool_version(componentize), out_dir)
    out = out_dir / f"{app.name}.wasm"
    cached = cache_dir / f"{app.name}-{key}.wasm"
    status: Status = "unchanged" if _up_to_date(out, key) else "cached" if cached.is_file() else "built"
    return BuildPlan(app=app, out=out, world=world, key=key, status=status, cached=cached)


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
        if p.status == "built":
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
