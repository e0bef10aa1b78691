"""Builds the HTTP test components (componentize-py), cached by content hash.

``components/<name>/app.py`` + ``components/<name>/wit/world.wit``; the shared
packages the world uses (``trellis:http``, ``wasi:logging``, ``wasi:config``) are
copied from ``interfaces/wit/`` into the build's ``wit/deps/``, so the component
is always built against the WIT in the tree. Outputs land beside the other test
components (``tests.components.build.default_cache_dir()``) as ``<name>-<hash>.wasm``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.components.build import default_cache_dir
from trellis.interfaces.wit_packages import WIT_DIR

HERE = Path(__file__).resolve().parent
#: folders of interfaces/wit/ a component's world may use
SHARED = ("http", "logging", "config")


def _sources(src: Path) -> list[tuple[str, Path]]:
    files = [(str(p.relative_to(src)), p) for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for folder in SHARED:
        files += [(f"wit/deps/{folder}/{p.name}", p) for p in sorted((WIT_DIR / folder).glob("*.wit"))]
    return sorted(files)


def build_component(name: str) -> Path:
    """Build ``components/<name>``; return the ``.wasm`` path (reused when nothing changed)."""
    src = HERE / name
    tool = subprocess.run(["componentize-py", "--version"], capture_output=True, text=True, check=True).stdout
    h = hashlib.sha256(tool.encode())
    files = _sources(src)
    for rel, path in files:
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    out = default_cache_dir() / f"{name}-{h.hexdigest()[:16]}.wasm"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"trellis-{name}-") as tmp:
        work = Path(tmp) / "src"
        for rel, path in files:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, work / rel)
        venv = Path(tmp) / "empty-venv"  # componentize-py would scan site-packages for WIT
        (venv / "lib").mkdir(parents=True)
        built = Path(tmp) / "component.wasm"
        proc = subprocess.run(
            ["componentize-py", "-q", "-d", "wit", "-w", name, "componentize", "app", "-o", str(built)],
            cwd=work, env={**os.environ, "VIRTUAL_ENV": str(venv), "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building {name} failed:\n{proc.stdout}\n{proc.stderr}")
        tmp_out = out.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(built, tmp_out)
        os.replace(tmp_out, out)
    return out
