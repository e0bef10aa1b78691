"""The lattice's call policy, written once: what happened in, what to do next out.

Every way a call leaves a caller — :class:`~trellis.interfaces.rpc_client.RpcClient` over
NATS, the HTTP front's ``NatsCaller``, a provider's and a Wasm thread's calls over a
host-local socket (``local_rpc``) — keeps one :class:`CallState` per call and feeds it
what it sees (:class:`CallEvent`, :class:`ErrorReply`, :class:`BadReply`) with the time on
its own monotonic clock. :meth:`CallState.on` answers with a :class:`Decision`: keep
waiting, return the result, send again after a delay, or fail and why. The state does no
I/O and reads no clock, so the rules (docs/architecture.md, "Retries") are unit-tested
on plain data (tests/rpc/test_call_policy.py); the callers keep their I/O loops, and only
turn decisions into timers, sends and errors in their own words.

The rules:

* **Never started** — no responders, or a ``busy`` reply: send again after a backoff
  (``first_backoff_s`` doubling up to ``max_backoff_s``) until the deadline; a retry
  cannot run the call twice. With ``instance_wait_s`` set (the HTTP front), a call that
  could not start within that time fails :attr:`Failure.UNAVAILABLE` instead of waiting
  for the whole deadline; without it, it fails :attr:`Failure.TIMEOUT` at the deadline
  saying what the attempts met.
* **Lost** — neither a progress frame nor a reply for ``silence_s``, or the connection to
  the serving instance closed: a retryable call is sent again at once (at-least-once);
  one made non-retryable by its caller, or whose callee said it started an at-most-once
  function (a progress frame flagged ``nr``: :attr:`CallEvent.PROGRESS_NR`), fails
  :attr:`Failure.LOST`.
* **Stalled caller** — the silence window counts only time the caller was awake: a
  :attr:`CallEvent.TICK` later than ``stall_s`` past the wait the state asked for means the
  caller's own loop or thread was stalled, so the window starts again.
* **Deadline** — passed while waiting, or before an attempt: :attr:`Failure.TIMEOUT`.
* **The callee's errors** (a trap, a WIT ``err``, its own timeout) are never retried:
  :attr:`Failure.CALLEE` with the reply's code, kind and message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from .errors import ErrorCode

#: a tick this late (past the wait asked for) means the caller itself was stalled
STALL_S = 0.1
#: the shortest wait handed out: a socket timeout of 0 would mean "do not wait at all"
_MIN_WAIT_S = 0.001


class Chained:
    """One attempt of a call, chained to the attempt sent after it (``then``). An attempt given up
    as lost is still listened to until the call ends: its callee may only have been too slow to
    send progress frames (a loaded machine), and its answer, when it comes, is the call's, given
    to the attempt under way (:meth:`live`). Dropping it made a slowed callee run the call again
    and again, each copy answered too late, until the deadline. The RPC client's and the HTTP
    front's attempts both are."""

    __slots__ = ("then",)

    def __init__(self) -> None:
        self.then: Self | None = None

    def live(self) -> Self:
        """The call's attempt under way: this one, or the latest sent after it."""
        a = self
        while a.then is not None:
            a = a.then
        return a


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How patient a caller is (data, interpreted by :class:`CallState`)."""

    #: no progress frame nor reply for this long: the serving instance is presumed dead
    silence_s: float = 1.0
    #: the first wait before re-sending a call that never started; it doubles up to max_backoff_s
    first_backoff_s: float = 0.02
    max_backoff_s: float = 0.25
    #: a call that has not started after this long fails UNAVAILABLE (None: keep trying until the deadline)
    instance_wait_s: float | None = None
    #: a tick later than this past the wait asked for: the caller was stalled, the window starts again
    stall_s: float = STALL_S


class CallEvent(enum.Enum):
    """What a caller saw, without a payload."""

    SENT = "sent"                    #: an attempt is about to leave
    PROGRESS = "progress"            #: a progress frame (or a part of a reply): the callee is alive
    PROGRESS_NR = "progress_nr"      #: a progress frame flagged ``nr``: started, at most once from now on
    TICK = "tick"                    #: the wait a WAIT decision asked for is over (or the caller asks again)
    OK = "ok"                        #: the final reply, a result
    NO_RESPONDERS = "no_responders"  #: nobody serves the target (or the frame never left)
    CLOSED = "closed"                #: the connection to the serving instance closed mid-call


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The final reply, an error (``busy`` among them)."""

    code: str
    message: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class BadReply:
    """A reply that cannot be read."""

    message: str


class Act(enum.Enum):
    WAIT = "wait"      #: wait for frames; feed TICK after ``delay_s`` (arm a timer, or a socket timeout)
    KEEP = "keep"      #: keep waiting as before (the timer already armed stays)
    RETURN = "return"  #: the final reply's result is the call's
    RETRY = "retry"    #: send again (``attempt`` + 1) after ``delay_s``, to any instance
    FAIL = "fail"      #: the call failed: ``failure`` says how


class Failure(enum.Enum):
    TIMEOUT = "timeout"          #: the deadline passed
    LOST = "lost"                #: the serving instance went away and the call must not run twice
    UNAVAILABLE = "unavailable"  #: no instance took it within ``instance_wait_s``
    CALLEE = "callee"            #: the callee's own error (code, kind, message)
    BAD_REPLY = "bad_reply"      #: a reply that cannot be read (message)


class Cause(enum.Enum):
    """What the attempts met: on RETRY, why; on FAIL TIMEOUT/UNAVAILABLE, the last thing
    that kept the call from starting; on FAIL LOST, why it was not sent again."""

    BUSY = "busy"
    NO_RESPONDERS = "no_responders"
    LOST = "lost"
    STARTED_NR = "started_nr"        #: the callee said the function runs at most once
    NOT_RETRYABLE = "not_retryable"  #: the caller asked for at-most-once


class Decision:
    """What the caller does next. ``message``: the callee's (CALLEE, BAD_REPLY) or the last
    ``busy`` reply's (cause BUSY)."""

    __slots__ = ("act", "delay_s", "failure", "cause", "code", "kind", "message")

    def __init__(self, act: Act, delay_s: float = 0.0, failure: Failure | None = None,
                 cause: Cause | None = None, code: str = "", kind: str = "", message: str = "") -> None:
        self.act = act
        self.delay_s = delay_s
        self.failure = failure
        self.cause = cause
        self.code = code
        self.kind = kind
        self.message = message

    @property
    def lost(self) -> bool:
        """The attempt was lost (sent again, or failed as LOST)."""
        return self.cause is Cause.LOST or self.failure is Failure.LOST

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable state: unhashable on purpose

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__[1:] if getattr(self, n))
        return f"Decision({self.act.name}{', ' if fields else ''}{fields})"


RETURN = Decision(Act.RETURN)
KEEP = Decision(Act.KEEP)
_WAIT = Act.WAIT
# module-level names: a global lookup is cheaper than an enum's class attribute, per event
_OK, _SENT, _PROGRESS, _TICK, _PROGRESS_NR, _NO_RESPONDERS, _CLOSED = (
    CallEvent.OK, CallEvent.SENT, CallEvent.PROGRESS, CallEvent.TICK, CallEvent.PROGRESS_NR, CallEvent.NO_RESPONDERS,
    CallEvent.CLOSED)
#: the WAIT for a whole silence window, shared (decisions are never changed): most attempts get it
_FULL_WAITS: dict[float, Decision] = {}


def _full_wait(silence_s: float) -> Decision:
    d = _FULL_WAITS.get(silence_s)
    if d is None:
        if len(_FULL_WAITS) >= 64:
            _FULL_WAITS.clear()
        d = _FULL_WAITS[silence_s] = Decision(_WAIT, silence_s)
    return d


class CallState:
    """One call's policy state. Times are seconds on the caller's monotonic clock; the
    deadline is on the same clock."""

    __slots__ = ("policy", "deadline", "retryable", "wait_until", "backoff", "heard_at", "due",
                 "at_most_once", "cause", "problem", "attempts")

    def __init__(self, deadline: float, now: float, *, retryable: bool = True,
                 policy: RetryPolicy = RetryPolicy()) -> None:
        self.policy = policy
        self.deadline = deadline
        self.retryable = retryable
        wait = policy.instance_wait_s
        #: a call not started by then fails UNAVAILABLE (None: TIMEOUT at the deadline)
        self.wait_until = None if wait is None else min(deadline, now + wait)
        self.backoff = policy.first_backoff_s
        self.heard_at = now  # the send, then the latest sign of life
        self.due = now       # when the wait last handed out ends
        self.at_most_once = False
        self.cause: Cause | None = None  # what the last attempt that did not start met
        self.problem = ""  # the last busy reply's message
        self.attempts = 0

    def on(self, event: CallEvent | ErrorReply | BadReply, now: float) -> Decision:
        if event is _OK:
            return RETURN
        if event is _SENT:
            return self._sent(now)
        if event is _PROGRESS:
            self.heard_at = now
            return KEEP
        if event is _TICK:
            return self._tick(now)
        if event is _PROGRESS_NR:
            self.heard_at = now
            self.at_most_once = True
            return KEEP
        if event is _NO_RESPONDERS:
            return self._not_started(now, Cause.NO_RESPONDERS, "")
        if event is _CLOSED:
            return self._lost(now)
        if isinstance(event, ErrorReply):
            if event.code == ErrorCode.BUSY:
                return self._not_started(now, Cause.BUSY, event.message)
            return Decision(Act.FAIL, failure=Failure.CALLEE, code=event.code, kind=event.kind, message=event.message)
        if isinstance(event, BadReply):
            return Decision(Act.FAIL, failure=Failure.BAD_REPLY, code=ErrorCode.INTERNAL, message=event.message)
        raise TypeError(f"not a call event: {event!r}")

    def _sent(self, now: float) -> Decision:
        left = self.deadline - now
        if left <= 0:
            return self._timeout(self.cause)
        self.attempts += 1
        self.heard_at = now
        self.at_most_once = False  # what an earlier attempt's callee said holds for that attempt only
        silence = self.policy.silence_s
        if silence <= left:
            self.due = now + silence
            return _full_wait(silence)
        delay = left if left > _MIN_WAIT_S else _MIN_WAIT_S
        self.due = now + delay
        return Decision(_WAIT, delay)

    def _tick(self, now: float) -> Decision:
        left = self.deadline - now
        if left <= 0:
            return self._timeout(None)
        silence = self.policy.silence_s
        if now - self.due > self.policy.stall_s:
            self.heard_at = now  # the caller was stalled: frames may be waiting unread; a new window
        quiet = now - self.heard_at
        if quiet >= silence:
            return self._lost(now)
        delay = max(min(silence - quiet, left), _MIN_WAIT_S)
        self.due = now + delay
        return Decision(Act.WAIT, delay)

    def _lost(self, now: float) -> Decision:
        if self.at_most_once:
            return Decision(Act.FAIL, failure=Failure.LOST, cause=Cause.STARTED_NR, code=ErrorCode.INVOCATION_FAILED,
                            kind="lost")
        if not self.retryable:
            return Decision(Act.FAIL, failure=Failure.LOST, cause=Cause.NOT_RETRYABLE,
                            code=ErrorCode.INVOCATION_FAILED, kind="lost")
        if now >= self.deadline:
            return self._timeout(None)
        self.cause = Cause.LOST
        self.backoff = self.policy.first_backoff_s  # another instance may answer at once
        return Decision(Act.RETRY, 0.0, cause=Cause.LOST)

    def _not_started(self, now: float, cause: Cause, message: str) -> Decision:
        self.cause = cause
        self.problem = message
        delay = self.backoff
        policy = self.policy
        self.backoff = min(max(delay * 2, policy.first_backoff_s), policy.max_backoff_s)
        if self.wait_until is not None and now + delay >= self.wait_until:
            return Decision(Act.FAIL, failure=Failure.UNAVAILABLE, cause=cause, code=ErrorCode.NO_RESPONDERS
                            if cause is Cause.NO_RESPONDERS else ErrorCode.BUSY, message=message)
        return Decision(Act.RETRY, max(min(delay, self.deadline - now), 0.0), cause=cause, message=message)

    def _timeout(self, cause: Cause | None) -> Decision:
        return Decision(Act.FAIL, failure=Failure.TIMEOUT, cause=cause, code=ErrorCode.TIMEOUT, kind="timeout",
                        message=self.problem if cause is Cause.BUSY else "")
