"""Artifact references and the lattice's own artifact store (JetStream object store).

A component's ``image`` may be:

* a file path or ``file:///abs/path.wasm``
* an ``http(s)://`` URL
* ``lattice://sha256:<hex>`` — pushed with ``trellis push``; any host fetches it from NATS
* any of the above pinned by digest: the fetcher checks the sha256 of what it got
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from nats.aio.client import Client

from . import subjects
from .errors import ErrorCode, TrellisError

_LATTICE = re.compile(r"^lattice://sha256:([0-9a-f]{64})$")


class ArtifactError(TrellisError):
    code = ErrorCode.BAD_REQUEST


@dataclass(frozen=True)
class ArtifactRef:
    kind: str  # "file" | "http" | "lattice" | "builtin" | "oci"
    location: str
    digest: str | None = None  # "sha256:<hex>" when the reference pins one


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_ref(image: str, base_dir: Path | None = None) -> ArtifactRef:
    image = image.strip()
    if not image:
        raise ArtifactError("empty image reference")
    m = _LATTICE.match(image)
    if m:
        return ArtifactRef("lattice", m.group(1), f"sha256:{m.group(1)}")
    if image.startswith("lattice://"):
        raise ArtifactError(f"bad lattice reference {image!r}: expected lattice://sha256:<64 hex digits>")
    if image.startswith("builtin:"):
        return ArtifactRef("builtin", image[len("builtin:"):])
    if image.startswith(("http://", "https://")):
        return ArtifactRef("http", image)
    if image.startswith("file://"):
        path = unquote(urlparse(image).path)
        return ArtifactRef("file", path)
    if "://" in image:
        raise ArtifactError(f"unsupported image scheme in {image!r} (use a path, file://, http(s):// or lattice://)")
    p = Path(image).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.suffix == ".wasm" or p.exists() or "/" in image or image.startswith("."):
        return ArtifactRef("file", str(p.resolve()))
    return ArtifactRef("oci", image)


def object_name(digest: str) -> str:
    return digest.replace(":", "-")


async def push(nc: Client, lattice: str, data: bytes, *, replicas: int | None = None) -> str:
    """Store an artifact in the lattice's object store; return its ``lattice://`` reference.

    The store is made on first use with ``replicas`` copies (default: the lattice-wide
    ``TRELLIS_KV_REPLICAS``, as every bucket Trellis makes).
    """
    from nats.js.api import ObjectStoreConfig

    from .store import StoreSettings

    if replicas is None:
        replicas = StoreSettings.from_env().replicas

    js = nc.jetstream()
    bucket = subjects.bucket(lattice, "artifacts")
    try:
        store = await js.object_store(bucket)
    except Exception:
        store = await js.create_object_store(bucket, config=ObjectStoreConfig(bucket=bucket, replicas=replicas))
    digest = sha256_digest(data)
    await store.put(object_name(digest), data)
    return "lattice://" + digest


async def fetch_lattice(nc: Client, lattice: str, digest: str) -> bytes:
    js = nc.jetstream()
    try:
        store = await js.object_store(subjects.bucket(lattice, "artifacts"))
        result = await store.get(object_name(digest))
    except Exception as exc:
        raise ArtifactError(f"artifact {digest} is not in lattice {lattice!r}'s store ({exc.__class__.__name__}); "
                            "push it with 'trellis push FILE'", ErrorCode.NOT_FOUND) from None
    assert result.data is not None
    return bytes(result.data)
