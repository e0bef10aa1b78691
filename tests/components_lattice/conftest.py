"""Components built once per session for lattice-level tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.build import build_wat


@pytest.fixture(scope="session")
def wasm() -> dict[str, Path]:
    return {name: build_wat(name) for name in ("adder", "hostile", "chain", "middle", "tail")}
