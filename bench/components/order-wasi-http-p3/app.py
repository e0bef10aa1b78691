"""The benchmark's single component as a `wasi:http/service@0.3.0` handler (wasmCloud 2.x's warm pool).

The same logic as the other variants (`common/order_logic.py`), behind the
async `wasi:http/handler@0.3.0`: `wash host` keeps warm instances (`poolSize`)
only for 0.3 components. The body is read whole from its stream; the response
body is written by a spawned task, as 0.3 wants the response returned before its
body is complete. Built by bench/http/tools.py with componentize-py against the
wasi:http WIT that PyPI's spin-sdk ships (`wit/deps/http.wit`, 0.3.0 final).
"""

from __future__ import annotations

import componentize_py_async_support
from componentize_py_async_support.streams import ByteStreamWriter
from componentize_py_types import Ok
from order_logic import handle_order
from wit_world import (
    byte_stream,
    exports,
    result_option_wasi_http_types_fields_wasi_http_types_error_code_future,
    result_unit_wasi_http_types_error_code_future,
)
from wit_world.imports.wasi_http_types import Fields, Method_Other, Method_Post, Request, Response


def _method(request: Request) -> str:
    m = request.get_method()
    if isinstance(m, Method_Post):
        return "POST"
    if isinstance(m, Method_Other):
        return m.value
    return type(m).__name__.removeprefix("Method_").upper()


async def _write(body: bytes, tx: ByteStreamWriter) -> None:
    with tx:
        await tx.write_all(body)


class Handler(exports.Handler):
    async def handle(self, request: Request) -> Response:
        method, path = _method(request), request.get_path_with_query() or "/"
        rx, _ = Request.consume_body(request, result_unit_wasi_http_types_error_code_future(lambda: Ok(None))[1])
        data = bytearray()
        with rx:
            while not rx.writer_dropped:
                data += await rx.read(16 * 1024)
        status, ctype, body = handle_order(method, path, bytes(data))
        tx, body_rx = byte_stream()
        componentize_py_async_support.spawn(_write(body, tx))
        trailers = result_option_wasi_http_types_fields_wasi_http_types_error_code_future(lambda: Ok(None))[1]
        headers = Fields.from_list([("content-type", ctype), ("content-length", str(len(body)).encode())])
        response = Response.new(headers, body_rx, trailers)[0]
        response.set_status_code(status)
        return response
