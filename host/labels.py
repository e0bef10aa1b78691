"""Host labels: read-only built-ins plus user labels changeable at run time."""

from __future__ import annotations

import platform
import re
import socket

BUILTIN_KEYS = frozenset({"os", "arch", "hostname", "python"})
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,255}$")


class LabelError(ValueError):
    pass


def builtin_labels() -> dict[str, str]:
    return {
        "os": platform.system().lower(),
        "arch": platform.machine().lower(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
    }


def check_user_label(key: str) -> str:
    if key in BUILTIN_KEYS:
        raise LabelError(f"label {key!r} is built in and read-only")
    if not _KEY.match(key):
        raise LabelError(
            f"invalid label key {key!r}: start with a letter or digit; use letters, digits, '_', '-', '.', '/'"
        )
    return key


def parse_label_args(pairs: list[str] | None) -> dict[str, str]:
    """Parse ``key=value`` strings (CLI flags, env) into user labels."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise LabelError(f"label {pair!r} must be key=value")
        k, v = pair.split("=", 1)
        out[check_user_label(k.strip())] = v.strip()
    return out
