"""Components for co-located and inline call tests: the shared chain (first → second → third),
plus `selfcall` (imports and exports test:chain/runner), `spintail` (a runner that never returns)
and `logchain` (logs, then calls next like chain)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.components.build import build_wat

HERE = Path(__file__).parent


def _build(name: str, out: Path) -> Path:
    src = HERE / name
    for argv in (["parse", str(src / "core.wat"), "-o", str(out / f"{name}-core.wasm")],
                 ["component", "embed", str(src / "world.wit"), str(out / f"{name}-core.wasm"),
                  "-o", str(out / f"{name}-embedded.wasm")],
                 ["component", "new", str(out / f"{name}-embedded.wasm"), "-o", str(out / f"{name}.wasm")]):
        subprocess.run(["wasm-tools", *argv], check=True, capture_output=True)
    return out / f"{name}.wasm"


@pytest.fixture(scope="session")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {name: build_wat(name) for name in ("adder", "chain", "middle", "tail")}
    out = tmp_path_factory.mktemp("local-calls")
    for name in ("selfcall", "spintail", "logchain"):
        built[name] = _build(name, out)
    return built
