"""How Trellis installs and starts its own processes: version, optional extras, a safe import path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import trellis
from host.provider_refs import BUILTIN_EXTRAS, SAFE_PATH, ProviderRefError, provider_argv
from trellis.procs import trellis_argv


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
