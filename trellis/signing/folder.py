"""Claims on a provider written as a folder (a package with a ``__main__.py``).

A signed folder holds one more file, ``TRELLIS-SIGNATURE.jwt``: wascap claims (see
`claims`) with ``prov: true`` whose ``hash`` is the SHA-256 (upper hex) of the folder's
*listing*: for every regular file under it except the signature and ``__pycache__``
folders, sorted by relative POSIX path, the line ``PATH\\0SHA256-HEX\\n``. A file added,
removed, renamed or changed changes the hash. Links and special files are refused (they
could point outside what was signed).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

from .claims import Claims, SignatureError, decode_verified, encode, new_claims
from .keys import IssuerKey

SIGNATURE_FILE = "TRELLIS-SIGNATURE.jwt"
_SKIP_DIRS = {"__pycache__"}


def _files(root: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts):
            continue
        if path.is_symlink():
            raise SignatureError(f"{rel} is a symbolic link: a signed folder holds only plain files and folders")
        if path.is_dir():
            continue
        if not path.is_file():
            raise SignatureError(f"{rel} is not a plain file")
        if rel.as_posix() == SIGNATURE_FILE:
            continue
        out.append((rel.as_posix(), path))
    return out


def _listing_hash(entries: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for rel, data in sorted(entries):
        h.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest().upper()


def folder_hash(root: Path) -> str:
    return _listing_hash([(rel, p.read_bytes()) for rel, p in _files(root)])


def sign_folder(src: Path, dest: Path, key: IssuerKey, *, name: str | None = None, tags: tuple[str, ...] = (),
                ver: str | None = None, rev: int | None = None, expires_in_days: float | None = None) -> Claims:
    """Copy ``src`` to ``dest`` (a new folder) with a signature over its content."""
    if dest.exists():
        raise SignatureError(f"{dest} already exists; give a new folder for the signed copy")
    files = _files(src)
    entries = [(rel, p.read_bytes()) for rel, p in files]
    claims = new_claims(_listing_hash(entries), key, name=name, provider=True, tags=tags, ver=ver, rev=rev,
                        expires_in_days=expires_in_days)
    dest.mkdir(parents=True)
    for rel, data in entries:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (dest / SIGNATURE_FILE).write_text(encode(claims, key) + "\n")
    return claims


def read_folder_claims(root: Path, *, now: float | None = None) -> Claims | None:
    sig = root / SIGNATURE_FILE
    if not sig.is_file():
        return None
    claims = decode_verified(sig.read_text(), now=now)
    actual = folder_hash(root)
    if actual != claims.hash.upper():
        raise SignatureError(f"the folder was changed after {claims.issuer} signed it: its content hash "
                             f"{actual[:16]}… is not the signed {claims.hash[:16]}…")
    return claims


def verified_copy(src: Path, dest: Path, check: Callable[[Claims | None], Claims]) -> Claims:
    """Copy ``src`` to ``dest`` reading each file once, then check the claims against the bytes
    copied (so what runs from ``dest`` is exactly what was checked); ``dest`` is replaced."""
    entries = [(rel, p.read_bytes()) for rel, p in _files(src)]
    sig = src / SIGNATURE_FILE
    token = sig.read_text() if sig.is_file() and not sig.is_symlink() else None
    claims = check(None if token is None else decode_verified(token))
    actual = _listing_hash(entries)
    if actual != claims.hash.upper():
        raise SignatureError(f"the folder was changed after {claims.issuer} signed it: its content hash "
                             f"{actual[:16]}… is not the signed {claims.hash[:16]}…")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in entries:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return claims

