"""What an app is: its folder, its trellis.toml, its language; finding apps below a folder."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

APP_FILE = "trellis.toml"
DEFAULT_MODULE = "app"
OUTPUT_DIR = "build"
# Folders never searched for apps, nor copied or hashed as app sources.
_SKIP_DIRS = frozenset({OUTPUT_DIR, "deps", "wit", "__pycache__", "node_modules", "venv", "dist", "target"})
# Folders inside an app that are never bundled or hashed.
_NOT_SOURCES = frozenset({"__pycache__", "node_modules", "venv"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_QUALIFIED_WORLD = re.compile(
    r"^(?P<pkg>[a-z0-9-]+:[a-z0-9-]+)/(?P<world>[a-z0-9-]+)(?:@(?P<version>[0-9A-Za-z.+-]+))?$")
_TOML_KEYS = frozenset({"name", "world", "module", "language", "wit", "python-path"})
JS_MODULE = "app.js"
LANGUAGES = ("python", "js")
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
    language: str = "python"  # "python" (componentize-py) or "js" (componentize-js; module is a .js file)


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
    """A folder with a ``trellis.toml`` ``[component]`` table, or with ``app.py`` or ``app.js`` and ``wit/``."""
    if _read_manifest(folder) is not None:
        return True
    return ((folder / f"{DEFAULT_MODULE}.py").is_file() or (folder / JS_MODULE).is_file()) and (folder / "wit").is_dir()


def load_app(folder: Path | str) -> AppSpec:
    """Read the app in ``folder``; raise :class:`BuildError` when it is not one."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise BuildError(f"{folder}: no such folder")
    table = _read_manifest(root)
    if table is None:
        if not is_app(root):
            raise BuildError(f"{folder} is not a Trellis app: expected {DEFAULT_MODULE}.py or {JS_MODULE} and wit/, "
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
    guessed = "js" if (not (root / f"{DEFAULT_MODULE}.py").is_file() and (root / JS_MODULE).is_file()) else "python"
    declared = table.get("module")
    if isinstance(declared, str) and declared.endswith((".js", ".mjs")):
        guessed = "js"
    language = text("language", guessed) or guessed
    if language not in LANGUAGES:
        raise BuildError(f"{where}: language {language!r} is not one of {', '.join(LANGUAGES)}")
    module = text("module", JS_MODULE if language == "js" else DEFAULT_MODULE) or DEFAULT_MODULE
    if language == "python" and not _MODULE.match(module):
        raise BuildError(f"{where}: module {module!r} is not a Python module name")
    if language == "js" and not module.endswith((".js", ".mjs")):
        raise BuildError(f"{where}: module {module!r} of a JavaScript app must be a .js or .mjs file")
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
                   python_path=python_path, language=language)


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
        raise BuildError(f"no Trellis apps in {path}: an app is a folder with {DEFAULT_MODULE}.py or {JS_MODULE} and "
                         "wit/, "
                         f"or a {APP_FILE} with a [component] table")
    seen: dict[str, Path] = {}
    for app in found:
        if app.name in seen:
            raise BuildError(f"two apps are named {app.name!r} ({seen[app.name]} and {app.root}): "
                             f"set a different name in {APP_FILE}")
        seen[app.name] = app.root
    return found


