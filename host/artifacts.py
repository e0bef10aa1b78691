"""Fetching component artifacts, checked by digest and kept on disk by digest."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from nats.aio.client import Client

from trellis.interfaces.artifacts import ArtifactError, fetch_lattice, parse_ref, sha256_digest
from trellis.interfaces.errors import ErrorCode

from . import oci
from .provider_refs import FIX_FOR_PATHS

MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


class ArtifactFetcher:
    def __init__(self, nc: Client, lattice: str, directory: Path,
                 insecure_registries: tuple[str, ...] | list[str] = (), who: str = "this host") -> None:
        self.nc = nc
        self.lattice = lattice
        self.directory = directory
        self.insecure_registries = tuple(insecure_registries)
        self.who = who  # "host NAME", for messages that must say which machine cannot read a path

    def _cached(self, digest: str) -> Path:
        return self.directory / f"{digest.replace(':', '-')}.wasm"

    async def fetch(self, image: str, expected_digest: str | None = None) -> tuple[Path, str]:
        """Return (path on disk, sha256 digest) of the artifact ``image`` names."""
        ref = parse_ref(image)
        want = expected_digest or ref.digest
        if want and not want.startswith("sha256:"):
            want = "sha256:" + want
        if want and self._cached(want).exists():
            return self._cached(want), want
        if ref.kind == "file":
            try:
                data = await asyncio.to_thread(Path(ref.location).read_bytes)
            except FileNotFoundError:
                raise ArtifactError(f"{self.who} cannot read {ref.location} (not on that machine): "
                                    f"{FIX_FOR_PATHS}", ErrorCode.NOT_FOUND) from None
            except OSError as exc:
                raise ArtifactError(f"{self.who} cannot read {ref.location}: {exc.strerror}",
                                    ErrorCode.NOT_FOUND) from None
        elif ref.kind == "http":
            data = await self._http(ref.location)
        elif ref.kind == "lattice":
            data = await fetch_lattice(self.nc, self.lattice, ref.location and f"sha256:{ref.location}")
        elif ref.kind == "oci":
            oci_ref = oci.parse_oci(ref.location)
            pulled, layer = await asyncio.to_thread(
                oci.pull, oci_ref, insecure=oci.insecure_allowed(oci_ref.registry, self.insecure_registries),
                have=lambda digest: self._cached(digest).exists())
            if pulled is None:  # the layer is cached: fetched once per host
                if want and layer != want:
                    raise ArtifactError(f"digest mismatch for {image}: expected {want}, got {layer}")
                return self._cached(layer), layer
            data = pulled
        elif ref.kind == "builtin":
            raise ArtifactError(f"{image!r} names a built-in provider, not a component")
        else:
            raise ArtifactError(f"cannot fetch {image!r}: unknown kind of reference")
        digest = await asyncio.to_thread(sha256_digest, data)  # tens of MiB: not on the host's loop
        if want and digest != want:
            raise ArtifactError(f"digest mismatch for {image}: expected {want}, got {digest}")
        if not data.startswith(b"\x00asm"):
            raise ArtifactError(f"{image} is not a WebAssembly binary")
        path = self._cached(digest)
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")  # concurrent fetches of one digest
            await asyncio.to_thread(tmp.write_bytes, data)
            tmp.replace(path)
        return path, digest

    async def _http(self, url: str) -> bytes:
        import httpx  # here: importing it costs a host ~7 MiB (its TLS setup), and most never fetch over HTTP

        try:
            async with httpx.AsyncClient(timeout=60, follow_redirects=True) as client:
                resp = await client.get(url)
        except httpx.HTTPError as exc:
            raise ArtifactError(f"cannot fetch {url}: {exc}", ErrorCode.NOT_FOUND) from None
        if resp.status_code != 200:
            raise ArtifactError(f"cannot fetch {url}: HTTP {resp.status_code}", ErrorCode.NOT_FOUND)
        if len(resp.content) > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{url} is larger than {MAX_ARTIFACT_BYTES} bytes")
        return resp.content
