"""How a provider written in Python travels to hosts on other machines.

A provider is a ``.py`` file (run as a script) or a folder holding a package with a
``__main__.py`` (run as ``python -m <folder name>``, so ``from . import x`` works). The
deploying machine uploads it to the lattice's artifact store, content-addressed:

* a file as its bytes;
* a folder as a gzipped tar whose one top-level entry is the folder, made the same way
  every time (names sorted, times, owners and modes normalised, caches left out): the same
  files give the same digest, so re-deploying an unchanged folder uploads nothing.

A host fetches the artifact by digest and unpacks it once into its state directory
(`unpack`), then runs what it holds (`PreparedProvider`).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ErrorCode, TrellisError

#: left out of a folder's package: caches and version control, never part of a provider
SKIPPED = frozenset({"__pycache__", ".git", ".hg", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv", "venv"})
#: a folder larger than this is refused (a provider carrying data belongs in a volume, not the store)
MAX_PACKAGE_BYTES = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class PackageError(TrellisError):
    code = ErrorCode.BAD_REQUEST


def _skipped(name: str) -> bool:
    return name in SKIPPED or name.endswith((".pyc", ".pyo"))


def pack_folder(folder: Path) -> bytes:
    """The folder as a reproducible ``.tar.gz`` with the folder itself as its one top entry."""
    folder = folder.resolve()
    if not (folder / "__main__.py").is_file():
        raise PackageError(f"provider folder {folder} has no __main__.py: a host runs it as "
                           f"'python -m {folder.name}', which needs one")
    if not folder.name.isidentifier():
        raise PackageError(f"provider folder {folder}: its name must be a Python module name "
                           f"(a host runs 'python -m {folder.name}')")
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not _skipped(d))
            rel_root = Path(root).relative_to(folder.parent)
            tar.addfile(_info(str(rel_root), tarfile.DIRTYPE, 0o755, 0))
            for name in sorted(f for f in files if not _skipped(f)):
                path = Path(root) / name
                if path.is_symlink() or not path.is_file():
                    continue  # a link could point anywhere on this machine; sockets and pipes are not files
                data = path.read_bytes()
                total += len(data)
                if total > MAX_PACKAGE_BYTES:
                    raise PackageError(f"provider folder {folder} holds more than {MAX_PACKAGE_BYTES // 2**20} MiB")
                mode = 0o755 if os.access(path, os.X_OK) else 0o644
                tar.addfile(_info(str(rel_root / name), tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def is_package(data: bytes) -> bool:
    return data.startswith(_GZIP_MAGIC)


@dataclass(frozen=True)
class PreparedProvider:
    """What a host runs for a fetched provider: a command and what it adds to the environment."""

    argv_tail: list[str]  # after the interpreter: [script] or ["-m", module]
    pythonpath: list[str] = field(default_factory=list)


def unpack(data: bytes, digest_hex: str, directory: Path) -> PreparedProvider:
    """Unpack a provider artifact into ``directory/<digest>`` (once; later calls reuse it)."""
    target = directory / digest_hex
    if not target.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{digest_hex}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            if is_package(data):
                try:
                    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r") as tar:
                        _extract(tar, tmp)
                except (OSError, EOFError, tarfile.TarError) as exc:
                    raise PackageError(
                        f"provider package sha256:{digest_hex} is not a readable tar.gz: {exc}") from None
            else:
                (tmp / "provider.py").write_bytes(data)
            try:
                tmp.rename(target)
            except OSError:  # another start of the same digest unpacked it first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _prepared(target, digest_hex)


def _extract(tar: tarfile.TarFile, target: Path) -> None:
    """Only folders and plain files, inside ``target`` (what `pack_folder` makes; anything else is refused)."""
    for member in tar.getmembers():
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise PackageError(f"provider package entry {member.name!r} is not a plain file or folder inside it")
    if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: the standard library checks it again
        tar.extractall(target, filter="data")
    else:  # pragma: no cover
        tar.extractall(target)


def _prepared(target: Path, digest_hex: str) -> PreparedProvider:
    script = target / "provider.py"
    if script.is_file():
        return PreparedProvider([str(script)])
    tops = [p for p in target.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "__main__.py").is_file():
        raise PackageError(f"provider package sha256:{digest_hex} does not hold one folder with a __main__.py")
    return PreparedProvider(["-m", tops[0].name], [str(target)])
