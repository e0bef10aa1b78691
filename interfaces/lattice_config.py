"""Named configuration: a lattice-wide map of string → string, referred to by name.

Links name the configs their source and target receive (``source_config``,
``target_config``); a provider may also be started with named configs. The
store keeps one entry per name (see :mod:`trellis.interfaces.store`); hosts and
providers resolve a list of names into one map with :func:`merge_configs`.

Pure types and validation, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import ErrorCode, TrellisError

#: config names: short, printable, usable on a command line and in a KV key
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_KEY_LEN = 256
MAX_VALUE_BYTES = 64 * 1024
#: whole map as stored (JSON); stays well under NATS's default 1 MiB payload
MAX_CONFIG_BYTES = 512 * 1024


class LatticeConfigError(TrellisError):
    """A config name or value that cannot be stored; the message says why."""

    code = ErrorCode.BAD_REQUEST


def check_config_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise LatticeConfigError(
            f"invalid config name {name!r}: use 1-128 letters, digits, '.', '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def check_config_names(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        check_config_name(n)
        if n not in out:
            out.append(n)
    return out


def check_config_values(name: str, values: Mapping[str, str]) -> dict[str, str]:
    """Validate one config map; return it as a plain dict (keys sorted)."""
    if not isinstance(values, Mapping):
        raise LatticeConfigError(f"config {name!r} must be a map of strings, got {type(values).__name__}")
    total = 2
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise LatticeConfigError(f"config {name!r}: keys must be non-empty strings, got {key!r}")
        if len(key) > MAX_KEY_LEN:
            raise LatticeConfigError(f"config {name!r}: key {key[:32]!r}… is longer than {MAX_KEY_LEN} characters")
        if "=" in key or any(c.isspace() or not c.isprintable() for c in key):
            raise LatticeConfigError(
                f"config {name!r}: key {key!r} must not contain '=', whitespace or control characters"
            )
        if not isinstance(value, str):
            raise LatticeConfigError(
                f"config {name!r}: value of {key!r} must be a string, got {type(value).__name__}"
            )
        size = len(value.encode())
        if size > MAX_VALUE_BYTES:
            raise LatticeConfigError(
                f"config {name!r}: value of {key!r} is {size} bytes, more than {MAX_VALUE_BYTES}"
            )
        total += len(key) + size + 6
    if total > MAX_CONFIG_BYTES:
        raise LatticeConfigError(f"config {name!r} is about {total} bytes, more than {MAX_CONFIG_BYTES}")
    return {k: values[k] for k in sorted(values)}


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` → ``{"a": "1", "b": "x=y"}`` (split at the first '=')."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LatticeConfigError(f"{pair!r} must be key=value")
        out[key] = value
    return out


def merge_configs(configs: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Merge named configs in order: a later config's key wins over an earlier one's."""
    merged: dict[str, str] = {}
    for c in configs:
        merged.update(c)
    return merged
