"""Declaring a provider: exported functions, imports and lifecycle callbacks.

Everything is validated when declared (like Temporal's ``@activity.defn``), so a
mistake shows up at import time with a message naming the function, not as an
odd failure on the first call.

Handlers are called ``handler(*wit_args, ctx=Context)`` and must accept
``**kwargs``: context that later versions pass never breaks an old provider.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from trellis.interfaces import subjects
from trellis.interfaces.links import Link, WitInterface, parse_wit_interface

from .context import current_instance

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__trellis_export__"
#: entries kept in a provider's lookup caches (callers choose the names: keep the memory bounded)
_CACHE_MAX = 1024
_WIT_FUNC = re.compile(r"^(\[[a-z\-]+\])?[A-Za-z][A-Za-z0-9]*(-[A-Za-z][A-Za-z0-9]*)*(\.[A-Za-z][A-Za-z0-9\-]*)?$")


class DefinitionError(TypeError):
    """A provider, handler or callback declared wrongly; the message says how to fix it."""


def _unversioned(wi: WitInterface) -> str:
    return f"{wi.namespace}:{wi.package}/{wi.interface}"


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _check_kwargs(fn: Callable[..., Any], what: str) -> inspect.Signature:
    if not callable(fn):
        raise DefinitionError(f"{what}: {fn!r} is not callable")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise DefinitionError(f"{what}: {_name_of(fn)} is a generator; return a value instead")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{what}: cannot read the signature of {_name_of(fn)}: {exc}") from None
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        raise DefinitionError(
            f"{what}: {_name_of(fn)}{sig} must accept **kwargs, so context added by later "
            "versions of Trellis never breaks it (e.g. 'def f(bucket, key, *, ctx, **kwargs)')"
        )
    return sig


def _is_async(fn: Callable[..., Any]) -> bool:
    target = getattr(fn, "__func__", fn)
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004 (an async __call__, not callability)


@dataclass(frozen=True)
class ExportDefinition:
    """One exported WIT function and the handler that implements it."""

    interface: str  # ns:pkg/iface (no version)
    function: str
    handler: Callable[..., Any]
    is_async: bool
    #: the WIT parameters, in order (the handler's positional parameters)
    params: tuple[str, ...]
    version: str = ""

    @property
    def operation(self) -> str:
        return f"{self.interface}.{self.function}"

    def bind(self, handler: Callable[..., Any]) -> ExportDefinition:
        return ExportDefinition(self.interface, self.function, handler, self.is_async, self.params, self.version)


def _define(interface: str, function: str | None, fn: Callable[..., Any]) -> ExportDefinition:
    try:
        wi = parse_wit_interface(interface)
    except ValueError as exc:
        raise DefinitionError(f"export of {_name_of(fn)}: {exc}") from None
    name = function if function is not None else getattr(fn, "__name__", "").replace("_", "-")
    if not name or not _WIT_FUNC.match(name):
        raise DefinitionError(f"export of {_name_of(fn)}: invalid WIT function name {name!r} "
                              "(kebab-case, e.g. 'get' or 'set-many')")
    sig = _check_kwargs(fn, f"export {interface}.{name}")
    params = list(sig.parameters.values())
    if params and params[0].name == "self":  # a method, decorated in its class body
        params = params[1:]
    positional: list[str] = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "ctx":
            positional.append(p.name)
        elif p.kind is p.KEYWORD_ONLY and p.name != "ctx" and p.default is p.empty:
            raise DefinitionError(
                f"export {interface}.{name}: keyword-only parameter {p.name!r} of {_name_of(fn)} has no "
                "default; WIT arguments are positional and the only keyword passed is ctx"
            )
    return ExportDefinition(_unversioned(wi), name, fn, _is_async(fn), tuple(positional), wi.version)


def export(interface: str, function: str | None = None) -> Callable[[F], F]:
    """Mark a function (or a method) as the implementation of ``interface``'s ``function``.

    The function is returned unchanged (call it directly in unit tests); register
    it with ``Provider(..., exports=[fn, obj])`` or ``provider.add(fn)``. Without
    ``function`` the WIT name is the Python name with '_' → '-'.
    """

    def mark(fn: F) -> F:
        if hasattr(fn, _ATTR):
            raise DefinitionError(f"{_name_of(fn)} is already exported as {getattr(fn, _ATTR).operation}")
        defn = _define(interface, function, fn)
        try:
            setattr(fn, _ATTR, defn)
        except AttributeError:
            raise DefinitionError(f"cannot mark {_name_of(fn)}; export a plain function or method") from None
        return fn

    return mark


def definition_of(fn: Any) -> ExportDefinition | None:
    target = getattr(fn, "__func__", fn)
    defn = getattr(target, _ATTR, None)
    if not isinstance(defn, ExportDefinition):
        return None
    return defn.bind(fn) if fn is not target else defn


# --- lifecycle callbacks -------------------------------------------------------------

#: callback name → its positional arguments (every callback also gets info=)
CALLBACKS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "on_start": (),
    "on_link_put": ("link", "config"),
    "on_link_deleted": ("link",),
    "on_config_updated": ("name", "values"),
    "health": (),
    "on_shutdown": ("grace_s",),
})


def _check_callback(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    sig = _check_kwargs(fn, kind)
    try:
        sig.bind(*CALLBACKS[kind], info=None)
    except TypeError as exc:
        args = ", ".join((*CALLBACKS[kind], "*", "info", "**kwargs"))
        raise DefinitionError(f"{kind}: {_name_of(fn)}{sig} cannot be called as ({args}): {exc}") from None
    return fn


class Provider:
    """A capability provider: what it exports, what it imports, how it reacts to links and config.

    ::

        kv = Provider("kv-memory")

        @kv.export("wasi:keyvalue/store")
        async def get(bucket: str, key: str, *, ctx, **kwargs) -> bytes | None: ...

        @kv.on_link_put
        def linked(link, config, **kwargs): ...
    """

    def __init__(self, name: str, *, exports: Iterable[Any] = (), imports: Iterable[str] = (),
                 description: str = "", version: str = "0.1.0", max_concurrent: int = 64,
                 local_state: bool = False) -> None:
        try:
            self.name = subjects.check_id("provider", name)
        except ValueError as exc:
            raise DefinitionError(str(exc)) from None
        if max_concurrent < 1:
            raise DefinitionError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.description = description
        self.version = version
        self.max_concurrent = max_concurrent
        self.local_state = bool(local_state)
        """Its data lives on the host it runs on (files under the host's state dir, an embedded
        database): wadm then keeps it on that host instead of starting it empty elsewhere."""
        self._exports: dict[str, ExportDefinition] = {}
        self._imports: dict[str, str] = {}
        self._callbacks: dict[str, Callable[..., Any]] = {}
        # per-call lookups, by the names as callers spell them (with or without a version)
        self._found: dict[tuple[str, str], ExportDefinition] = {}
        self._checked_imports: dict[str, tuple[str, str]] = {}
        self.add(*exports)
        self.imports(*imports)

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, exports={sorted(self._exports)}, imports={sorted(self._imports)})"

    # --- exports ---------------------------------------------------------------------

    def export(self, interface: str, function: str | None = None) -> Callable[[F], F]:
        """Decorator: :func:`export` and register in one step.

        On a class, exports every public method of one instance (created with no
        arguments) under ``interface``, named after the method.
        """

        def register(fn: F) -> F:
            if inspect.isclass(fn):
                if function is not None:
                    raise DefinitionError(f"{fn.__name__}: a class exports all its methods; drop {function!r}")
                self.add_object(interface, fn())
                return fn
            self._register(definition_of(export(interface, function)(fn)))
            return fn

        return register

    def add(self, *items: Any) -> Provider:
        """Register functions marked with :func:`export`, or objects whose methods are marked."""
        for item in items:
            defn = definition_of(item)
            if defn is not None:
                self._register(defn)
            elif inspect.isclass(item):
                raise DefinitionError(f"{item.__name__} is a class: pass an instance of it")
            elif inspect.isroutine(item):
                raise DefinitionError(f"{_name_of(item)} is not marked with @export")
            else:
                marked = [d for d in (definition_of(getattr(item, a, None)) for a in dir(item)
                                      if not a.startswith("_")) if d is not None]
                if not marked:
                    raise DefinitionError(f"{type(item).__name__} object has no methods marked with @export")
                for d in marked:
                    self._register(d)
        return self

    def add_object(self, interface: str, obj: Any) -> Provider:
        """Export every public method of ``obj`` as a function of ``interface``."""
        found = 0
        for attr in dir(obj):
            member = getattr(obj, attr, None)
            if attr.startswith("_") or not inspect.ismethod(member):
                continue
            defn = definition_of(member)
            if defn is None:
                defn = _define(interface, None, member)
            self._register(defn)
            found += 1
        if not found:
            raise DefinitionError(f"{type(obj).__name__} has no public methods to export")
        return self

    def _register(self, defn: ExportDefinition | None) -> None:
        assert defn is not None
        if defn.operation in self._exports:
            raise DefinitionError(f"provider {self.name}: {defn.operation} is exported twice "
                                  f"({_name_of(self._exports[defn.operation].handler)} and {_name_of(defn.handler)})")
        self._exports[defn.operation] = defn
        self._found.clear()

    @property
    def exports(self) -> Mapping[str, ExportDefinition]:
        return MappingProxyType(self._exports)

    def find(self, interface: str, function: str) -> ExportDefinition | None:
        """The export a call names (``interface`` may carry a version), or None. Called on every
        invocation: hits are remembered, so the interface is parsed once per spelling."""
        key = (interface, function)
        defn = self._found.get(key)
        if defn is not None:
            return defn
        try:
            wi = parse_wit_interface(interface)
        except ValueError:
            return None
        defn = self._exports.get(f"{_unversioned(wi)}.{function}")
        if defn is not None:
            if len(self._found) >= _CACHE_MAX:
                self._found.clear()
            self._found[key] = defn
        return defn

    # --- imports ---------------------------------------------------------------------

    def imports(self, *interfaces: str) -> Provider:
        """Declare interfaces this provider calls on linked components."""
        for i in interfaces:
            try:
                self._imports[_unversioned(parse_wit_interface(i))] = i
            except ValueError as exc:
                raise DefinitionError(f"provider {self.name} import: {exc}") from None
        self._checked_imports.clear()
        return self

    @property
    def declared_imports(self) -> tuple[str, ...]:
        return tuple(sorted(self._imports))

    def check_import(self, operation: str) -> tuple[str, str]:
        """Split ``ns:pkg/iface.func``; raise if the interface was not declared in ``imports``."""
        checked = self._checked_imports.get(operation)
        if checked is not None:
            return checked
        interface, _, function = operation.rpartition(".")
        try:
            wi = parse_wit_interface(interface)
        except ValueError as exc:
            raise ValueError(f"cannot call {operation!r}: {exc}") from None
        if _unversioned(wi) not in self._imports:
            known = ", ".join(sorted(self._imports)) or "none"
            raise ValueError(f"provider {self.name} calls {operation} but does not import "
                             f"{_unversioned(wi)} (declared imports: {known}); add it with "
                             f"Provider(..., imports=[{str(_unversioned(wi))!r}])")
        if len(self._checked_imports) >= _CACHE_MAX:
            self._checked_imports.clear()
        self._checked_imports[operation] = (interface, function)
        return interface, function

    async def call(self, target: str | Link, operation: str, *args: Any, timeout_s: float | None = None,
                   link_name: str | None = None) -> Any:
        """Call ``ns:pkg/iface.func`` on a linked component (or the target of a Link).

        Works in handlers, callbacks and tasks started from them; inside a handler
        prefer ``ctx.call`` (it keeps the caller's deadline and trace).
        """
        instance = current_instance()
        if instance is None or instance.provider is not self:
            raise RuntimeError(f"provider {self.name} is not running here: call() works inside its handlers, "
                               "callbacks and tasks they start")
        return await instance.call(target, operation, list(args), timeout_s=timeout_s, link_name=link_name)

    # --- lifecycle callbacks -----------------------------------------------------------

    def _set_callback(self, kind: str, fn: F) -> F:
        if kind in self._callbacks:
            raise DefinitionError(f"provider {self.name}: {kind} is already {_name_of(self._callbacks[kind])}")
        self._callbacks[kind] = _check_callback(kind, fn)
        return fn

    def on_start(self, fn: F) -> F:
        """``on_start(*, info, **kwargs)``: before serving (open pools, start listeners)."""
        return self._set_callback("on_start", fn)

    def on_link_put(self, fn: F) -> F:
        """``on_link_put(link, config, *, info, **kwargs)``: a link with this provider as source or
        target was put, or the config it names changed; ``config`` is this provider's side, merged."""
        return self._set_callback("on_link_put", fn)

    def on_link_deleted(self, fn: F) -> F:
        """``on_link_deleted(link, *, info, **kwargs)``."""
        return self._set_callback("on_link_deleted", fn)

    def on_config_updated(self, fn: F) -> F:
        """``on_config_updated(name, values, *, info, **kwargs)``: a named config this provider uses
        changed (``values`` is empty when it was deleted)."""
        return self._set_callback("on_config_updated", fn)

    def health(self, fn: F) -> F:
        """``health(*, info, **kwargs) -> (ok, message)`` (or a bool); answered on health requests."""
        return self._set_callback("health", fn)

    def on_shutdown(self, fn: F) -> F:
        """``on_shutdown(grace_s, *, info, **kwargs)``: after calls drained, before disconnecting."""
        return self._set_callback("on_shutdown", fn)

    def callback(self, kind: str) -> Callable[..., Any] | None:
        return self._callbacks.get(kind)


async def call_maybe_sync(fn: Callable[..., Any], *args: Any, is_async: bool | None = None, **kwargs: Any) -> Any:
    """Await ``fn``; a sync function runs in a thread (seeing the caller's contextvars)."""
    if is_async if is_async is not None else _is_async(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):  # e.g. a lambda returning a coroutine
        return await result
    return result
