"""What an HTTP client reads when the component fails: its message in one line, never the traceback."""

from __future__ import annotations

from trellis.httpfront import wire
from trellis.httpfront.gateway import BRIEF_CHARS, brief, call_failure

TRACEBACK = ("wasm trap: wasm `unreachable` instruction executed; guest stderr: Traceback (most recent call last):\n"
             '  File "app.py", line 95, in handle\n    raise RuntimeError("asked to fail")\n'
             "RuntimeError: asked to fail\n")


def test_a_failed_component_answers_502_with_what_it_said() -> None:
    failed = call_failure("shop", "internal", "trap", TRACEBACK, "inv-1")
    assert failed.status == wire.FAILED
    assert failed.message == "component 'shop' failed (trap): RuntimeError: asked to fail; invocation inv-1"


def test_brief_is_one_line_and_bounded() -> None:
    assert brief("no such export 'x'\nmore detail") == "no such export 'x'"
    assert brief("") == "no message"
    assert len(brief("x" * 5000)) == BRIEF_CHARS


def test_the_guest_runtimes_panic_after_the_exception_is_not_the_reason() -> None:
    stderr = (TRACEBACK + "thread '<unnamed>' panicked at src/lib.rs:401:17:\nPython exception was raised\n"
              "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n")
    assert brief(stderr) == "RuntimeError: asked to fail"
