"""Reading provider and link config: typed values, one message per mistake.

Config is a flat ``str -> str`` map. A built-in provider merges its own config
(``trellis start provider ... --config NAME``) under each link's config (the
link's ``target_config`` when a component calls the provider, its
``source_config`` when the provider calls a component): the link wins.
Keys are snake_case; a key the provider does not know is logged once, since it
is most likely a typo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

log = logging.getLogger("trellis.providers.builtin")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and what is expected."""


def merged(base: Mapping[str, str], link: Mapping[str, str]) -> dict[str, str]:
    """The provider's own config under the link's: the link wins."""
    return {**base, **link}


def text(cfg: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    value = cfg.get(key)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def integer(cfg: Mapping[str, str], key: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    raw = text(cfg, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} must be at most {maximum}, got {value}")
    return value


def number(cfg: Mapping[str, str], key: str, default: float, *, minimum: float = 0.0) -> float:
    raw = text(cfg, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{key} must be at least {minimum}, got {raw}")
    return value


def boolean(cfg: Mapping[str, str], key: str, default: bool) -> bool:
    raw = text(cfg, key)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


def choice(cfg: Mapping[str, str], key: str, default: str, choices: Iterable[str]) -> str:
    allowed = tuple(choices)
    raw = text(cfg, key)
    if raw is None:
        return default
    if raw.lower() not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw.lower()


def csv(cfg: Mapping[str, str], key: str) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``."""
    raw = cfg.get(key) or ""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_warned: set[tuple[str, str]] = set()


def unknown_keys(cfg: Mapping[str, str], known: Iterable[str], where: str) -> list[str]:
    """Keys of ``cfg`` not in ``known``; each is logged once per ``where`` (a typo, most likely)."""
    known_set = set(known)
    unknown = sorted(k for k in cfg if k not in known_set)
    for key in unknown:
        if (where, key) not in _warned:
            _warned.add((where, key))
            log.warning("%s: ignoring unknown config key %r (known: %s)", where, key, ", ".join(sorted(known_set)))
    return unknown
