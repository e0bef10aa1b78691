"""The code blocks of README.md, docs/ and examples/, and the markers that say which ones run.

Conventions (docs/CONTRIBUTING.md, "Docs that run"):

* every YAML block holding a manifest (``apiVersion: core.oam.dev/v1beta1``) must be valid
  (``trellis app validate`` finds no error);
* ``<!-- runnable -->`` on the line before a fenced ``sh`` block: the test runs it, line by
  line with ``bash -e``, against a real lattice, in document order with the file's other
  runnable blocks; options after the word: ``port=9090`` (the test replaces that port by a
  free one), ``timeout=S``;
* ``<!-- runnable save=NAME -->`` before a manifest block: the test writes it to ``NAME``
  in the folder the file's shell blocks run in (their ``trellis app deploy NAME`` deploys it);
* a manifest block that cannot run says why: ``<!-- not-runnable: REASON -->``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MANIFEST_MARK = "apiVersion: core.oam.dev/v1beta1"

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"<!--\s*(runnable|not-runnable)\b:?\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    marker: str = ""
    """``runnable``, ``not-runnable`` or empty."""
    options: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def is_manifest(self) -> bool:
        return self.lang in ("yaml", "yml") and MANIFEST_MARK in self.text

    @property
    def runs(self) -> bool:
        return self.marker == "runnable" and self.lang in ("sh", "bash", "shell")


def doc_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *sorted(p for p in (REPO / "examples").rglob("*.md") if "build" not in p.parts)]
    return [f for f in files if f.is_file()]


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found: list[Block] = []
    for m in _FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        block = Block(path, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2))
        marker = _MARKER.search(before)
        if marker:
            block.marker = marker.group(1)
            if block.marker == "runnable":
                block.options = dict(opt.split("=", 1) for opt in marker.group(2).split() if "=" in opt)
            else:
                block.reason = marker.group(2)
        found.append(block)
    return found


def all_blocks() -> list[Block]:
    return [b for f in doc_files() for b in blocks(f)]
