"""Builds the shared test components, caching outputs by content hash.

Sources live beside this file:

* ``wat/<name>/core.wat`` + ``wat/<name>/world.wit``: a core module written
  by hand against the canonical ABI, wrapped into a component with
  ``wasm-tools component embed`` + ``component new``. Builds in ~50 ms.
* ``python/<name>/app.py`` + ``python/<name>/wit/``: a componentize-py
  component for the world named ``<name>``. Builds in ~6 s.

Outputs go to ``outdir`` (default: :func:`default_cache_dir`) as
``<name>-<hash>.wasm``, where the hash covers every source file plus the
tool versions; an existing output is reused. Usage from any test::

    from tests.components.build import build_wat, build_python
    wasm_path = build_wat("adder")
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = [
    "COMPONENTS_DIR",
    "BuildError",
    "build_python",
    "build_wat",
    "default_cache_dir",
    "wat_names",
    "python_names",
]

COMPONENTS_DIR = Path(__file__).resolve().parent
WAT_DIR = COMPONENTS_DIR / "wat"
PYTHON_DIR = COMPONENTS_DIR / "python"


class BuildError(RuntimeError):
    """A tool failed; the message carries its output."""


def default_cache_dir() -> Path:
    """``$TRELLIS_TEST_COMPONENTS_CACHE`` or ``~/.cache/trellis-test-components``."""
    env = os.environ.get("TRELLIS_TEST_COMPONENTS_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "trellis-test-components"


def wat_names() -> list[str]:
    return sorted(p.name for p in WAT_DIR.iterdir() if (p / "core.wat").exists())


def python_names() -> list[str]:
    return sorted(p.name for p in PYTHON_DIR.iterdir() if (p / "app.py").exists())


def build_wat(name: str, outdir: Path | None = None) -> Path:
    """Build ``wat/<name>`` into a component; return the ``.wasm`` path."""
    src = WAT_DIR / name
    if not (src / "core.wat").exists():
        raise BuildError(f"no WAT test component {name!r} in {WAT_DIR}")
    key = _hash_sources(src, _tool_version("wasm-tools"))
    out = _output_path(name, key, outdir)
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix=f"trellis-{name}-") as tmp:
        core = Path(tmp) / "core.wasm"
        embedded = Path(tmp) / "embedded.wasm"
        built = Path(tmp) / "component.wasm"
        _run(["wasm-tools", "parse", str(src / "core.wat"), "-o", str(core)])
        _run(["wasm-tools", "component", "embed", str(src / "world.wit"), str(core), "-o", str(embedded)])
        _run(["wasm-tools", "component", "new", str(embedded), "-o", str(built)])
        _publish(built, out)
    return out


def build_python(name: str, outdir: Path | None = None) -> Path:
    """Build ``python/<name>`` with componentize-py; return the ``.wasm`` path.

    componentize-py scans the active environment's site-packages for
    packages that ship WIT (and can then fail with "attempting to re-add
    package"), so it runs with ``VIRTUAL_ENV`` pointing at an empty folder.
    """
    src = PYTHON_DIR / name
    if not (src / "app.py").exists():
        raise BuildError(f"no Python test component {name!r} in {PYTHON_DIR}")
    key = _hash_sources(src, _tool_version("componentize-py"))
    out = _output_path(name, key, outdir)
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix=f"trellis-{name}-") as tmp:
        venv = Path(tmp) / "empty-venv"
        (venv / "lib").mkdir(parents=True)
        built = Path(tmp) / "component.wasm"
        env = {**os.environ, "VIRTUAL_ENV": str(venv), "PYTHONDONTWRITEBYTECODE": "1"}
        # Copy the sources so the build never writes into the repository.
        work = Path(tmp) / "src"
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("__pycache__"))
        _run(
            ["componentize-py", "-q", "-d", "wit", "-w", name, "componentize", "app", "-o", str(built)],
            cwd=work,
            env=env,
        )
        _publish(built, out)
    return out


def _hash_sources(src: Path, tool: str) -> str:
    h = hashlib.sha256(tool.encode())
    for path in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(src)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _output_path(name: str, key: str, outdir: Path | None) -> Path:
    directory = outdir if outdir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}-{key}.wasm"


def _publish(built: Path, out: Path) -> None:
    """Move into place atomically, so concurrent builders never see half a file."""
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, out)


_TOOL_VERSIONS: dict[str, str] = {}


def _tool_version(tool: str) -> str:
    if tool not in _TOOL_VERSIONS:
        _TOOL_VERSIONS[tool] = _run([tool, "--version"]).strip()
    return _TOOL_VERSIONS[tool]


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
