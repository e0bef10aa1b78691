"""`trellis up --deploy`: what it refuses before starting anything (the happy path is conftest's nats-sqlite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import run_cli

from .lattice import free_port


def up(tmp_path: Path, deploy: Path, timeout: float = 60) -> tuple[int, str]:
    r = run_cli("up", "--state-dir", str(tmp_path / "state"), "--nats-port", str(free_port()),
                "--deploy", str(deploy), timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test_a_missing_manifest_is_refused(tmp_path: Path) -> None:
    code, out = up(tmp_path, tmp_path / "nope.yaml")
    assert code == 1
    assert "no such manifest or folder" in out
    assert not (tmp_path / "state" / "nats").exists(), "nothing should have started"


def test_a_folder_without_wadm_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    code, out = up(tmp_path, tmp_path / "apps")
    assert code == 1
    assert "has no wadm.yaml" in out


@pytest.mark.timeout(300)
def test_a_folder_that_does_not_build_is_refused(tmp_path: Path) -> None:
    """componentize-py needs ~45 s on a loaded 2-core machine to find that the module does not run."""
    app = tmp_path / "apps" / "broken"
    app.mkdir(parents=True)
    (app / "trellis.toml").write_text('[component]\nworld = "trellis:http/proxy@0.1.0"\n')
    (app / "app.py").write_text("this is not python\n")
    (tmp_path / "apps" / "wadm.yaml").write_text("apiVersion: core.oam.dev/v1beta1\n")
    code, out = up(tmp_path, tmp_path / "apps", timeout=280)
    assert code == 1
    assert "the build failed" in out
    assert not (tmp_path / "state" / "nats").exists(), "nothing should have started"


def test_deploy_without_wadm_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "wadm.yaml"
    manifest.write_text("apiVersion: core.oam.dev/v1beta1\n")
    r = run_cli("up", "--state-dir", str(tmp_path / "state"), "--nats-port", str(free_port()), "--no-wadm",
                "--deploy", str(manifest))
    assert r.returncode == 1 and "--no-wadm does not start it" in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "state" / "nats").exists(), "nothing should have started"
