"""Figures a chaos scenario measured: printed (run with ``-s``) and optionally kept.

Each scenario calls :func:`record` once with what it measured. The line is printed as
``FIGURES <scenario> <json>``; when ``TRELLIS_FIGURES_FILE`` names a file, the same JSON
is appended to it (one object a line), which is how docs/reliability.md was filled.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(scenario: str, **figures: Any) -> dict[str, Any]:
    entry = {"scenario": scenario, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    line = json.dumps(entry, sort_keys=False, default=str)
    print(f"\nFIGURES {scenario} {line}", flush=True)
    path = os.environ.get("TRELLIS_FIGURES_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return entry
