"""Builds this folder's test components against the shared WIT packages of ``interfaces/wit/``.

Each component is ``<name>/app.py`` + ``<name>/world.wit`` (world ``<name>``).
The packages the world names (``wasi:keyvalue/...``) are copied from
``interfaces/wit/`` into ``wit/deps/``, so the components use exactly the
contracts the providers implement. Outputs are cached by a hash of every
input file and the componentize-py version, beside the other test components.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.components.build import BuildError, default_cache_dir

HERE = Path(__file__).resolve().parent
WIT_DIR = HERE.parents[2] / "interfaces" / "wit"
_PACKAGE = re.compile(r"^\s*package\s+([a-z0-9-]+:[a-z0-9-]+)", re.MULTILINE)


def shared_packages() -> dict[str, Path]:
    """``{"wasi:keyvalue": interfaces/wit/keyvalue, ...}``."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in WIT_DIR.iterdir() if p.is_dir()):
        for wit in sorted(folder.glob("*.wit")):
            m = _PACKAGE.search(wit.read_text())
            if m:
                found[m.group(1)] = folder
                break
    return found


def build(name: str, outdir: Path | None = None) -> Path:
    src = HERE / name
    world = (src / "world.wit").read_text()
    deps = {pkg: folder for pkg, folder in shared_packages().items() if f"{pkg}/" in world}
    inputs = [src / "app.py", src / "world.wit", *(w for f in deps.values() for w in sorted(f.glob("*.wit")))]
    h = hashlib.sha256(_run(["componentize-py", "--version"]).encode())
    for path in inputs:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    out = (outdir or default_cache_dir()) / f"bp-{name}-{h.hexdigest()[:16]}.wasm"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"trellis-{name}-") as tmp:
        work = Path(tmp) / "src"
        (work / "wit" / "deps").mkdir(parents=True)
        shutil.copy(src / "app.py", work / "app.py")
        shutil.copy(src / "world.wit", work / "wit" / "world.wit")
        for folder in deps.values():
            shutil.copytree(folder, work / "wit" / "deps" / folder.name)
        venv = Path(tmp) / "empty-venv"  # componentize-py would scan the real one for WIT packages
        (venv / "lib").mkdir(parents=True)
        built = Path(tmp) / "component.wasm"
        _run(["componentize-py", "-q", "-d", "wit", "-w", name, "componentize", "app", "-o", str(built)], cwd=work,
             env={**os.environ, "VIRTUAL_ENV": str(venv), "PYTHONDONTWRITEBYTECODE": "1"})
        tmp_out = out.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(built, tmp_out)
        os.replace(tmp_out, out)
    return out


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
