"""Pure classification of wasmtime failures."""

from __future__ import annotations

import pytest

from trellis.host.runtime.errors import ErrorKind, classify_failure, summarize_wasmtime_error

TRAP = "error while executing at wasm backtrace:\n    0:     0x71 - m!f\n\nCaused by:\n    wasm trap: {}\n"


@pytest.mark.parametrize(
    ("cause", "stderr", "kind"),
    [
        ("interrupt", "", ErrorKind.TIMEOUT),
        ("all fuel consumed by WebAssembly", "", ErrorKind.OUT_OF_FUEL),
        ("call stack exhausted", "", ErrorKind.STACK_OVERFLOW),
        ("wasm `unreachable` instruction executed", "", ErrorKind.TRAP),
        ("wasm `unreachable` instruction executed", "memory allocation of 1048576 bytes failed",
         ErrorKind.OUT_OF_MEMORY),
        ("wasm `unreachable` instruction executed", "object type name: MemoryError", ErrorKind.OUT_OF_MEMORY),
        ("out of bounds memory access", "", ErrorKind.TRAP),
    ],
)
def test_classify(cause: str, stderr: str, kind: ErrorKind) -> None:
    assert classify_failure(TRAP.format(cause), stderr) is kind


def test_oom_from_backtrace_frame_names() -> None:
    message = TRAP.replace("m!f", "m!__rust_alloc_error_handler").format("wasm `unreachable` instruction executed")
    assert classify_failure(message) is ErrorKind.OUT_OF_MEMORY


def test_summary_keeps_cause_and_few_frames() -> None:
    frames = "".join(f"   {i}:     0x{i:x} - m!rec\n" for i in range(20))
    message = f"error while executing at wasm backtrace:\n{frames}\nCaused by:\n    wasm trap: call stack exhausted\n"
    summary = summarize_wasmtime_error(message, max_frames=2)
    assert summary == "wasm trap: call stack exhausted [at 0: 0x0 - m!rec; 1: 0x1 - m!rec (+18 frames)]"


def test_a_response_body_is_appended_only_by_an_http_handler_and_within_the_frame() -> None:
    """trellis:http/response-body.append: pieces collect on the running call's context; a call that
    is not incoming-handler.handle, or a body past a reply frame, gets err, not a trap."""
    from trellis.host.runtime.imports import MAX_RESPONSE_BODY, CallContext, ResourceTable, deny_all

    other = CallContext(handler=deny_all, table=ResourceTable())
    assert "only during incoming-handler.handle" in other.append_body(b"x")["err"] and not other.body
    ctx = CallContext(handler=deny_all, table=ResourceTable(), takes_body=True)
    assert ctx.append_body(b"ab") == {"ok": None} and ctx.append_body(b"") == {"ok": None}
    assert "would pass" in ctx.append_body(b"x" * (MAX_RESPONSE_BODY - 1))["err"]
    assert ctx.append_body(b"x" * (MAX_RESPONSE_BODY - 2)) == {"ok": None}
    assert ctx.body_size == MAX_RESPONSE_BODY and b"".join(ctx.body)[:3] == b"abx"


def test_a_withheld_request_body_is_read_in_pieces_of_at_most_one_calls_worth() -> None:
    from trellis.host.runtime.imports import CallContext, ResourceTable, deny_all
    from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

    body = bytes(range(256)) * (3 * MAX_BYTES_PER_CALL // 256)
    ctx = CallContext(handler=deny_all, table=ResourceTable(), takes_body=True, request_body=body)
    pieces = [ctx.read_request_body(10 * MAX_BYTES_PER_CALL)]  # asked for more: one call's worth
    assert len(pieces[0]) == MAX_BYTES_PER_CALL
    while piece := ctx.read_request_body(1 << 20):
        pieces.append(piece)
    assert b"".join(pieces) == body and ctx.read_request_body(5) == b"" and ctx.read_request_body(-1) == b""
    assert CallContext(handler=deny_all, table=ResourceTable()).read_request_body(100) == b""
