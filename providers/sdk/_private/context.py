"""Per-call context (``ctx``) and per-instance information (``info``).

Handlers get the context as ``ctx=``; code deeper down can read it with
:func:`context` (a contextvar, like Temporal's ``activity.info()``). Sync
handlers run in a thread that sees the same context.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from trellis.interfaces.links import Link
from trellis.interfaces.secrets import SecretValue

from .bootstrap import NatsBootstrap


class Instance(Protocol):
    """What runs a provider: the lattice runtime, or the test environment."""

    @property
    def provider(self) -> Any: ...  # the Provider it runs

    @property
    def info(self) -> ProviderInfo: ...

    @property
    def connection(self) -> Any: ...  # the NATS client, None without a lattice

    async def call(self, target: str | Link, operation: str, args: list[Any], *,
                   timeout_s: float | None = None, link_name: str | None = None,
                   deadline_ms: int | None = None, trace: dict[str, str] | None = None) -> Any: ...


@dataclass(frozen=True)
class ProviderInfo:
    """Who and where this provider instance is; passed to lifecycle callbacks as ``info=``."""

    provider_id: str
    host_id: str
    lattice: str
    instance_id: str
    #: this provider's own config (from its named configs), not a link's
    config: Mapping[str, str] = field(default_factory=dict)
    #: links with this provider as source or target, as last applied
    links: tuple[Link, ...] = ()
    #: how this instance reached NATS (the bootstrap's ``nats``); None without a lattice (tests)
    nats: NatsBootstrap | None = None
    #: the host's state directory (its --state-dir), for providers that keep files; None if unknown
    state_dir: str | None = None
    #: where the host's worker processes take handed-off connections (``trellis/samehost/handoff.py``)
    local_workers: tuple[str, ...] = ()
    #: the provider's secrets by their manifest names; ``.reveal()`` gives a value (repr never does)
    secrets: Mapping[str, SecretValue] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Context:
    """One invocation of an exported function, as its handler sees it."""

    provider_id: str
    host_id: str
    lattice: str
    #: id of the component (or provider) that made the call
    source: str
    #: link name the call came over
    link_name: str
    #: the link the call came over, when one from ``source`` to this provider covers the interface
    link: Link | None
    #: this provider's side of that link: its ``target_config`` names resolved and merged
    config: Mapping[str, str]
    interface: str
    function: str
    invocation_id: str
    #: W3C trace context of the caller (``traceparent``, ``tracestate``)
    trace: Mapping[str, str]
    #: the caller's deadline, unix seconds
    deadline: float
    #: 1 on the first delivery; higher when the caller retried after losing an instance
    attempt: int = 1
    _instance: Instance | None = field(default=None, repr=False, compare=False)

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())

    @property
    def operation(self) -> str:
        return f"{self.interface}.{self.function}"

    async def call(self, target: str | Link, operation: str, *args: Any, timeout_s: float | None = None,
                   link_name: str | None = None) -> Any:
        """Call a linked component from inside this invocation (same trace, never past its deadline)."""
        if self._instance is None:
            raise RuntimeError("this context is not attached to a running provider")
        limit = self.remaining_s() if timeout_s is None else min(timeout_s, self.remaining_s())
        return await self._instance.call(target, operation, list(args), timeout_s=limit, link_name=link_name,
                                         deadline_ms=int((time.time() + limit) * 1000))


def make_context(*, info: ProviderInfo, source: str, link_name: str, link: Link | None,
                 config: Mapping[str, str], interface: str, function: str, invocation_id: str,
                 trace: Mapping[str, str], deadline: float, attempt: int = 1,
                 instance: Instance | None = None) -> Context:
    return new_context(info.provider_id, info.host_id, info.lattice, source, link_name, link,
                       MappingProxyType(dict(config)), interface, function, invocation_id,
                       MappingProxyType(dict(trace)), deadline, attempt, instance)


_new = object.__new__
_setattr = object.__setattr__


def new_context(provider_id: str, host_id: str, lattice: str, source: str, link_name: str, link: Link | None,
                config: Mapping[str, str], interface: str, function: str, invocation_id: str,
                trace: Mapping[str, str], deadline: float, attempt: int, instance: Instance | None) -> Context:
    """A :class:`Context` for one call, built on every invocation: without the frozen dataclass's
    field-by-field ``__init__`` (five times the cost). ``config`` and ``trace`` are used as given:
    read-only views nobody changes afterwards."""
    ctx = _new(Context)
    _setattr(ctx, "__dict__", {
        "provider_id": provider_id, "host_id": host_id, "lattice": lattice, "source": source,
        "link_name": link_name, "link": link, "config": config, "interface": interface, "function": function,
        "invocation_id": invocation_id, "trace": trace, "deadline": deadline, "attempt": attempt,
        "_instance": instance,
    })
    return ctx


_current_context: contextvars.ContextVar[Context] = contextvars.ContextVar("trellis_provider_context")
_current_instance: contextvars.ContextVar[Instance] = contextvars.ContextVar("trellis_provider_instance")


def context() -> Context:
    """The context of the invocation being handled (raises outside a handler)."""
    try:
        return _current_context.get()
    except LookupError:
        raise RuntimeError("trellis.providers.sdk.context() is only available while a handler runs") from None


def nats_connection() -> Any:
    """The running instance's NATS client (``nats.aio.client.Client``), or None without a lattice.

    An escape hatch for providers that speak NATS themselves (messaging, NATS KV)
    or need its limits (``max_payload``); calls to components go through
    ``ctx.call`` / ``provider.call``. Works in handlers, callbacks and tasks they start.
    """
    instance = _current_instance.get(None)
    return instance.connection if instance is not None else None


def in_handler() -> bool:
    return _current_context.get(None) is not None


def current_instance() -> Instance | None:
    return _current_instance.get(None)
