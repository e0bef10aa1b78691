"""The call policy on plain data (interfaces/call_policy.py): every rule of docs/architecture.md,
"Retries", without NATS, sockets or clocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.interfaces.call_policy import (
    RETURN,
    Act,
    BadReply,
    CallEvent,
    CallState,
    Cause,
    Decision,
    ErrorReply,
    Failure,
    RetryPolicy,
)

SENT, PROGRESS, PROGRESS_NR, TICK, OK, NO_RESPONDERS, CLOSED = (
    CallEvent.SENT, CallEvent.PROGRESS, CallEvent.PROGRESS_NR, CallEvent.TICK, CallEvent.OK, CallEvent.NO_RESPONDERS,
    CallEvent.CLOSED)
BUSY = ErrorReply("busy", "comp is busy on h/0: 4 running, 16 waiting")


def state(deadline: float = 30.0, **kw: object) -> CallState:
    retryable = bool(kw.pop("retryable", True))
    return CallState(deadline, 0.0, retryable=retryable,
                     policy=RetryPolicy(**kw))  # type: ignore[arg-type]  # the policy's fields, as keywords


def wait(delay: float) -> Decision:
    return Decision(Act.WAIT, delay)


def test_a_reply_returns_and_a_first_attempt_waits_one_silence_window() -> None:
    s = state()
    assert s.on(SENT, 0.0) == wait(1.0)
    assert s.on(OK, 0.01) is RETURN
    assert s.attempts == 1


def test_no_responders_and_busy_are_sent_again_with_a_doubling_backoff_until_the_deadline() -> None:
    s = state(deadline=1.0)
    delays, t = [], 0.0
    events: list[CallEvent | ErrorReply] = [NO_RESPONDERS, BUSY, NO_RESPONDERS, BUSY, NO_RESPONDERS, BUSY]
    for event in events:
        assert s.on(SENT, t).act is Act.WAIT
        d = s.on(event, t)
        assert d.act is Act.RETRY and d.cause is (Cause.BUSY if event is BUSY else Cause.NO_RESPONDERS)
        delays.append(d.delay_s)
        t += d.delay_s
    assert delays == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.25, 0.25])
    # the last wait stops at the deadline; the next attempt does not leave: timeout, saying what the attempts met
    t = 0.95
    d = s.on(NO_RESPONDERS, t)
    assert d.act is Act.RETRY and d.delay_s == pytest.approx(0.05)
    assert s.on(SENT, 1.0) == Decision(Act.FAIL, failure=Failure.TIMEOUT, cause=Cause.NO_RESPONDERS,
                                       code="timeout", kind="timeout")


def test_a_timeout_after_busy_replies_carries_the_last_busy_message() -> None:
    s = state(deadline=0.01)
    s.on(SENT, 0.0)
    assert s.on(BUSY, 0.0).act is Act.RETRY
    d = s.on(SENT, 0.02)
    assert d.failure is Failure.TIMEOUT and d.cause is Cause.BUSY and d.message == BUSY.message


def test_with_an_instance_wait_a_call_that_never_starts_fails_unavailable_early() -> None:
    s = state(deadline=5.0, instance_wait_s=0.05, first_backoff_s=0.01)
    t = 0.0
    s.on(SENT, t)
    assert s.on(NO_RESPONDERS, t) == Decision(Act.RETRY, 0.01, cause=Cause.NO_RESPONDERS)
    t = 0.01
    s.on(SENT, t)
    assert s.on(BUSY, t).act is Act.RETRY  # 0.01 + 0.02 < 0.05
    t = 0.03
    s.on(SENT, t)
    d = s.on(BUSY, t)  # 0.03 + 0.04 >= 0.05: would wait past the instance wait
    assert d == Decision(Act.FAIL, failure=Failure.UNAVAILABLE, cause=Cause.BUSY, code="busy", message=BUSY.message)


def test_silence_for_the_window_loses_the_attempt_and_a_retryable_call_is_sent_again_at_once() -> None:
    s = state()
    s.on(SENT, 0.0)
    d = s.on(TICK, 1.0)
    assert d == Decision(Act.RETRY, 0.0, cause=Cause.LOST) and d.lost
    # after a lost attempt the never-started backoff starts over
    assert s.on(SENT, 1.0).act is Act.WAIT
    assert s.on(BUSY, 1.0).delay_s == pytest.approx(0.02)


def test_progress_frames_keep_a_long_call_alive() -> None:
    s = state()
    s.on(SENT, 0.0)
    assert s.on(PROGRESS, 0.25).act is Act.KEEP
    assert s.on(PROGRESS, 0.5).act is Act.KEEP
    assert s.on(TICK, 1.0) == wait(0.5)  # the window counts from the last frame
    assert s.on(PROGRESS, 1.25).act is Act.KEEP
    assert s.on(TICK, 1.5) == wait(0.75)
    assert s.on(TICK, 2.25).act is Act.RETRY  # silent since 1.25


def test_a_call_made_non_retryable_fails_lost_instead_of_being_sent_again() -> None:
    s = state(retryable=False)
    s.on(SENT, 0.0)
    d = s.on(TICK, 1.0)
    assert d == Decision(Act.FAIL, failure=Failure.LOST, cause=Cause.NOT_RETRYABLE, code="invocation_failed",
                         kind="lost")


def test_a_function_the_callee_marks_at_most_once_is_not_sent_again_once_started() -> None:
    s = state()
    s.on(SENT, 0.0)
    assert s.on(PROGRESS_NR, 0.01).act is Act.KEEP
    d = s.on(TICK, 1.01)
    assert d.act is Act.FAIL and d.failure is Failure.LOST and d.cause is Cause.STARTED_NR and d.lost
    # ... nor when its connection closes
    s = state()
    s.on(SENT, 0.0)
    s.on(PROGRESS_NR, 0.01)
    assert s.on(CLOSED, 0.02).failure is Failure.LOST


def test_a_closed_connection_is_a_lost_attempt() -> None:
    s = state()
    s.on(SENT, 0.0)
    assert s.on(CLOSED, 0.3) == Decision(Act.RETRY, 0.0, cause=Cause.LOST)
    assert state(retryable=False).on(CLOSED, 0.3).failure is Failure.LOST


def test_a_stalled_caller_gives_the_callee_a_new_window() -> None:
    s = state()
    assert s.on(SENT, 0.0) == wait(1.0)
    # the caller's loop was stalled: its tick comes 0.6 s late; frames may be unread: a new window
    assert s.on(TICK, 1.6) == wait(1.0)
    assert s.on(TICK, 2.6).act is Act.RETRY  # on time, silent for the whole new window: lost
    # a tick late by less than stall_s is not a stall
    s = state()
    s.on(SENT, 0.0)
    assert s.on(TICK, 1.05).act is Act.RETRY


def test_an_early_tick_just_says_how_long_to_wait_again() -> None:
    s = state()
    s.on(SENT, 0.0)
    s.on(PROGRESS, 0.5)
    assert s.on(TICK, 0.5) == wait(1.0)  # a blocking caller asks after each frame
    assert s.on(TICK, 1.5).act is Act.RETRY


def test_the_deadline_ends_the_wait_and_no_wait_outlasts_it() -> None:
    s = state(deadline=0.5)
    assert s.on(SENT, 0.0) == wait(0.5)
    assert s.on(TICK, 0.5) == Decision(Act.FAIL, failure=Failure.TIMEOUT, code="timeout", kind="timeout")
    s = state(deadline=1.2)
    s.on(SENT, 0.0)
    s.on(PROGRESS, 0.9)
    assert s.on(TICK, 1.0) == wait(pytest.approx(0.2))  # type: ignore[arg-type]  # approx stands for a float
    # a lost attempt with no time left is a timeout, not a retry
    s = state(deadline=1.0)
    s.on(SENT, 0.0)
    assert s.on(CLOSED, 1.0).failure is Failure.TIMEOUT


def test_the_callees_errors_are_never_retried() -> None:
    for reply in [ErrorReply("invocation_failed", "comp: wasm trap: unreachable", "trap"),
                  ErrorReply("timeout", "comp: timed out after 100 ms", "timeout"),
                  ErrorReply("not_found", "no such function", "no_such_function")]:
        s = state()
        s.on(SENT, 0.0)
        assert s.on(reply, 0.1) == Decision(Act.FAIL, failure=Failure.CALLEE, code=reply.code, kind=reply.kind,
                                            message=reply.message)


def test_a_reply_that_cannot_be_read_fails_the_call() -> None:
    s = state()
    s.on(SENT, 0.0)
    assert s.on(BadReply("truncated"), 0.1) == Decision(Act.FAIL, failure=Failure.BAD_REPLY, code="internal",
                                                        message="truncated")


_EVENTS = st.sampled_from([PROGRESS, PROGRESS_NR, TICK, NO_RESPONDERS, CLOSED, BUSY, OK,
                           ErrorReply("invocation_failed", "trap", "trap")])


@settings(max_examples=300, deadline=None)
@given(retryable=st.booleans(), wait_s=st.one_of(st.none(), st.floats(0.0, 2.0)),
       steps=st.lists(st.tuples(_EVENTS, st.floats(0.0, 0.7)), max_size=40))
def test_properties_over_any_sequence_of_events(retryable: bool, wait_s: float | None,
                                                steps: list[tuple[object, float]]) -> None:
    """Whatever happens: no wait outlasts the deadline or is zero; nothing is sent again after
    the callee said it started an at-most-once function, nor after a loss of a non-retryable
    call; nothing is sent once the deadline has passed."""
    deadline = 3.0
    s = CallState(deadline, 0.0, retryable=retryable, policy=RetryPolicy(instance_wait_s=wait_s))
    t = 0.0
    d = s.on(SENT, t)
    nr_seen = False
    for event, dt in steps:
        if d.act is Act.RETRY:
            t += d.delay_s
            d = s.on(SENT, t)
            nr_seen = False  # a new attempt: what the last one said no longer holds
        if d.act in (Act.FAIL, Act.RETURN):
            return
        t += dt
        nr_seen = nr_seen or event is PROGRESS_NR
        was_lost_event = event in (TICK, CLOSED)
        d = s.on(event, t)  # type: ignore[arg-type]  # events include error replies, which on() takes
        if d.act is Act.WAIT:
            assert 0.001 <= d.delay_s <= max(deadline - t, 0.001) + 1e-9
        if d.act is Act.RETRY:
            assert t < deadline or d.delay_s == 0.0
            if was_lost_event:
                assert retryable and not nr_seen and d.cause is Cause.LOST
        if d.act is Act.FAIL and d.failure is Failure.LOST:
            assert nr_seen or not retryable
