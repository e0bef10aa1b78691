"""Serving unmodified ``wasi:http`` proxy components (``wasi:http/incoming-handler@0.2.x``).

wasmtime-py's C API cannot create an ``incoming-request`` (its ``add_wasi_http()`` is for
outgoing calls only), so the host implements ``wasi:http/types`` and the ``wasi:io``
streams and pollables under it in Python, as host resources (docs/runtime.md,
"wasi:http components"):

* :mod:`.io`: ``wasi:io`` streams, pollables and errors, the monotonic clock's pollables,
  the std streams;
* :mod:`.types`: ``wasi:http/types`` (fields, requests, responses, bodies, outparam, futures);
* :mod:`.dispatch`: which imports are the host's (:func:`shadowed`) and the handler that
  answers them, sending outgoing requests to the lattice's http-client provider;
* :mod:`.serve`: one request record in, one response record out (used by the invoker); or,
  for a streamed request (:data:`EXCHANGE`, a :class:`trellis.kit.bodies.Exchange`), its
  body read as it arrives and its response sent as the guest writes it.
"""

from .dispatch import INCOMING, OUTGOING, WasiHttpHandler, find_handler, shadowed
from .serve import AS_500, EXCHANGE, TRELLIS_HANDLE, WasiHttpExport, as_response, claim_exchange, end_stream

__all__ = ["AS_500", "EXCHANGE", "INCOMING", "OUTGOING", "TRELLIS_HANDLE", "WasiHttpExport", "WasiHttpHandler",
           "as_response", "claim_exchange", "end_stream", "find_handler", "shadowed"]
