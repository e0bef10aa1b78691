"""Resource handles in import calls: plain tokens on the wire, host resources in Wasm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trellis.host.runtime import HostResource
from trellis.host.runtime.wit import (
    ListT,
    OptionT,
    OwnT,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
)


@dataclass(frozen=True)
class RemoteResource:
    """A resource that lives at ``target``; ``token`` names it there."""

    target: str
    resource: str
    token: Any


def tokens_in(args: list[Any]) -> list[Any]:
    """Arguments for the wire: resources become their tokens."""
    return [a.token if isinstance(a, RemoteResource) else a for a in args]


def wrap_owned(ty: WitType | None, value: Any, target: str) -> Any:
    """Put provider tokens where the WIT type says ``own<R>``, as host resources."""
    if ty is None or value is None and not isinstance(ty, OwnT):
        return value
    if isinstance(ty, OwnT):
        return HostResource(RemoteResource(target, ty.resource.name, value))
    if isinstance(ty, ResultT):
        if isinstance(value, dict) and len(value) == 1:
            (tag, payload), = value.items()
            case = ty.ok if tag == "ok" else ty.err if tag == "err" else None
            return {tag: wrap_owned(case, payload, target)}
        return value
    if isinstance(ty, OptionT):
        if isinstance(value, dict) and set(value) == {"some"}:  # option<option<T>> form
            return {"some": wrap_owned(ty.payload, value["some"], target)}
        return wrap_owned(ty.payload, value, target)
    if isinstance(ty, VariantT):
        if isinstance(value, dict) and len(value) == 1:
            (tag, payload), = value.items()
            case = dict(ty.cases).get(tag)
            return {tag: wrap_owned(case, payload, target)}
        return value
    if isinstance(ty, RecordT) and isinstance(value, dict):
        types = dict(ty.fields)
        return {k: wrap_owned(types.get(k), v, target) for k, v in value.items()}
    if isinstance(ty, TupleT) and isinstance(value, list):
        return [wrap_owned(t, v, target) for t, v in zip(ty.elements, value, strict=False)]
    if isinstance(ty, ListT) and isinstance(value, list) and not ty.is_bytes:
        return [wrap_owned(ty.element, v, target) for v in value]
    return value


def mentions_own(ty: WitType | None) -> bool:
    if ty is None:
        return False
    if isinstance(ty, OwnT):
        return True
    if isinstance(ty, ResultT):
        return mentions_own(ty.ok) or mentions_own(ty.err)
    if isinstance(ty, OptionT):
        return mentions_own(ty.payload)
    if isinstance(ty, VariantT):
        return any(mentions_own(t) for _, t in ty.cases)
    if isinstance(ty, RecordT):
        return any(mentions_own(t) for _, t in ty.fields)
    if isinstance(ty, TupleT):
        return any(mentions_own(t) for t in ty.elements)
    if isinstance(ty, ListT):
        return mentions_own(ty.element)
    return False
