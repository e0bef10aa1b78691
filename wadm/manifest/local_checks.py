"""Checks that read this machine (`check_manifest`, ``trellis app validate``): files and modules.

What they can know from here, each only when it can be read:

* ``builtin:NAME`` is a provider of this Trellis;
* a local image file exists;
* a ``python:MODULE`` provider is importable here;
* a link's interfaces are ones its target component exports (read from the
  component's file without compiling it, :mod:`.wasm_exports`).

A check is ``(Manifest) -> list[Problem]``; append it to `LOCAL_CHECKS`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from .capabilities import check_builtin_names
from .images import ImageError, ImageKind, parse_image
from .models import Component, Manifest
from .problems import Problem, error, warning, where_component, where_link
from .wasm_exports import ComponentExports, NotAComponent, component_exports

#: component files larger than this are not read for their exports
MAX_READ_BYTES = 512 * 1024 * 1024


def missing_files(manifest: Manifest) -> list[Problem]:
    found: list[Problem] = []
    for comp in manifest.components:
        path = _local_path(comp)
        if path is not None and not os.path.exists(path):
            found.append(warning(where_component(comp), f"image file {path} does not exist (on this machine)"))
    return found


def python_modules(manifest: Manifest) -> list[Problem]:
    found: list[Problem] = []
    for comp in manifest.components:
        image = comp.image or ""
        if not comp.is_capability or not image.startswith("python:"):
            continue
        module = image[len("python:"):]
        try:
            spec = importlib.util.find_spec(module) if module else None
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            found.append(warning(where_component(comp), f"python module '{module}' is not importable on this machine "
                                                        "(it must be on every host that runs the provider)"))
    return found


def link_exports(manifest: Manifest) -> list[Problem]:
    """A link names interfaces its target component exports (when the target's file can be read)."""
    found: list[Problem] = []
    read: dict[str, ComponentExports | None] = {}
    for comp in manifest.components:
        for link in comp.links:
            target = manifest.component(link.target.name)
            if target is None or target.is_capability:
                continue
            exports = _exports_of(target, read)
            if exports is None:
                continue
            have = exports.unversioned()
            pkg = f"{link.namespace}:{link.package}"
            missing = [f"{pkg}/{i}" for i in link.interfaces if f"{pkg}/{i}" not in have]
            if missing:
                shown = ", ".join(sorted(i for i in exports.interfaces if ":" in i)) or "no interfaces"
                found.append(error(where_link(comp, link),
                                   f"component \"{target.name}\" does not export {', '.join(missing)}; "
                                   f"it exports {shown}"))
    return found


def _local_path(comp: Component) -> str | None:
    if not comp.image:
        return None
    try:
        ref = parse_image(comp.image)
    except ImageError:
        return None
    if ref.kind is not ImageKind.FILE or ref.is_relative_path:
        return None
    return ref.location


def _exports_of(comp: Component, read: dict[str, ComponentExports | None]) -> ComponentExports | None:
    path = _local_path(comp)
    if path is None or not path.endswith(".wasm"):
        return None
    if path not in read:
        try:
            if os.path.getsize(path) > MAX_READ_BYTES:
                raise OSError("too large")
            with open(path, "rb") as f:
                read[path] = component_exports(f.read())
        except (OSError, NotAComponent):
            read[path] = None
    return read[path]


LocalCheck = Callable[[Manifest], list[Problem]]

LOCAL_CHECKS: list[LocalCheck] = [check_builtin_names, missing_files, python_modules, link_exports]
"""What `check_manifest` runs after `validate`, in order."""
