"""How WIT resources travel between a component's host and a provider.

A component calls resource functions by their WIT names (``[static]bucket.open``,
``[method]bucket.get``, ``[constructor]bucket``, ``[resource-drop]bucket``). On
the wire, the function is named ``<resource>.<name>``:

    [constructor]bucket    ->  bucket.new
    [static]bucket.open    ->  bucket.open
    [method]bucket.get     ->  bucket.get     (first argument: the handle)
    [resource-drop]bucket  ->  bucket.drop    (not sent: handles are plain tokens)

A *handle* is a token the provider chose when it returned the resource (for
``wasi:keyvalue`` the bucket's identifier). The host keeps the token in the
component's resource table and passes it back as the first argument of every
method call, to the same target (any instance of it: tokens must mean the same
thing to every instance of a provider).
"""

from __future__ import annotations

import re


def wire_function(name: str) -> str:
    """The wire name of a WIT function name (plain names pass unchanged)."""
    if name.startswith("[constructor]"):
        return name[len("[constructor]"):] + ".new"
    for prefix in ("[static]", "[method]"):
        if name.startswith(prefix):
            return name[len(prefix):]
    if name.startswith("[resource-drop]"):
        return name[len("[resource-drop]"):] + ".drop"
    return name


def unversioned(interface: str) -> str:
    """``wasi:keyvalue/store@0.2.0-draft`` -> ``wasi:keyvalue/store``."""
    return interface.split("@", 1)[0]


_ADDRESS = re.compile(
    r"^(?P<iface>[a-z][a-z0-9-]*:[a-z][a-z0-9-]*(?:/[a-z][a-z0-9-]*)?"
    r"(?:@\d+\.\d+\.\d+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*?)?(?:\+[0-9A-Za-z.-]+?)?)?)"
    r"[.#](?P<func>[a-z\[][^\s]*)$"
)


def parse_address(address: str) -> tuple[str, str]:
    """``ns:pkg/iface[@version].func`` (or ``#func``) → (interface, function).

    The function part may name a resource function (``bucket.get``); a bare
    name with no interface is a world-level function: ``("", name)``.
    """
    m = _ADDRESS.match(address.strip())
    if m:
        return m.group("iface"), m.group("func")
    if ":" not in address and "/" not in address:
        return "", address.strip()
    raise ValueError(f"cannot read {address!r} as ns:pkg/iface.function")
