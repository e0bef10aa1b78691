"""A best-effort `Manifest` from data whose shape is wrong, so validation can go on.

``trellis app validate`` reports every problem in one pass: a misspelt component
``type:`` must not hide the errors in the rest of the file. The shape errors are
reported as they are; this module patches a copy of the data just enough to build
a `Manifest` (an unknown key dropped, a bad ``type`` guessed from the image, a
missing required value filled in, as a last resort the offending component
dropped) so that `validate` can check everything else. The patched manifest is
never deployed.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from .models import API_VERSION, APPLICATION_KIND, Manifest

#: how many rounds of patching before giving up (each round fixes every error pydantic reported)
MAX_ROUNDS = 8

_FILL: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": APPLICATION_KIND,
    "metadata": {"name": "unnamed"},
    "spec": {"components": []},
    "components": [],
    "name": "unnamed",
    "properties": {},
}


def best_effort(data: dict[str, Any]) -> Manifest | None:
    """A `Manifest` from `data` patched until it parses, or None if that fails."""
    doc = copy.deepcopy(data)
    for _ in range(MAX_ROUNDS):
        try:
            return Manifest.model_validate(doc)
        except ValidationError as exc:
            errors = exc.errors()
        except (ValueError, RecursionError):
            return None
        # patches in place first; removing a list element shifts the places of the other
        # errors, so that is done one at a time, only when nothing else could be patched
        changed = False
        for err in errors:
            changed |= _patch(doc, tuple(err["loc"]), err["type"], remove=False)
        if not changed and not any(_patch(doc, tuple(err["loc"]), err["type"], remove=True) for err in errors):
            return None
    return None


def _patch(doc: Any, loc: tuple[Any, ...], kind: str, *, remove: bool) -> bool:
    if not loc:
        return False
    parent = _walk(doc, loc[:-1])
    key = loc[-1]
    if parent is None:
        return remove and _drop_component(doc, loc)
    if kind == "missing" and isinstance(parent, dict):
        if key == "type":
            parent["type"] = _guess_type(parent)
            return True
        if key in _FILL:
            parent[key] = copy.deepcopy(_FILL[key])
            return True
        return remove and _drop_component(doc, loc)
    if key == "type" and isinstance(parent, dict) and "properties" in parent and len(loc) == 4:
        if parent.get("type") != _guess_type(parent):
            parent["type"] = _guess_type(parent)
            return True
        return remove and _drop_component(doc, loc)
    if isinstance(parent, dict) and key in parent and key not in ("name", "properties", "type"):
        del parent[key]  # an unknown key, or an optional value of the wrong type
        return True
    if not remove:
        return False
    if isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent):
        del parent[key]
        return True
    return _drop_component(doc, loc)


def _walk(doc: Any, path: tuple[Any, ...]) -> Any:
    node = doc
    for part in path:
        if (isinstance(node, dict) and part in node
                or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        else:
            return None
    return node


def _guess_type(comp: dict[str, Any]) -> str:
    props = comp.get("properties")
    image = props.get("image") if isinstance(props, dict) else None
    if isinstance(image, str) and (image.startswith(("builtin:", "python:")) or image.endswith(".py")):
        return "capability"
    return "component"


def _drop_component(doc: Any, loc: tuple[Any, ...]) -> bool:
    """Last resort: remove the component the error is in (its own errors are already reported)."""
    if len(loc) >= 3 and loc[0] == "spec" and loc[1] == "components" and isinstance(loc[2], int):
        comps = _walk(doc, ("spec", "components"))
        if isinstance(comps, list) and 0 <= loc[2] < len(comps):
            del comps[loc[2]]
            return True
    return False
