"""Where Trellis's shared WIT packages live, for tools that need them.

``interfaces/wit/<folder>/`` holds one WIT package per folder (the contracts
components and providers share: ``wasi:keyvalue``, ``wasmcloud:messaging``,
``wasi:logging``, ``wasi:config``, ``trellis:http``, ``trellis:sql``). They ship
with the Python package, so this works from a checkout and from a wheel::

    from trellis.interfaces.wit_packages import package_dirs
    package_dirs()["trellis:http@0.1.0"]   # -> Path(.../interfaces/wit/http)

Standard library only: anything may import this.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["WIT_DIR", "package_dirs", "package_name", "wit_files"]

WIT_DIR = Path(__file__).resolve().parent / "wit"

# `package ns:name@version;` at the start of a line (comments start with //).
_PACKAGE = re.compile(r"^\s*package\s+([a-z0-9-]+:[a-z0-9-]+(?:@[0-9A-Za-z.+-]+)?)\s*;", re.MULTILINE)


def wit_files(folder: Path) -> list[Path]:
    """The ``.wit`` files directly in ``folder`` (not in ``deps/``), sorted."""
    return sorted(p for p in folder.glob("*.wit") if p.is_file())


def package_name(path: Path) -> str | None:
    """The package a ``.wit`` file, or a folder of them, declares (``ns:pkg@version``), if any."""
    files = wit_files(path) if path.is_dir() else [path] if path.suffix == ".wit" else []
    for path in files:
        match = _PACKAGE.search(path.read_text(encoding="utf-8"))
        if match:
            return match.group(1)
    return None


def package_dirs(root: Path = WIT_DIR) -> dict[str, Path]:
    """Every package under ``root``: ``{"wasi:keyvalue@0.2.0-draft": folder, ...}``."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = package_name(folder)
        if name is not None:
            found[name] = folder
    return found
