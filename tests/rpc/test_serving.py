"""The serve wrapper (interfaces/serving.py) on plain data: the error a caller gets for whatever a
handler raises, the served/failed counts, and the trace context passed on when no span is made."""

from __future__ import annotations

import logging
import time

import pytest

from trellis.interfaces import serving, tracing
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.rpc_client import RpcError

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def invocation(trace: dict[str, str] | None = None) -> Invocation:
    return Invocation("comp", "x:y/z", "f", [], "test", "inv-1", int((time.time() + 5) * 1000),
                      trace=dict(trace or {}))


def test_what_a_handler_raises_becomes_the_error_its_caller_gets(caplog: pytest.LogCaptureFixture) -> None:
    inv = invocation()
    own = RpcError("comp: wasm trap", ErrorCode.INVOCATION_FAILED, "trap")
    assert serving.error_of(own, inv) is own
    err = serving.error_of(TrellisError("no such bucket", ErrorCode.NOT_FOUND), inv)
    assert (err.code, err.message, err.kind) == (ErrorCode.NOT_FOUND, "no such bucket", "")
    with caplog.at_level(logging.ERROR, logger="trellis.interfaces.serving"):
        err = serving.error_of(ValueError("boom"), inv)
    assert (err.code, err.message) == (ErrorCode.INTERNAL, "ValueError: boom")
    assert any("inv-1" in r.getMessage() and r.exc_info for r in caplog.records)  # a bug: logged with its traceback


async def test_serve_counts_and_raises_rpc_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "enabled", lambda: False)
    counts = {"served": 0, "failed": 0}
    seen: list[dict[str, str]] = []

    async def ok(x: int) -> int:
        seen.append(tracing.inject())  # what a call made while serving would carry
        return x + 1

    async def bad() -> None:
        raise KeyError("gone")

    assert await serving.serve(invocation(TRACE), ok, 1, counts=counts) == 2
    assert seen == [TRACE] and tracing.inject() == {}  # passed on while serving, not after
    with pytest.raises(RpcError) as err:
        await serving.serve(invocation(), bad, counts=counts)
    assert err.value.code == ErrorCode.INTERNAL and "KeyError" in err.value.message
    assert counts == {"served": 1, "failed": 1}


def test_serve_sync_is_the_same_on_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "enabled", lambda: False)
    counts = {"served": 0, "failed": 0}
    assert serving.serve_sync(invocation(TRACE), lambda: tracing.inject(), counts=counts) == TRACE
    with pytest.raises(RpcError) as err:
        serving.serve_sync(invocation(), _raise, TrellisError("refused", ErrorCode.FORBIDDEN), counts=counts)
    assert (err.value.code, err.value.message) == (ErrorCode.FORBIDDEN, "refused")
    assert counts == {"served": 1, "failed": 1} and tracing.inject() == {}


def _raise(exc: Exception) -> None:
    raise exc
