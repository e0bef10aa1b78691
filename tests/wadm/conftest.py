"""Shared fixtures for the wadm tests (pure: no NATS, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "conformance" / "wadm"
"""wadm's own manifests with the outcome wadm expects (see its README.md)."""


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"wadm conformance corpus not found at {CORPUS}")
    return CORPUS
