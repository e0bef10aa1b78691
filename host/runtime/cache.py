"""Compiled-component cache: on disk across processes, in memory within one.

Compiling a component (cranelift) costs milliseconds for a tiny WAT
component and seconds for a componentize-py one; deserializing a compiled
artifact costs well under a millisecond. Every worker process of a host
therefore loads components through a :class:`CompileCache` on a shared
directory.

Key: ``sha256(wasm)`` plus the wasmtime version plus the engine's
:meth:`~trellis.host.runtime.engine.EngineSettings.cache_tag`, so an upgrade or a
config change never loads an incompatible artifact. Files are written
atomically (temporary file + rename), so concurrent workers may race to
compile the same component and the last rename wins with identical bytes.
A file that wasmtime refuses to deserialize is deleted and recompiled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from .engine import WASMTIME_VERSION, RuntimeEngine

__all__ = ["CacheStats", "CompileCache", "wasm_digest"]


def wasm_digest(wasm: bytes) -> str:
    """The content digest that identifies a component everywhere."""
    return hashlib.sha256(wasm).hexdigest()


def cache_key(digest: str, engine_tag: str) -> str:
    """File-name-safe key for a digest compiled by one engine config."""
    material = f"{digest}|wasmtime={WASMTIME_VERSION}|{engine_tag}"
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass
class CacheStats:
    """Counters, for tests and metrics. Monotonic per cache instance."""

    compiled: int = 0
    disk_hits: int = 0
    memory_hits: int = 0
    corrupt_dropped: int = 0


class CompileCache:
    """Loads components, compiling at most once per digest and engine config.

    ``directory=None`` keeps only the in-process layer.
    """

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()
        self._memory: dict[tuple[int, str], tuple[RuntimeEngine, Component]] = {}
        self._lock = threading.Lock()

    def path_for(self, engine: RuntimeEngine, digest: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{cache_key(digest, engine.cache_tag)}.cwasm"

    def load(
        self, engine: RuntimeEngine, wasm: bytes, digest: str | None = None
    ) -> Component:
        """Return the compiled component for ``wasm`` on ``engine``."""
        digest = digest or wasm_digest(wasm)
        mem_key = (id(engine), digest)
        with self._lock:
            hit = self._memory.get(mem_key)
            if hit is not None:
                self.stats.memory_hits += 1
                return hit[1]
        component = self._load_uncached(engine, wasm, digest)
        with self._lock:
            # Keep the engine referenced so its id() cannot be reused.
            self._memory.setdefault(mem_key, (engine, component))
            return self._memory[mem_key][1]

    def load_file(self, engine: RuntimeEngine, path: Path, digest: str | None = None) -> tuple[Component, str,
                                                                                               Path | None]:
        """The compiled component of the ``.wasm`` file ``path``: ``(component, digest, artifact)``.

        With ``digest`` (bare hex or ``sha256:…``) given and its artifact on disk, ``path`` is
        never read: the artifact is deserialized (``mmap``'d). Otherwise the file is read,
        compiled and its artifact written. The component is not kept in the memory layer, so
        dropping it gives its memory back (``parking.py``).
        """
        if digest:
            digest = digest.removeprefix("sha256:")
            art = self.path_for(engine, digest)
            component = self._from_disk(engine, art)
            if component is not None:
                return component, digest, art
        wasm = path.read_bytes()
        actual = wasm_digest(wasm)
        if digest and actual != digest:
            raise ValueError(f"{path} has digest sha256:{actual}, not the expected sha256:{digest}")
        component = self._load_uncached(engine, wasm, actual)
        del wasm
        return component, actual, self.path_for(engine, actual)

    def _load_uncached(
        self, engine: RuntimeEngine, wasm: bytes, digest: str
    ) -> Component:
        path = self.path_for(engine, digest)
        cached = self._from_disk(engine, path)
        if cached is not None:
            return cached
        component = Component(engine.engine, wasm)
        self.stats.compiled += 1
        if path is not None:
            _write_atomically(path, bytes(component.serialize()))
        return component


    def _from_disk(self, engine: RuntimeEngine, path: Path | None) -> Component | None:
        """The compiled artifact at ``path``, if there is one that loads; a corrupt one is deleted."""
        if path is None or not path.exists():
            return None
        try:
            component = Component.deserialize_file(engine.engine, str(path))
        except wasmtime.WasmtimeError:
            self.stats.corrupt_dropped += 1
            path.unlink(missing_ok=True)
            return None
        self.stats.disk_hits += 1
        return component


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
