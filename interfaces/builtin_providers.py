"""The built-in providers by name, and the interfaces each serves and calls (no imports: cheap to read).

A contract between wadm and the built-in providers: `trellis app validate` checks manifests
against this table (``builtin:NAME`` exists, a link to a provider names an interface it serves,
a link from one names an interface it calls); ``tests/wadm/test_wadm_validate_checks.py``
checks that it names every module of ``trellis.providers.builtin``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinProvider:
    name: str
    serves: frozenset[str] = frozenset()
    """Interfaces components call on it (``ns:pkg/iface``): links *to* it."""
    calls: frozenset[str] = frozenset()
    """Interfaces it calls on components: links *from* it."""

    def packages(self, interfaces: frozenset[str]) -> set[str]:
        return {i.partition("/")[0] for i in interfaces}


_KV = frozenset({"wasi:keyvalue/store", "wasi:keyvalue/atomics", "wasi:keyvalue/batch"})

BUILTIN_PROVIDERS: dict[str, BuiltinProvider] = {
    p.name: p
    for p in (
        BuiltinProvider("http-server", calls=frozenset({"trellis:http/incoming-handler",
                                                        "wasi:http/incoming-handler"})),
        BuiltinProvider("http-client", serves=frozenset({"trellis:http/outgoing-handler",
                                                         "wasi:http/outgoing-handler"})),
        BuiltinProvider("keyvalue-nats", serves=_KV),
        BuiltinProvider("keyvalue-redis", serves=_KV),
        BuiltinProvider("messaging-nats", serves=frozenset({"wasmcloud:messaging/consumer"}),
                        calls=frozenset({"wasmcloud:messaging/handler"})),
        BuiltinProvider("sqldb-postgres", serves=frozenset({"trellis:sql/query"})),
        BuiltinProvider("sqldb-sqlite", serves=frozenset({"trellis:sql/query"})),
    )
}
