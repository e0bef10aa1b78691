"""How much one call can carry into or out of a component: a bound of wasmtime, shared by every part.

wasmtime copies at most :data:`HOSTCALL_FUEL` of host-side values each time
values cross between the host and a component ("hostcall fuel"): a call's
arguments going in, its results coming out (an export's or an import's). The
dynamic value API the Python host uses counts :data:`FUEL_PER_ELEMENT` bytes
for every element of a list, so one crossing carries at most ~2.8 million
list elements in all: a ``list<u8>`` (an HTTP body, a key-value value, a
message) of about 2.7 MB. Strings count one per byte (up to ~128 MiB).
Past the bound the call traps with "too much data is being copied between the
host and the guest", which the runtime reports as kind ``too_large``. An HTTP
handler sends a larger response body in pieces (``trellis:http/response-body``)
and reads a larger request body in pieces (``trellis:http/request-body``).
wasmtime-py's C API cannot raise it (wasmtime's ``Store::set_hostcall_fuel``
has no C binding yet).
"""

from __future__ import annotations

HOSTCALL_FUEL = 128 * 1024 * 1024
FUEL_PER_ELEMENT = 48
#: the largest byte list one call can carry whole, leaving room (~200,000 elements) for the rest of it
MAX_BYTES_PER_CALL = 2_600_000
