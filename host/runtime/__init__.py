"""Trellis Wasm execution library: compile, introspect and invoke components.

No networking here: the host runs this inside worker processes. See
``docs/runtime.md`` for the execution model and value conventions.

A process that runs Wasm calls :func:`wasmtime_patches.apply` once when it starts, before
:func:`make_engine` (which refuses otherwise): importing this package changes nothing in
wasmtime-py. What the patches rely on in wasmtime is listed in :mod:`.wasmtime_reliance`.
"""

from . import wasmtime_patches
from .cache import CacheStats, CompileCache, wasm_digest
from .codec import CodecError, Plain, ResourceCodec, from_plain, to_plain
from .component import (
    FunctionInfo,
    FunctionNotFound,
    InterfaceInfo,
    LoadedComponent,
    WorldSide,
    load_component,
)
from .engine import EngineSettings, RuntimeEngine, make_engine
from .errors import ErrorKind, ImportFailed, InvocationError, MissingLink, Reroute
from .imports import HostResource, ImportHandler, deny_all
from .invoke import Invoker, InvokerStats
from .probe import CallProbe
from .settings import Limits, Preopen, ReusePolicy, WasiGrants

__all__ = [
    "CacheStats",
    "CallProbe",
    "CodecError",
    "CompileCache",
    "EngineSettings",
    "ErrorKind",
    "FunctionInfo",
    "FunctionNotFound",
    "HostResource",
    "ImportFailed",
    "ImportHandler",
    "InterfaceInfo",
    "InvocationError",
    "Invoker",
    "InvokerStats",
    "Limits",
    "LoadedComponent",
    "MissingLink",
    "Plain",
    "Preopen",
    "ResourceCodec",
    "Reroute",
    "ReusePolicy",
    "RuntimeEngine",
    "WasiGrants",
    "WorldSide",
    "deny_all",
    "from_plain",
    "load_component",
    "make_engine",
    "to_plain",
    "wasm_digest",
    "wasmtime_patches",
]
