"""Feature switches: on unless the boot document or a ``TRELLIS_*`` variable says 0/false/no/off."""

from __future__ import annotations

import os
from typing import Any

OFF = frozenset({"0", "false", "no", "off"})


def switched_on(env: str, value: Any = None) -> bool:
    """``value`` (a boot document's setting) when given, else the environment variable ``env``."""
    if value is None:
        value = os.environ.get(env, "1")
    return str(value).strip().lower() not in OFF
