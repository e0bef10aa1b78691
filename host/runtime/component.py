"""A compiled component with tables of what it imports and exports.

Everything here is read once from ``Component.type`` when the component is
loaded and then kept as plain snapshots (:mod:`trellis.host.runtime.wit`), so
looking up a function per call costs a dict access.

Addressing an exported function (:meth:`LoadedComponent.function`):

* ``ns:pkg/iface@1.2.0.func`` - interface export with its version;
* ``ns:pkg/iface.func`` - the same without the version, when only one
  version of that interface is exported;
* ``func`` - a function exported directly by the world.

``#`` is accepted in place of the last ``.`` (``ns:pkg/iface#func``), as in
core-wasm export names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmtime import component as wc

from .cache import CompileCache, wasm_digest
from .engine import RuntimeEngine
from .producers import processed_by
from .wit import ResourceRef, WitType, from_valtype, render

__all__ = [
    "FunctionInfo",
    "InterfaceInfo",
    "WorldSide",
    "LoadedComponent",
    "FunctionNotFound",
    "load_component",
    "split_version",
    "is_internal_export",
]


class FunctionNotFound(LookupError):
    """No exported function answers to the given address."""


def split_version(name: str) -> tuple[str, str | None]:
    """``"ns:pkg/iface@1.0.0"`` -> ``("ns:pkg/iface", "1.0.0")``."""
    base, sep, ver = name.partition("@")
    return base, (ver if sep else None)


@dataclass(frozen=True, eq=False)
class FunctionInfo:
    """One function of an interface or of the world itself.

    Compared and hashed by identity: each is unique within its component,
    and per-call dict lookups must not hash the whole type tree.
    """

    interface: str | None
    name: str
    params: tuple[tuple[str, WitType], ...]
    result: WitType | None

    @property
    def address(self) -> str:
        return self.name if self.interface is None else f"{self.interface}.{self.name}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": [{"name": n, "type": render(t)} for n, t in self.params],
            "result": None if self.result is None else render(self.result),
        }


@dataclass(frozen=True)
class InterfaceInfo:
    """An imported or exported instance (a WIT interface)."""

    name: str
    functions: Mapping[str, FunctionInfo]
    resources: tuple[str, ...] = ()
    #: the declaring interface of each resource: a resource ``use``d from another
    #: interface (``atomics`` using ``store``'s ``bucket``) is that interface's type
    canonical: Mapping[str, ResourceRef] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "resources": list(self.resources),
            "functions": [f.describe() for f in self.functions.values()],
        }


@dataclass(frozen=True)
class WorldSide:
    """All imports, or all exports, of a component."""

    interfaces: Mapping[str, InterfaceInfo] = field(default_factory=dict)
    functions: Mapping[str, FunctionInfo] = field(default_factory=dict)
    resources: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "interfaces": {n: i.describe() for n, i in self.interfaces.items()
                           if not i.functions or not all(is_internal_export(f) for f in i.functions.values())},
            "functions": [f.describe() for f in self.functions.values()],
            "resources": list(self.resources),
        }


#: exports a toolchain adds for its own runtime, not the component's API (componentize-py's
#: ``exports.init``): callable, but never listed to users
INTERNAL_EXPORTS = frozenset({("exports", "init")})


def is_internal_export(fn: FunctionInfo) -> bool:
    return (fn.interface, fn.name) in INTERNAL_EXPORTS


class LoadedComponent:
    """A compiled component, its digest and its import/export tables.

    With ``reload`` (``parking.py``), the compiled code can be dropped while no instance
    exists (:meth:`park`) and is loaded again by ``reload`` when next needed; the tables
    stay.
    """

    def __init__(self, engine: RuntimeEngine, component: wc.Component, digest: str,
                 reload: Callable[[], wc.Component] | None = None) -> None:
        self.engine = engine
        self._component: wc.Component | None = component
        self._reload = reload
        self._reload_lock = threading.Lock()
        #: times the code was loaded again after being parked
        self.reloads = 0
        #: seconds those loads took in all, and the last one (what parking adds to a first call)
        self.reload_s = 0.0
        self.last_reload_s = 0.0
        #: the compiled artifact the code is mapped from (a parkable component's; ``parking.py``)
        self.artifact: Path | None = None
        self.digest = digest
        #: the toolchains its ``producers`` section names (``processed-by``; producers.py), when known
        self.tools: frozenset[str] = frozenset()
        ctype = component.type
        raw_imports = ctype.imports(engine.engine)
        raw_exports = ctype.exports(engine.engine)
        namer = _ResourceNamer()
        namer.collect(raw_imports, engine)
        namer.collect(raw_exports, engine)
        self.imports: WorldSide = _side(raw_imports, engine, namer)
        self.exports: WorldSide = _side(raw_exports, engine, namer)
        self._addresses = _addresses(self.exports)
        self._export_indices: dict[FunctionInfo, wc.ExportIndex] = {}

    @property
    def component(self) -> wc.Component:
        """The compiled component, loaded again first when it was parked."""
        component = self._component
        if component is None:
            with self._reload_lock:
                component = self._component
                if component is None:
                    if self._reload is None:  # pragma: no cover - park() refuses without reload
                        raise RuntimeError(f"component {self.digest[:12]} was parked and cannot be reloaded")
                    started = time.perf_counter()
                    component = self._component = self._reload()
                    self.last_reload_s = time.perf_counter() - started
                    self.reload_s += self.last_reload_s
                    self.reloads += 1
        return component

    @property
    def parkable(self) -> bool:
        return self._reload is not None

    @property
    def parked(self) -> bool:
        return self._component is None

    def park(self) -> bool:
        """Drop the compiled code (the caller makes sure no instance exists); whether it was dropped."""
        if self._reload is None or self._component is None:
            return False
        with self._reload_lock:
            self._component = None
            self._export_indices = {}
        return True

    def function(self, address: str) -> FunctionInfo:
        """Resolve an export address (see the module docstring)."""
        fn = self._addresses.get(address)
        if fn is None and "#" in address:
            fn = self._addresses.get(address.replace("#", ".", 1))
        if fn is None:
            known = sorted(f.address for f in self.all_exported() if not is_internal_export(f))
            raise FunctionNotFound(f"no exported function {address!r}; exports: {known}")
        return fn

    def all_exported(self) -> list[FunctionInfo]:
        """Every exported function: world-level ones, then those of each exported interface."""
        fns = list(self.exports.functions.values())
        for iface in self.exports.interfaces.values():
            fns.extend(iface.functions.values())
        return fns

    def export_index(self, fn: FunctionInfo) -> wc.ExportIndex:
        """The component-level export index of ``fn`` (cached)."""
        idx = self._export_indices.get(fn)
        if idx is None:
            parent = None
            if fn.interface is not None:
                parent = self.component.get_export_index(fn.interface)
                if parent is None:  # pragma: no cover - tables come from the type
                    raise FunctionNotFound(fn.interface)
            idx = self.component.get_export_index(fn.name, parent)
            if idx is None:  # pragma: no cover
                raise FunctionNotFound(fn.address)
            self._export_indices[fn] = idx
        return idx

    def describe(self) -> dict[str, Any]:
        """Plain description for ``trellis inspect``."""
        return {
            "digest": self.digest,
            "imports": self.imports.describe(),
            "exports": self.exports.describe(),
        }


def load_component(
    engine: RuntimeEngine, wasm: bytes, cache: CompileCache | None = None
) -> LoadedComponent:
    """Compile (or fetch from ``cache``) and introspect a component."""
    digest = wasm_digest(wasm)
    component = wc.Component(engine.engine, wasm) if cache is None else cache.load(engine, wasm, digest)
    loaded = LoadedComponent(engine, component, digest)
    loaded.tools = processed_by(wasm)
    return loaded


class _ResourceNamer:
    """Maps wasmtime ``ResourceType`` objects to the names they were declared
    under. Resource types compare with ``==`` (an FFI call), not hash."""

    def __init__(self) -> None:
        self._known: list[tuple[wc.ResourceType, ResourceRef]] = []

    def collect(self, items: Mapping[str, Any], engine: RuntimeEngine) -> None:
        for name, ext in items.items():
            ty = ext.ty
            if isinstance(ty, wc.ResourceType):
                self._known.append((ty, ResourceRef("", name)))
            elif isinstance(ty, wc.ComponentInstanceType):
                for item_name, item in ty.exports(engine.engine).items():
                    item_ty = item.ty
                    if isinstance(item_ty, wc.ResourceType):
                        self._known.append((item_ty, ResourceRef(name, item_name)))

    def __call__(self, rt: wc.ResourceType) -> ResourceRef:
        for known, ref in self._known:
            if known == rt:
                return ref
        return ResourceRef("?", "resource")


def _function(interface: str | None, name: str, fty: wc.FuncType, namer: _ResourceNamer) -> FunctionInfo:
    params = tuple((n, from_valtype(t, namer)) for n, t in fty.params)
    result = fty.result
    return FunctionInfo(interface, name, params, None if result is None else from_valtype(result, namer))


def _side(items: Mapping[str, Any], engine: RuntimeEngine, namer: _ResourceNamer) -> WorldSide:
    interfaces: dict[str, InterfaceInfo] = {}
    functions: dict[str, FunctionInfo] = {}
    resources: list[str] = []
    for name, ext in items.items():
        ty = ext.ty
        if isinstance(ty, wc.FuncType):
            functions[name] = _function(None, name, ty, namer)
        elif isinstance(ty, wc.ResourceType):
            resources.append(name)
        elif isinstance(ty, wc.ComponentInstanceType):
            fns: dict[str, FunctionInfo] = {}
            res: list[str] = []
            canonical: dict[str, ResourceRef] = {}
            for item_name, item in ty.exports(engine.engine).items():
                item_ty = item.ty
                if isinstance(item_ty, wc.FuncType):
                    fns[item_name] = _function(name, item_name, item_ty, namer)
                elif isinstance(item_ty, wc.ResourceType):
                    res.append(item_name)
                    canonical[item_name] = namer(item_ty)
            interfaces[name] = InterfaceInfo(name, fns, tuple(res), canonical)
    return WorldSide(interfaces, functions, tuple(resources))


def _addresses(exports: WorldSide) -> dict[str, FunctionInfo]:
    out: dict[str, FunctionInfo] = dict(exports.functions)
    unversioned: dict[str, list[str]] = {}
    for iface in exports.interfaces.values():
        base, _ = split_version(iface.name)
        unversioned.setdefault(base, []).append(iface.name)
    for iface in exports.interfaces.values():
        base, _ = split_version(iface.name)
        for fn in iface.functions.values():
            out[f"{iface.name}.{fn.name}"] = fn
            if len(unversioned[base]) == 1:
                out.setdefault(f"{base}.{fn.name}", fn)
    return out
