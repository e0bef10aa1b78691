"""C extensions of the runtime, compiled on first use: ``native_values`` (``_values.c``), the epoch
ticker (``_ticker.c``) and the ``wasi:http`` callbacks (:mod:`.wasi_http.native`, ``_native.c``).

Each is compiled with the machine's C compiler and Python headers into ``$XDG_CACHE_HOME/trellis/native``
(``~/.cache/trellis/native``) under a name keyed by the source's hash, the Python version and the
platform, and loaded from there: nothing to install, and a changed source is a new file. Without a
compiler :func:`load` raises and the caller's Python code serves.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["cache_dir", "load", "once"]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "trellis" / "native"


def _compile(name: str, source: Path, libs: tuple[str, ...], includes: tuple[Path, ...]) -> Path:
    """The extension's path in the cache, compiled there first if it is not (the key covers the
    files ``source`` includes, ``includes``, too)."""
    text = b"".join(p.read_bytes() for p in (source, *includes))
    suffix = (importlib.machinery.EXTENSION_SUFFIXES or [".so"])[0]
    key = hashlib.sha256(text + sys.version.encode() + sysconfig.get_platform().encode()).hexdigest()[:16]
    out = cache_dir() / f"{name}-{key}{suffix}"
    if out.exists():
        return out
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise RuntimeError(f"no Python headers in {include} (Debian: python3-dev)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-fno-strict-aliasing", f"-I{include}", str(source), "-o", str(tmp),
           *(f"-l{lib}" for lib in libs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, out)  # atomic: processes compiling at once each install a whole file
    finally:
        tmp.unlink(missing_ok=True)
    _prune(name, out)
    return out


def _prune(name: str, keep: Path, days: float = 7) -> None:
    """Builds of other sources unused for ``days`` (a process still running one keeps its mapping)."""
    now = time.time()
    for old in keep.parent.glob(f"{name}-*"):
        try:
            if old != keep and now - old.stat().st_atime > days * 86400:
                old.unlink()
        except OSError:
            pass


def load(name: str, source: Path, libs: tuple[str, ...] = (), includes: tuple[Path, ...] = ()) -> ModuleType:
    """Extension module ``name`` built from ``source`` and the files it ``includes`` (compiled first if
    need be); raises when it cannot be."""
    path = _compile(name, source, libs, includes)
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def once(state: dict[str, Any], make: Callable[[], ModuleType], log: logging.Logger,
         unavailable: str) -> ModuleType | None:
    """``state["module"]``: the extension ``make`` loads, once per process; None when it cannot be,
    said once as ``unavailable: why`` (the caller's Python code serves)."""
    if "module" not in state:
        try:
            state["module"] = make()
        except Exception as exc:  # noqa: BLE001 - any failure: the caller's Python code serves
            log.warning("%s: %s", unavailable, exc)
            state["module"] = None
    return state["module"]
