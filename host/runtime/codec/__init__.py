"""Plain values: the contract for component values on the wire and in JSON.

A *plain* value is built only from ``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes``, ``list`` and ``dict`` with ``str`` keys, so it encodes
directly to msgpack (and to JSON, apart from ``bytes``). Conversion is
driven by the WIT type, never guessed from the Python value.

Conventions (also the CLI's JSON form):

=====================  ======================================================
WIT                    plain
=====================  ======================================================
bool                   ``bool``
s8..s64, u8..u64       ``int`` (range-checked when lowering)
f32, f64               ``float`` (an ``int`` is accepted when lowering)
char                   1-character ``str`` (no surrogates)
string                 ``str``
list<u8>               ``bytes`` (a list of ints 0..255 is accepted)
list<T>                ``list``
record                 ``dict`` keyed by the WIT field names exactly as
                       written in WIT (kebab-case: ``"order-number"``); all
                       fields required, unknown keys rejected
tuple<...>             ``list`` (a ``tuple`` is accepted)
enum                   case name ``str``
flags                  ``list`` of the set flag names, in declaration order
                       (any iterable of names is accepted)
option<T>              ``None`` or the plain payload; when ``T`` is itself
                       an option (so ``None`` would be ambiguous), ``some(x)``
                       is ``{"some": x}``
result<T, E>           ``{"ok": v}`` or ``{"err": e}``; the payload is
                       ``None`` for a case without a type
variant                ``{"<case-name>": payload}``, payload ``None`` for a
                       case without a type; when lowering, a bare
                       ``"<case-name>"`` string is accepted for such cases
own<R>, borrow<R>      only through a :class:`ResourceCodec` (host resources
                       in import calls); otherwise a :class:`CodecError`
=====================  ======================================================

wasmtime-py's side of the conversion: it lifts a variant, option or result
*untagged* (the bare payload) when the Python classes of its cases do not
overlap, and as ``Variant(tag, payload)`` only when they do (see
:attr:`trellis.host.runtime.wit.VariantLike.tagged`). :func:`to_plain` therefore
decides the case of an untagged value by checking it against each case type
(``bool`` is not taken for an integer), and :func:`from_plain` produces
exactly the Python shape wasmtime-py lowers, refusing the rare values that
wasmtime-py would lower as the wrong case (``variant { a(u32), b(bool) }``
with ``b(true)``: ``True`` is an ``int`` to it).

Both functions are pure; errors are :class:`CodecError` naming the path of
the offending value, e.g. ``args[0].line-items[2].price: expected u32, got
str``.

The package: :mod:`.lift` (wasmtime-py value -> plain), :mod:`.lower` (plain -> what
wasmtime-py lowers) and :mod:`.common`, what they share: each direction keeps one
converter per type, built once, and builds a path only for a value that fails.
"""

from __future__ import annotations

from .common import CodecError, Plain, ResourceCodec, as_wit
from .lift import to_plain
from .lower import from_plain

__all__ = ["Plain", "CodecError", "ResourceCodec", "to_plain", "from_plain", "as_wit"]
