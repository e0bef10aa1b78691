"""The benchmark's single component as a `wasi:http@0.2.0` proxy (for `wasmtime serve` and wasmCloud).

The same logic as the Trellis component (`common/order_logic.py`), behind
`wasi:http/incoming-handler`: read the body stream whole, answer with one
write. Synchronous on purpose (no `poll_loop`): the body is small and the
benchmark measures the host, not an event loop inside the guest. Built by
bench/http/build.py with componentize-py against the wasi:http WIT that
PyPI's spin-sdk ships.
"""

from componentize_py_types import Err, Ok
from order_logic import handle_order
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

WRITE_CHUNK = 4096  # blocking-write-and-flush takes at most 4096 bytes a call


def _method(request: IncomingRequest) -> str:
    m = request.method()
    if isinstance(m, Method_Post):
        return "POST"
    value = getattr(m, "value", None)
    return value if isinstance(value, str) else type(m).__name__.removeprefix("Method_").upper()


def _read_body(request: IncomingRequest) -> bytes:
    incoming = request.consume()
    data = bytearray()
    with incoming.stream() as stream:  # the stream must go before the body is finished
        while True:
            try:
                data += stream.blocking_read(65536)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise
    IncomingBody.finish(incoming)
    return bytes(data)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        status, ctype, body = handle_order(_method(request), request.path_with_query() or "/", _read_body(request))
        response = OutgoingResponse(Fields.from_list([("content-type", ctype)]))
        response.set_status_code(status)
        out_body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with out_body.write() as stream:
            for i in range(0, len(body), WRITE_CHUNK):
                stream.blocking_write_and_flush(body[i:i + WRITE_CHUNK])
        OutgoingBody.finish(out_body, None)
