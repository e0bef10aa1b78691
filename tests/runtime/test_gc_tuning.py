"""Workers and providers tune the garbage collector once started (trellis.kit.gc_tuning)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trellis.kit import gc_tuning

PROBE = ("import gc, json; from trellis.kit import gc_tuning; "
         "changed = gc_tuning.tune(gc_tuning.threshold_from_env()); "
         "print(json.dumps([changed, gc.get_threshold()[0], gc.get_freeze_count() > 0]))")


def _probe(value: str | None) -> tuple[list, str]:
    env = {k: v for k, v in os.environ.items() if k != gc_tuning.ENV}
    if value is not None:
        env[gc_tuning.ENV] = value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout), out.stderr


@pytest.mark.parametrize("value, expected", [
    (None, [True, gc_tuning.DEFAULT_THRESHOLD, True]),
    ("3000", [True, 3000, True]),
    ("default", [False, "python's", False]),  # Python's own settings, nothing frozen
])
def test_the_threshold_and_the_freeze(value: str | None, expected: list) -> None:
    if expected[1] == "python's":
        expected[1] = int(subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"],
                                         capture_output=True, text=True, timeout=60, check=True).stdout)
    assert _probe(value)[0] == expected


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_value_is_named_and_the_default_used(value: str) -> None:
    result, stderr = _probe(value)
    assert result == [True, gc_tuning.DEFAULT_THRESHOLD, True]
    assert gc_tuning.ENV in stderr and "using" in stderr
