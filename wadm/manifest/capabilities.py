"""Checks of capability providers in a manifest (pure): images that can run, links that fit.

* ``builtin:NAME`` names a provider Trellis has (``trellis.interfaces.builtin_providers``);
* a provider's image is one Trellis can start: ``builtin:NAME``, ``python:MODULE``, a
  ``.py`` file or a package folder, or either of those uploaded (``lattice://sha256:…``,
  as ``trellis app deploy`` stores them); an OCI provider image, valid for wasmCloud, gets
  a warning;
* a link to a built-in provider names interfaces it serves, and a link from one names
  interfaces it calls (``builtin:http-server`` calls ``trellis:http/incoming-handler`` or
  ``wasi:http/incoming-handler``; whether the target component exports it is checked
  from the component's file when it can be read, see :mod:`.local_checks`).
"""

from __future__ import annotations

from trellis.interfaces.builtin_providers import BUILTIN_PROVIDERS, BuiltinProvider

from .images import ImageError, ImageKind, parse_image
from .models import Component, Manifest
from .problems import Problem, did_you_mean, error, warning, where_component, where_link

PROVIDER_FORMS = "builtin:NAME, python:MODULE, a provider .py file or package folder, or lattice://sha256:…"


def builtin_of(comp: Component) -> BuiltinProvider | None:
    image = comp.image or ""
    if not comp.is_capability or not image.startswith("builtin:"):
        return None
    return BUILTIN_PROVIDERS.get(image[len("builtin:"):])


def is_python_provider(image: str) -> bool:
    path = image.split("?", 1)[0]
    return image.startswith("python:") or path.endswith(".py")


def is_runnable_provider(image: str, kind: ImageKind) -> bool:
    """An image a host can start as a provider (a local folder cannot be told from a file here:
    any path but a ``.wasm`` may be one; ``trellis app deploy`` checks it when it packs it)."""
    if kind is ImageKind.LATTICE or is_python_provider(image):
        return True
    return kind is ImageKind.FILE and not image.split("?", 1)[0].endswith(".wasm")


def check_provider_images(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    for comp in m.components:
        image = comp.image
        if image is None:
            continue
        where = where_component(comp)
        try:
            ref = parse_image(image)
        except ImageError:
            continue  # reported by the component check
        if ref.kind is ImageKind.BUILTIN:
            continue  # whether the name exists is for the Trellis that runs it (see check_builtin_names)
        if comp.is_capability and not is_runnable_provider(image, ref.kind):
            out.append(warning(where, f"image '{image}': Trellis starts providers from {PROVIDER_FORMS}; "
                                      "this provider will not start"))
        elif not comp.is_capability and is_python_provider(image):
            out.append(error(where, f"image '{image}' is a Python provider; use type: capability"))
    return out


def check_builtin_names(m: Manifest) -> list[Problem]:
    """``builtin:NAME`` is a provider of this machine's Trellis (run by `check_manifest`, not by
    `validate`: the controller and the hosts may run another version)."""
    out: list[Problem] = []
    for comp in m.components:
        image = comp.image or ""
        name = image[len("builtin:"):]
        if image.startswith("builtin:") and name not in BUILTIN_PROVIDERS:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            out.append(error(where_component(comp), f"image '{image}': no built-in provider '{name}'"
                                                    f"{did_you_mean(name, BUILTIN_PROVIDERS, 0.5)}; "
                                                    f"the built-in providers are {known}"))
    return out


def check_builtin_links(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    for comp in m.components:
        for link in comp.links:
            target = m.component(link.target.name)
            pkg = f"{link.namespace}:{link.package}"
            wanted = [f"{pkg}/{i}" for i in link.interfaces]
            source_builtin = builtin_of(comp)
            if source_builtin is not None and target is not None and not target.is_capability:
                missing = [w for w in wanted if w not in source_builtin.calls]
                if missing:
                    out.append(error(where_link(comp, link), _does_not(source_builtin, "call", missing,
                                                                        source_builtin.calls)))
            target_builtin = builtin_of(target) if target is not None else None
            if target_builtin is not None and not comp.is_capability:
                missing = [w for w in wanted if w not in target_builtin.serves]
                if missing:
                    out.append(error(where_link(comp, link), _does_not(target_builtin, "serve", missing,
                                                                        target_builtin.serves)))
    return out


def _does_not(p: BuiltinProvider, verb: str, missing: list[str], has: frozenset[str]) -> str:
    what = ", ".join(sorted(has)) if has else "nothing"
    return f"builtin:{p.name} does not {verb} {', '.join(missing)}; it {verb}s {what}"
