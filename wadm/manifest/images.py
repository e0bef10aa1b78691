"""The image reference forms a manifest may use, and how each is read.

===================================  ===========  =================================
form                                 kind         location
===================================  ===========  =================================
``file:///abs/path.wasm``            file         ``/abs/path.wasm``
``file://./rel.wasm`` (wash style)   file         resolved against the base dir
``./rel.wasm``, ``x.wasm``, ``/a.w`` file         resolved against the base dir
``http://…``, ``https://…``          http         the URL
``lattice://sha256:<64 hex>``        lattice      the hex digest (Trellis artifact store)
``builtin:NAME``                     builtin      ``NAME`` (a provider built into Trellis)
anything else                        oci          the reference, e.g. ``ghcr.io/a/b:1.0``
===================================  ===========  =================================

A bare path is recognised by a leading ``/``, ``./`` or ``../``, or by ending in
``.wasm``; everything else without a scheme is read as an OCI reference (so
``test:latest`` is OCI). The validator accepts OCI references, as wadm does, but warns
about one that names no registry host: Trellis hosts pull ``REGISTRY/REPO:TAG`` only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit


class ImageKind(StrEnum):
    FILE = "file"
    HTTP = "http"
    LATTICE = "lattice"
    BUILTIN = "builtin"
    OCI = "oci"


@dataclass(frozen=True)
class ImageRef:
    kind: ImageKind
    original: str
    location: str
    """file: a path (absolute once resolved); http: the URL; lattice: the sha256 hex digest;
    builtin: the provider name; oci: the reference."""

    @property
    def is_relative_path(self) -> bool:
        return self.kind is ImageKind.FILE and not PurePosixPath(self.location).is_absolute()

    @property
    def registry(self) -> str | None:
        """oci: the registry host the reference names (a dot, a port or ``localhost``), else None."""
        if self.kind is not ImageKind.OCI or "/" not in self.location:
            return None
        first = self.location.split("/", 1)[0]
        return first if ("." in first or ":" in first or first == "localhost") else None

    def as_uri(self) -> str:
        """The canonical spelling: ``file:///abs`` for absolute files, the original otherwise."""
        if self.kind is ImageKind.FILE and not self.is_relative_path:
            return "file://" + self.location
        return self.original


class ImageError(ValueError):
    """An image reference that is not one of the accepted forms."""


_HEX64 = re.compile(r"[0-9a-f]{64}")
_BUILTIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_OCI = re.compile(
    r"""
    (?:(?P<registry>(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+(?::[0-9]+)?)/(?=.))?   # registry host[:port]/
    (?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)
    (?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?
    (?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Fa-f0-9]{32,}))?
    """,
    re.VERBOSE,
)

FORMS_HINT = (
    "use file:///abs/path.wasm, a path relative to the manifest, http(s)://…, "
    "lattice://sha256:<hex>, builtin:NAME or an OCI reference such as ghcr.io/org/name:1.0"
)


def looks_like_path(image: str) -> bool:
    return (
        image.startswith(("/", "./", "../"))
        or (image.endswith(".wasm") and ":" not in image)
    )


def parse_image(image: str, base_dir: Path | None = None) -> ImageRef:
    """Classify `image`; relative file paths are resolved against `base_dir` when given.

    Raises `ImageError` (a `ValueError`) with a message saying what is wrong.
    """
    if not image or not image.strip():
        raise ImageError("image is empty")
    if image != image.strip() or any(ch.isspace() for ch in image):
        raise ImageError(f"image {image!r} contains whitespace")

    if image.startswith("file://"):
        path = image[len("file://"):]
        if not path:
            raise ImageError(f"image {image!r} has no path after file://")
        return _file(image, path, base_dir)
    if image.startswith(("http://", "https://")):
        parts = urlsplit(image)
        if not parts.netloc:
            raise ImageError(f"image {image!r} has no host")
        return ImageRef(ImageKind.HTTP, image, image)
    if image.startswith("lattice://"):
        rest = image[len("lattice://"):]
        if not rest.startswith("sha256:") or not _HEX64.fullmatch(rest[len("sha256:"):]):
            raise ImageError(
                f"image {image!r} is not a lattice artifact: expected lattice://sha256:<64 lower-case hex digits>"
            )
        return ImageRef(ImageKind.LATTICE, image, rest[len("sha256:"):])
    if image.startswith("builtin:"):
        name = image[len("builtin:"):]
        if not _BUILTIN_NAME.fullmatch(name):
            raise ImageError(
                f"image {image!r}: a built-in provider name is lower-case letters, digits, '.', '_' or '-'"
            )
        return ImageRef(ImageKind.BUILTIN, image, name)
    scheme = _SCHEME.match(image)
    if scheme:
        raise ImageError(f"image {image!r} has unsupported scheme '{scheme.group(1)}://'; {FORMS_HINT}")
    if looks_like_path(image):
        return _file(image, image, base_dir)
    if not _OCI.fullmatch(image):
        raise ImageError(f"image {image!r} is not a valid OCI reference; {FORMS_HINT}")
    return ImageRef(ImageKind.OCI, image, image)


def _file(original: str, path: str, base_dir: Path | None) -> ImageRef:
    if "\x00" in path:
        raise ImageError(f"image {original!r} contains a NUL byte")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        return ImageRef(ImageKind.FILE, original, str(pure))
    if base_dir is None:
        return ImageRef(ImageKind.FILE, original, str(pure))
    resolved = os.path.normpath(os.path.join(os.path.abspath(base_dir), path))
    return ImageRef(ImageKind.FILE, original, resolved)
