"""Shared fixtures for the wadm tests (pure: no NATS, no network)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

# Hypothesis imports libcst to write a patch whenever a test fails; libcst warns on
# import (mypy_extensions.TypedDict), which `filterwarnings = error` turns into an
# INTERNALERROR that hides the falsifying example. Import it once, quietly, here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401 (imported for its side effect, see above)
    except ImportError:
        pass

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "conformance" / "wadm"
"""wadm's own manifests with the outcome wadm expects (see its README.md)."""


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"wadm conformance corpus not found at {CORPUS}")
    return CORPUS
