"""Fixtures for runtime tests: one engine, a persistent compile cache, and
the shared test components built once per session (and cached on disk)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.build import build_python, build_wat, default_cache_dir
from trellis.host.runtime import CompileCache, LoadedComponent, RuntimeEngine, load_component, make_engine


class TestComponents:
    """Builds and loads test components on first use, then memoizes them."""

    __test__ = False  # not a test class

    def __init__(self, engine: RuntimeEngine, cache: CompileCache) -> None:
        self.engine = engine
        self.cache = cache
        self._loaded: dict[tuple[str, str], LoadedComponent] = {}

    def wat(self, name: str) -> LoadedComponent:
        return self._load("wat", name)

    def python(self, name: str) -> LoadedComponent:
        return self._load("python", name)

    def _load(self, kind: str, name: str) -> LoadedComponent:
        key = (kind, name)
        if key not in self._loaded:
            path = build_wat(name) if kind == "wat" else build_python(name)
            self._loaded[key] = load_component(self.engine, path.read_bytes(), self.cache)
        return self._loaded[key]


@pytest.fixture(scope="session")
def engine() -> Iterator[RuntimeEngine]:
    eng = make_engine()
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def compile_cache() -> CompileCache:
    """Persistent across sessions: componentize-py components take seconds
    to compile and milliseconds to deserialize."""
    return CompileCache(default_cache_dir() / "compiled")


@pytest.fixture(scope="session")
def components(engine: RuntimeEngine, compile_cache: CompileCache) -> TestComponents:
    return TestComponents(engine, compile_cache)


@pytest.fixture
def wasm_dir(tmp_path: Path) -> Path:
    return tmp_path
