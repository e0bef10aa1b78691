"""How Trellis installs and starts its own processes: version, optional extras, a safe import path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import trellis
from trellis.host.provider_refs import BUILTIN_EXTRAS, SAFE_PATH, ProviderRefError, provider_argv
from trellis.kit.procs import trellis_argv


def test_version_flag_prints_the_version() -> None:
    out = subprocess.run(trellis_argv("--version"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"trellis {trellis.__version__}"


def test_a_folder_named_like_a_trellis_package_in_the_working_directory_does_not_shadow_it(tmp_path: Path) -> None:
    for name in ("trellis", "host", "providers", "interfaces", "wadm"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise SystemExit('shadowed by the working directory')\n")
    out = subprocess.run(trellis_argv("--version"), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "shadowed" not in out.stderr
    assert out.returncode == 0, out.stderr
    # and the argv a host uses for a built-in provider is just as immune
    argv = provider_argv("builtin:keyvalue-nats")
    assert argv[:2] == [sys.executable, SAFE_PATH]
    shadowed = subprocess.run([*argv, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "shadowed" not in shadowed.stderr


def test_a_builtin_provider_whose_extra_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_EXTRAS, "keyvalue-redis", ("trellis_no_such_module", "redis"))
    with pytest.raises(ProviderRefError) as err:
        provider_argv("builtin:keyvalue-redis")
    assert "pip install 'trellis-wasm[redis]'" in str(err.value)
    assert "keyvalue-redis" in str(err.value)


REPO = Path(__file__).resolve().parents[2]
LAYERS = ("host", "interfaces", "providers", "wadm")


def _bare_imports(path: Path) -> list[str]:
    import ast
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        line = getattr(node, "lineno", 0)
        found += [f"{path.relative_to(REPO)}:{line}: {n}" for n in names if n.split(".")[0] in LAYERS]
    return found


def test_no_code_imports_a_layer_by_its_bare_top_level_name() -> None:
    """Installed, the layers live only inside the ``trellis`` package (``trellis.host`` …): a bare
    ``import host`` would work from a checkout and break once installed, or load a module twice."""
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    files = [REPO / f for f in listed.stdout.split() if "/templates/" not in f]
    assert len(files) > 100
    bad = [line for p in files for line in _bare_imports(p)]
    assert not bad, "import these as trellis.<layer>…:\n" + "\n".join(bad)


def test_the_layers_are_the_trellis_packages_folders() -> None:
    for name in LAYERS:
        link = REPO / "trellis" / name
        assert link.is_symlink() and link.resolve() == REPO / name, link
        module = __import__(f"trellis.{name}", fromlist=["_"])
        assert Path(str(module.__file__)).resolve() == REPO / name / "__init__.py"


@pytest.mark.slow
def _version() -> str:
    return trellis.__version__


def test_the_wheel_installs_nothing_but_the_trellis_package(tmp_path: Path) -> None:
    """No generic top-level names (``host``, ``wadm`` …) in site-packages: one ``trellis`` package."""
    import shutil
    import zipfile
    # built from a copy of the files git tracks: a checkout's own build/ (left by an earlier
    # build, which setuptools would reuse) must not decide what the wheel holds
    src = tmp_path / "src"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if not os.path.lexists(REPO / rel):
            continue  # deleted in the working tree, not yet committed
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel, follow_symlinks=False)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("trellis_wasm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"trellis", "trellis_wasm-0.1.0.dist-info".replace("0.1.0", _version())}, tops
    for layer in LAYERS:
        assert f"trellis/{layer}/__init__.py" in names
    assert "trellis/host/runtime/wasi_http/__init__.py" in names
    assert any(n.startswith("trellis/interfaces/wit/") and n.endswith(".wit") for n in names)
