"""A manifest's local files travel with it: `trellis app deploy|put` uploads them first.

Every component whose ``image`` is a local file, and every capability provider whose
``image`` is a local ``.py`` file or folder, is put into the lattice's artifact store
(content-addressed; `trellis.interfaces.provider_package` says how a folder is packed) and its
``image`` becomes the ``lattice://sha256:…`` reference, so a host on any machine can fetch
it. ``properties.source`` records where it came from (``trellis app get`` shows both).
Bytes the store already holds are not sent again: re-deploying unchanged files uploads
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trellis.interfaces.artifacts import push_missing, sha256_digest
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.provider_package import pack_folder
from trellis.wadm.manifest.images import ImageError, ImageKind, looks_like_path, parse_image
from trellis.wadm.manifest.load import parse_data
from trellis.wadm.manifest.problems import ManifestError

if TYPE_CHECKING:
    from nats.aio.client import Client

WASM_MAGIC = b"\x00asm"


class UploadError(TrellisError):
    code = ErrorCode.BAD_REQUEST


@dataclass(frozen=True)
class Upload:
    component: str
    source: str  # file:///abs/path of the file or folder
    ref: str  # lattice://sha256:…
    size: int
    uploaded: bool  # False: the store held it already


@dataclass
class Prepared:
    manifest: str  # the text to store (JSON), images rewritten
    uploads: list[Upload]
    warnings: list[str]

    def summary(self) -> str:
        sent = [u for u in self.uploads if u.uploaded]
        kept = len(self.uploads) - len(sent)
        if not self.uploads:
            return ""
        size = sum(u.size for u in sent)
        return (f"artifacts: {len(sent)} uploaded ({_size(size)}), {kept} already in the lattice"
                if sent else f"artifacts: all {kept} already in the lattice, nothing uploaded")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _local_path(image: str, base_dir: Path) -> Path | None:
    if not (image.startswith("file://") or looks_like_path(image)):
        return None
    try:
        ref = parse_image(image, base_dir)
    except ImageError:
        return None  # the manifest check reports it
    return Path(ref.location) if ref.kind is ImageKind.FILE else None


def _read(where: str, path: Path, capability: bool) -> bytes | None:
    """The artifact's bytes, or None when this image is not one to upload."""
    try:
        if capability:
            if path.is_dir():
                return pack_folder(path)
            if path.suffix != ".py":
                return None  # not a Python provider: the host decides what it is
            return path.read_bytes()
        if path.is_dir():
            raise UploadError(f"{where}: image {path} is a folder, not a .wasm file")
        data = path.read_bytes()
    except OSError as exc:
        raise UploadError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if not data.startswith(WASM_MAGIC):
        raise UploadError(f"{where}: {path} is not a WebAssembly component (build it first: trellis build)")
    return data


def local_artifacts(data: Any, base_dir: Path) -> tuple[list[tuple[dict[str, Any], str, Path, bool]], list[str]]:
    """(properties, component name, path, is capability) of each local image, and warnings."""
    found: list[tuple[dict[str, Any], str, Path, bool]] = []
    warnings: list[str] = []
    spec = data.get("spec") if isinstance(data, dict) else None
    comps = spec.get("components") if isinstance(spec, dict) else None
    for comp in comps if isinstance(comps, list) else []:
        props = comp.get("properties") if isinstance(comp, dict) else None
        if not isinstance(props, dict):
            continue
        image = props.get("image")
        if not isinstance(image, str):
            continue
        path = _local_path(image, base_dir)
        if path is None:
            continue
        name = str(comp.get("name"))
        if not path.exists():
            warnings.append(f'component "{name}": image {path} does not exist on this machine, so it is not '
                            "uploaded: every host that runs it must have that file")
            continue
        found.append((props, name, path, comp.get("type") == "capability"))
    return found, warnings


async def upload_local_files(nc: Client, lattice: str, text: str, base_dir: Path) -> Prepared:
    """Upload the manifest's local files and return it with ``lattice://`` images."""
    try:
        data = parse_data(text)
    except ManifestError:
        return Prepared(text, [], [])  # wadm says what is wrong with it
    found, warnings = local_artifacts(data, base_dir)
    if not found:
        return Prepared(text, [], warnings)
    uploads: list[Upload] = []
    sent: dict[str, bool] = {}
    for props, name, path, capability in found:
        blob = _read(f'component "{name}"', path, capability)
        if blob is None:
            continue
        digest = sha256_digest(blob)
        if digest not in sent:
            ref, sent[digest] = await push_missing(nc, lattice, blob)
        else:
            ref = "lattice://" + digest
        source = "file://" + str(path)
        props["image"] = ref
        props["source"] = source
        uploads.append(Upload(name, source, ref, len(blob), sent[digest] and _first(uploads, digest)))
    return Prepared(json.dumps(data), uploads, warnings)


def _first(uploads: list[Upload], digest: str) -> bool:
    """Count an upload once when two components share the same file."""
    return not any(u.ref.endswith(digest) for u in uploads)
