"""The wasmtime patches are applied explicitly, on the wasmtime range pyproject pins, and a
wasmtime release that changes what one of them relies on fails here, naming the patch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from trellis.host.runtime import wasmtime_reliance as reliance

REPO = Path(__file__).resolve().parents[2]


def test_the_installed_wasmtime_is_the_tested_one_and_within_the_pin() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(Requirement(d) for d in deps if Requirement(d).name == "wasmtime")
    assert pin.specifier.contains(reliance.TESTED_WASMTIME), f"{pin} excludes the tested {reliance.TESTED_WASMTIME}"
    installed = reliance.installed_wasmtime()
    assert pin.specifier.contains(installed), f"wasmtime {installed} is not {pin}"
    assert any(s.operator in ("<", "<=", "==", "~=") for s in pin.specifier), f"{pin} has no upper bound"


def test_what_the_patches_rely_on_is_unchanged() -> None:
    changes = reliance.changes()
    assert not changes, (
        "a wasmtime release changed what these patches rely on; re-read each against the new "
        "wasmtime, fix it, then update TESTED_WASMTIME and FINGERPRINTS "
        "(python -m trellis.host.runtime.wasmtime_reliance):\n" + "\n".join(changes))


def test_every_reliance_has_a_fingerprint() -> None:
    refs = {ref for refs in reliance.RELIES_ON.values() for ref in refs}
    assert refs == set(reliance.FINGERPRINTS)


@pytest.mark.parametrize(("ref", "patch"), [
    ("py:wasmtime.component._types:VariantLikeType._lower", "wasmtime_patches 2"),
    ("c:wasmtime_component_linker_instance_add_func", "wasi_http.fastcall"),
    ("ctype:wasmtime_component_valresult_t", "lower_in_place"),
])
def test_a_change_is_reported_with_the_patch_that_relies_on_it(monkeypatch, ref: str, patch: str) -> None:
    monkeypatch.setitem(reliance.FINGERPRINTS, ref, "0" * 16)
    changes = reliance.changes()
    assert any(line.startswith(patch) and ref in line for line in changes), changes


def test_importing_the_runtime_changes_nothing_in_wasmtime_and_engines_need_the_patches() -> None:
    code = (
        "from wasmtime.component import _types\n"
        "before = _types.ListType.convert_to_c\n"
        "import trellis.host.runtime as rt\n"
        "assert _types.ListType.convert_to_c is before, 'importing the runtime patched wasmtime'\n"
        "try:\n"
        "    rt.make_engine()\n"
        "except rt.engine.WasmtimeNotPatched as e:\n"
        "    print('refused:', e)\n"
        "rt.wasmtime_patches.apply()\n"
        "assert _types.ListType.convert_to_c is not before\n"
        "rt.make_engine().close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "refused: wasmtime-py is not patched" in out.stdout
