"""Artifact references and the lattice's own artifact store (JetStream object store).

A component's ``image`` may be:

* a file path or ``file:///abs/path.wasm``
* an ``http(s)://`` URL
* ``lattice://sha256:<hex>`` — pushed with ``trellis push``; any host fetches it from NATS
* ``REGISTRY/REPO:TAG``, ``REGISTRY/REPO@sha256:<hex>`` or ``oci://…`` — an OCI registry (host/oci.py)
* any of the above pinned by digest: the fetcher checks the sha256 of what it got
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE

from . import subjects
from .errors import ErrorCode, TrellisError
from .jetstream_errors import describe, transient

log = logging.getLogger(__name__)
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
    if image.startswith("oci://"):
        return ArtifactRef("oci", image[len("oci://"):])
    if "://" in image:
        raise ArtifactError(f"unsupported image scheme in {image!r} "
                            "(use a path, file://, http(s)://, lattice:// or oci://)")
    p = Path(image).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.suffix == ".wasm" or p.exists() or image.startswith((".", "/", "~")):
        return ArtifactRef("file", str(p.resolve()))
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return ArtifactRef("oci", image)  # REGISTRY/REPO[:TAG][@sha256:…], as wadm and wash write them
    if "/" in image:
        return ArtifactRef("file", str(p.resolve()))
    raise ArtifactError(f"cannot tell what {image!r} is: name a file (./{image}), a registry "
                        "(REGISTRY/REPO:TAG), lattice://sha256:… or an http(s) URL")


def object_name(digest: str) -> str:
    return digest.replace(":", "-")


async def push(nc: Client, lattice: str, data: bytes, *, replicas: int | None = None) -> str:
    """Store an artifact in the lattice's object store; return its ``lattice://`` reference.

    The store is made on first use with ``replicas`` copies (default: the lattice-wide
    ``TRELLIS_KV_REPLICAS``, as every bucket Trellis makes).
    """
    ref, _ = await push_missing(nc, lattice, data, replicas=replicas, check=False)
    return ref


async def push_missing(nc: Client, lattice: str, data: bytes, *, replicas: int | None = None,
                       check: bool = True) -> tuple[str, bool]:
    """`push`, but only when the store does not hold these bytes yet: (reference, uploaded).

    Content-addressed, so an object of the same name and size is the same artifact: re-deploying
    unchanged files sends nothing.
    """
    from nats.js.api import ObjectStoreConfig

    from .store import StoreSettings

    if replicas is None:
        replicas = StoreSettings.from_env().replicas

    js = nc.jetstream()
    bucket = subjects.bucket(lattice, "artifacts")
    digest = sha256_digest(data)
    try:
        store = await js.object_store(bucket)
    except Exception:
        store = await js.create_object_store(bucket, config=ObjectStoreConfig(bucket=bucket, replicas=replicas))
    else:
        if check:
            try:
                info = await store.get_info(object_name(digest))
            except (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError):
                info = None
            if info is not None and info.size == len(data) and not info.deleted:
                return "lattice://" + digest, False
    await store.put(object_name(digest), data)
    return "lattice://" + digest, True


#: how long `fetch_lattice` keeps trying while the lattice's store cannot answer (seconds)
FETCH_TIMEOUT_S = 30.0
#: one attempt of `fetch_lattice`: a request, or the wait for the next chunk, that takes longer is tried again
FETCH_ATTEMPT_S = 2.0
async def fetch_lattice(nc: Client, lattice: str, digest: str, *, timeout_s: float = FETCH_TIMEOUT_S,
                        attempt_s: float = FETCH_ATTEMPT_S) -> bytes:
    """The artifact ``digest`` (``sha256:<hex>``) from the lattice's object store.

    While the store cannot answer (its stream electing a leader after a NATS node was lost:
    503 or no answer; the connection moving to another node) the read is made again, each
    attempt bounded by ``attempt_s`` (a request, or the wait for the next chunk), with a short
    backoff, until ``timeout_s``; then `ArtifactError` ``timeout`` says the store is
    unavailable. An artifact that is not in the store is ``not_found`` at once.
    """
    bucket = subjects.bucket(lattice, "artifacts")
    js = nc.jetstream(timeout=attempt_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.1
    attempts = 0
    while True:
        attempts += 1
        try:
            data = await _read_object(js, bucket, object_name(digest), attempt_s)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.ObjectNotFoundError,
                nats.js.errors.ObjectDeletedError):
            raise ArtifactError(f"artifact {digest} is not in lattice {lattice!r}'s store; "
                                "push it with 'trellis push FILE'", ErrorCode.NOT_FOUND) from None
        except nats.errors.NoRespondersError:
            raise ArtifactError(f"cannot fetch artifact {digest}: JetStream is not available on the NATS server "
                                "(the lattice's artifact store needs it)", ErrorCode.NO_RESPONDERS) from None
        except ArtifactError:
            raise
        except Exception as exc:
            if not transient(exc):
                raise ArtifactError(f"cannot read artifact {digest} from lattice {lattice!r}'s store: "
                                    f"{describe(exc)}", ErrorCode.INTERNAL) from None
            if loop.time() + delay >= deadline:
                raise ArtifactError(
                    f"lattice {lattice!r}'s artifact store is unavailable ({describe(exc)}; {attempts} attempts "
                    f"over {timeout_s:g}s) fetching {digest}: is the NATS cluster electing a leader, or missing "
                    "a majority of its nodes? Try again", ErrorCode.TIMEOUT) from None
            log.info("artifact store of lattice %s unavailable (%s, attempt %d) fetching %s; retrying in %.1fs",
                     lattice, describe(exc), attempts, digest, delay)
        else:
            if digest.startswith("sha256:"):  # tens of MiB: hashed off the caller's loop
                actual = await asyncio.to_thread(sha256_digest, data)
                if actual != digest:
                    raise ArtifactError(f"artifact {digest} in lattice {lattice!r}'s store is corrupt "
                                        f"(its content is {actual})", ErrorCode.INTERNAL)
            return data
        await asyncio.sleep(delay)  # backoff: JetStream does not say when it is back
        delay = min(delay * 2, 1.0)


async def _read_object(js: JetStreamContext, bucket: str, name: str, attempt_s: float) -> bytes:
    """One attempt at an object: its meta, then its chunks, none of them slower than ``attempt_s``.

    (nats-py's ``ObjectStore.get`` waits for chunks without a bound, and leaves its
    subscription behind when cancelled.)
    """
    store = await js.object_store(bucket)
    info = await store.get_info(name)
    if not info.nuid:
        raise ArtifactError(f"unreadable entry for {name} in the artifact store", ErrorCode.INTERNAL)
    if not info.size:
        return b""
    sub = await js.subscribe(OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid), ordered_consumer=True)
    try:
        chunks: list[bytes] = []
        while True:
            msg = await sub.next_msg(timeout=attempt_s)
            chunks.append(msg.data)
            if msg.metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    data = b"".join(chunks)
    if len(data) != info.size:
        raise ArtifactError(f"{name} in the artifact store: read {len(data)} bytes of {info.size}", ErrorCode.INTERNAL)
    return data
