"""Where a call runs, decided from plain facts: inline, on a Wasm thread, co-located, or remote.

The worker asks these questions on every call; the answers depend on nothing but
the facts passed in, so they are tested as plain data (tests/local_calls/test_dispatch.py)
and the code that acts on them (``calls.py``, ``colocated.py``, ``handoff.py``) holds
no policy of its own.

* A call **entering** the worker (over NATS, a local socket, or an HTTP
  connection handed here) runs :data:`INLINE` on the event loop when its
  component may be run again from the start, the function has not been seen
  to need a thread and its arguments are not heavy, else on a Wasm
  :data:`THREAD` (:func:`entry`).
* An inline run cut short (:class:`~trellis.host.runtime.Reroute`) runs again on a
  thread; whether the function stays on threads from then on is :func:`after_reroute`.
* A **link call** made by a component of this worker to another component runs
  :data:`COLOCATED` here, nested on the calling thread, when the target is served
  here with a free slot, within the nesting depth and the deadline, and small
  enough for one NATS message; otherwise :data:`REMOTE`, over NATS, exactly as if
  the target were elsewhere (:func:`link`; a slot is then taken, or the call goes
  remote after all).
* An **HTTP request** on a handed connection is answered here under the same
  conditions, else sent over NATS (:func:`handoff`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Way(enum.Enum):
    INLINE = "inline"
    THREAD = "thread"
    COLOCATED = "colocated"
    REMOTE = "remote"


INLINE, THREAD, COLOCATED, REMOTE = Way.INLINE, Way.THREAD, Way.COLOCATED, Way.REMOTE


class Why(enum.Enum):
    """Why a call that could have stayed in this worker goes remote (counted per component)."""

    NOT_HERE = "not_here"  # no such component in this worker
    NOT_TAKING_CALLS = "not_taking_calls"  # no share here (scaled to 0), or being replaced
    TOO_DEEP = "too_deep"  # nested past the depth allowed
    DEADLINE = "deadline"  # the deadline passed: the RPC client reports it its own way
    TOO_LARGE = "too_large"  # over what NATS carries: fails there as it would anyway
    NO_SLOT = "no_slot"  # every slot taken (or remote calls queue for one)


@dataclass(frozen=True)
class DispatchDecision:
    way: Way
    why: Why | None = None


#: the decisions, made once (these run on every call)
_HERE = DispatchDecision(COLOCATED)
_REMOTE = {why: DispatchDecision(REMOTE, why) for why in Why}


def entry(inline_allowed: bool, needs_thread: bool, heavy: bool = False) -> Way:
    """A call entering the worker: on the loop, or on a Wasm thread.

    ``inline_allowed``: inline calls are on and the component may be run again after a run cut
    short (no preopens, no inherited stdio); ``needs_thread``: this function was seen to need one;
    ``heavy``: its arguments carry more bytes than an inline call may copy into Wasm (host code
    the inline budget cannot cut short: a 2.7 MB body held the loop for seconds)."""
    return INLINE if inline_allowed and not needs_thread and not heavy else THREAD


def after_reroute(sticky: bool, overrun: bool, overruns: int, overruns_to_stick: int) -> tuple[bool, int]:
    """An inline run was cut short: (the function runs on threads from now on, overruns in a row now).

    ``sticky``: it needs the lattice (it always will); ``overrun``: it ran past the inline budget
    (``overruns`` times in a row before this one) — remembered only after ``overruns_to_stick``,
    since a busy machine can deschedule a short call past the budget by chance. Anything else
    (a lock taken by a thread) is transient and not remembered."""
    if overrun:
        overruns += 1
        return overruns >= overruns_to_stick, overruns
    return sticky, overruns


def link(served_here: bool, taking_calls: bool, depth: int, max_depth: int, remaining_s: float) -> DispatchDecision:
    """A link call from a Wasm thread of this worker, before its request is encoded.

    COLOCATED means: encode it, check :func:`fits`, then take a slot (without waiting)."""
    if not served_here:
        return _REMOTE[Why.NOT_HERE]
    if not taking_calls:
        return _REMOTE[Why.NOT_TAKING_CALLS]
    if depth >= max_depth:
        return _REMOTE[Why.TOO_DEEP]
    if remaining_s <= 0:
        return _REMOTE[Why.DEADLINE]
    return _HERE


def fits(size: int, max_payload: int) -> bool:
    """An encoded request of ``size`` bytes could cross NATS in one message (0: no limit known)."""
    return not max_payload or size <= max_payload


def handoff(served_here: bool, taking_calls: bool, body_size: int, max_body: int) -> DispatchDecision:
    """An HTTP request on a connection handed to this worker, before a slot is taken.

    ``max_body``: the largest body one NATS message carries with its envelope."""
    if not served_here:
        return _REMOTE[Why.NOT_HERE]
    if not taking_calls:
        return _REMOTE[Why.NOT_TAKING_CALLS]
    if body_size > max_body:
        return _REMOTE[Why.TOO_LARGE]
    return _HERE
