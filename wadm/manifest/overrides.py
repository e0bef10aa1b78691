"""``--config NAME.KEY=VALUE``: change a value of a manifest's inline config at deploy time.

``trellis app deploy wadm.yaml --config http-listen.address=127.0.0.1:9090`` deploys the
manifest with the inline config ``http-listen`` (wherever it is defined: a component's or
provider's ``config``, a link's ``target.config`` or ``source.config``) holding
``address: 127.0.0.1:9090``, without editing the file. The config must be defined inline
(with ``properties``) in the manifest; a key it does not have is added.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from .load import parse_data
from .problems import ManifestError, error

_NAME_FORM = "NAME.KEY=VALUE (NAME: an inline config of the manifest)"


class OverrideError(ValueError):
    """An override that cannot be applied; the message says why."""


def parse_override(text: str) -> tuple[str, str, str]:
    """``"listen.address=0.0.0.0:80"`` -> ``("listen", "address", "0.0.0.0:80")``."""
    target, eq, value = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not eq or not dot or not name or not key:
        raise OverrideError(f"--config {text!r}: use {_NAME_FORM}")
    return name, key, value


def _inline_configs(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = data.get("spec")
    comps = spec.get("components") if isinstance(spec, dict) else None
    for comp in comps if isinstance(comps, list) else []:
        if not isinstance(comp, dict):
            continue
        props = comp.get("properties")
        lists = [props.get("config")] if isinstance(props, dict) else []
        for trait in comp.get("traits") or []:
            tp = trait.get("properties") if isinstance(trait, dict) else None
            if not isinstance(tp, dict):
                continue
            for side in ("target", "source"):
                block = tp.get(side)
                if isinstance(block, dict):
                    lists.append(block.get("config"))
            lists += [tp.get("target_config"), tp.get("source_config")]
        for entries in lists:
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("properties"), dict):
                    yield entry


def apply_overrides(text: str | bytes, overrides: list[str]) -> str:
    """The manifest `text` with each ``NAME.KEY=VALUE`` set; raises `OverrideError` or `ManifestError`."""
    if not overrides:
        return text.decode("utf-8-sig") if isinstance(text, bytes) else text
    data = parse_data(text)
    for item in overrides:
        name, key, value = parse_override(item)
        found = [entry for entry in _inline_configs(data) if entry.get("name") == name]
        if not found:
            known = sorted({str(e.get("name")) for e in _inline_configs(data)})
            raise OverrideError(f"--config {item!r}: the manifest defines no inline config {name!r}"
                                + (f"; its inline configs: {', '.join(known)}" if known else
                                   " (it has no inline configs)"))
        for entry in found:
            entry["properties"][key] = value
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:  # pragma: no cover - parse_data gave plain data
        raise ManifestError([error("", f"cannot write the manifest back: {exc}")]) from None
