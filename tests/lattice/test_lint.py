"""ruff and mypy hold on the whole tree, with the rules and exceptions in pyproject.toml."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    assert importlib.util.find_spec("ruff"), "ruff is missing: pip install -e '.[test]'"
    out = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    assert importlib.util.find_spec("mypy"), "mypy is missing: pip install -e '.[test]'"
    out = _run("mypy", "--cache-dir", str(REPO / ".mypy_cache"))  # files and options: pyproject [tool.mypy]
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]


_IGNORE = re.compile(r"#\s*(type:\s*ignore(\[[^\]]*\])?|noqa(:\s*[A-Z0-9, ]+)?)(?P<rest>.*)$")


def test_every_ignore_says_why() -> None:
    """A ``# type: ignore[code]`` or ``# noqa: CODE`` carries its reason on the same line."""
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    bare = []
    for name in listed.stdout.split():
        for n, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
            m = _IGNORE.search(line)
            if m and not m.group("rest").strip(" #-—:()"):
                bare.append(f"{name}:{n}: {line.strip()}")
    assert not bare, "say why after each of these ignores:\n" + "\n".join(bare)
