"""Docs that run: every manifest shown is valid, and every block marked runnable runs as shown.

The conventions are in `tests/docs/blocks.py` and docs/CONTRIBUTING.md. The runnable blocks
of all files share one lattice for the session (a real ``trellis up`` labelled
``zone=eu-1,role=edge`` plus a ``trellis host`` labelled ``zone=us-1``, as the manifest
docs assume), each file's blocks in document order in a folder of its own that sees the
repository's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.components.build import default_cache_dir
from tests.harness import COMPILE_CACHE, HostProcess
from tests.platform_poc.lattice import TrellisUp, free_port
from trellis.wadm.manifest import check_manifest

from .blocks import REPO, Block, all_blocks, blocks, doc_files

MANIFESTS = [b for b in all_blocks() if b.is_manifest]
RUNNABLE_FILES = [f for f in doc_files() if any(b.runs for b in blocks(f))]
EXAMPLE_MANIFESTS = sorted((REPO / "examples").glob("*/wadm*.yaml"))
BLOCK_TIMEOUT_S = 600.0


@pytest.mark.parametrize("block", MANIFESTS, ids=lambda b: b.where)
def test_every_manifest_shown_is_valid_and_runs_or_says_why_not(block: Block) -> None:
    _, problems = check_manifest(block.text, base_dir=REPO)
    errors = [str(p) for p in problems if p.is_error]
    assert not errors, f"{block.where}: the manifest shown is invalid:\n" + "\n".join(errors)
    if block.marker == "runnable":
        assert "save" in block.options, \
            f"{block.where}: a runnable manifest names its file: <!-- runnable save=NAME -->"
    else:
        assert block.marker == "not-runnable" and block.reason, (
            f"{block.where}: mark the manifest <!-- runnable save=NAME --> (and deploy it in a runnable block) "
            "or <!-- not-runnable: REASON -->")


@pytest.mark.parametrize("path", EXAMPLE_MANIFESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_example_manifests_are_valid(path: Path) -> None:
    _, problems = check_manifest(path)
    errors = [str(p) for p in problems if p.is_error]
    assert not errors, "\n".join(errors)


def test_the_conventions_find_runnable_blocks() -> None:
    """Guards the extractor: the README and the manifest guide have runnable blocks."""
    names = {f.name for f in RUNNABLE_FILES}
    assert {"README.md", "manifests.md", "providers.md"} <= names, names


class DocsLattice:
    def __init__(self, root: Path) -> None:
        self.up = TrellisUp(root / "up", args=("--label", "zone=eu-1", "--label", "role=edge"))
        self.up.wait_ready()
        state = root / "host2"
        state.mkdir()
        (state / "compiled").symlink_to(COMPILE_CACHE, target_is_directory=True)
        self.host = HostProcess(self.up.nats_url, "default", "--label", "zone=us-1", "--state-dir", str(state),
                                log=root / "host2.log").wait_started(60)
        self.bin = root / "bin"
        self.bin.mkdir()
        shim = self.bin / "trellis"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trellis.cli.main "$@"\n')
        shim.chmod(0o755)

    def env(self) -> dict[str, str]:
        return {**os.environ, "TRELLIS_NATS_URL": self.up.nats_url, "TRELLIS_LATTICE": "default",
                "PATH": f"{self.bin}:{os.environ.get('PATH', '')}", "COLUMNS": "200",
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
                "TRELLIS_BUILD_CACHE": str(default_cache_dir() / "trellis-build")}

    def children(self) -> set[int]:
        """Processes the lattice runs (workers, providers): any a doc's blocks start and do not stop."""
        found: set[int] = set()
        for pid in (self.up.proc.pid, self.host.proc.pid):
            try:
                kids = psutil.Process(pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for kid in kids:
                try:
                    if kid.status() != psutil.STATUS_ZOMBIE:
                        found.add(kid.pid)
                except psutil.NoSuchProcess:
                    continue
        return found

    def close(self) -> None:
        self.host.stop()
        self.up.stop()


@pytest.fixture(scope="session")
def docs_lattice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsLattice]:
    lattice = DocsLattice(tmp_path_factory.mktemp("docs-lattice"))
    try:
        yield lattice
    finally:
        lattice.close()


def _workdir(root: Path) -> Path:
    """A folder that sees the repository's top-level files (through links) and keeps what blocks write."""
    root.mkdir(parents=True)
    for entry in REPO.iterdir():
        if not entry.name.startswith("."):
            (root / entry.name).symlink_to(entry)
    return root


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", RUNNABLE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_blocks_run_as_shown(path: Path, docs_lattice: DocsLattice, tmp_path: Path) -> None:
    cwd = _workdir(tmp_path / "work")
    before = docs_lattice.children()
    for block in blocks(path):
        if block.marker != "runnable":
            continue
        text = block.text
        if "port" in block.options:
            text = text.replace(block.options["port"], str(free_port()))
        if block.is_manifest:
            (cwd / block.options["save"]).write_text(text)
            continue
        assert block.runs, f"{block.where}: only sh blocks and manifests can be runnable"
        timeout = float(block.options.get("timeout", BLOCK_TIMEOUT_S))
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=cwd, env=docs_lattice.env(),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (
            f"{block.where} failed (exit {done.returncode}):\n{text}\n--- stdout\n{done.stdout[-4000:]}\n"
            f"--- stderr\n{done.stderr[-4000:]}\n--- lattice\n{docs_lattice.up.logs()[-6000:]}")
    # what the blocks started they also stop (a doc that leaves things running is a bad example);
    # processes take a moment to exit after a stop or undeploy has answered
    deadline = time.monotonic() + 60
    while (left := docs_lattice.children() - before) and time.monotonic() < deadline:
        time.sleep(0.5)  # polling a process table, not synchronising with the lattice
    assert not left, f"{path.name}: its blocks left processes running: {sorted(left)}"
