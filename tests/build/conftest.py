"""Fixtures for `trellis build` tests: the examples, built once per session.

Builds take ~10 s each and compiling a componentize-py component ~10 s more,
so both caches persist across sessions (beside the shared test components):
a session whose sources did not change builds and compiles nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.build import default_cache_dir
from trellis.build import BuildOptions, BuildResult, build_all
from trellis.host.runtime import CompileCache, RuntimeEngine, make_engine

REPO = Path(__file__).resolve().parents[2]
HELLO_PYTHON = REPO / "examples" / "hello-python"


@pytest.fixture(scope="session")
def build_cache() -> Path:
    """The content-addressed build cache the examples are built through."""
    return default_cache_dir() / "trellis-build"


@pytest.fixture(scope="session")
def hello_python(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> dict[str, BuildResult]:
    """``examples/hello-python`` built into a fresh folder: {app name: result}."""
    out = tmp_path_factory.mktemp("hello-python-build")
    results = build_all(HELLO_PYTHON, out, BuildOptions(cache_dir=build_cache))
    return {r.app.name: r for r in results}


@pytest.fixture(scope="session")
def runtime_engine() -> Iterator[RuntimeEngine]:
    engine = make_engine()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def runtime_cache() -> CompileCache:
    return CompileCache(default_cache_dir() / "compiled")
