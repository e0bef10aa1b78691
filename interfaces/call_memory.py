"""At most once per call id: what an RPC server remembers of the calls it ran.

A caller sends a call again, with the same invocation id, when it heard nothing from
the instance serving it for its silence window (``call_policy``: lost). On a loaded
machine the instance may only have been slow — its event loop stalled, the frame still
in a socket buffer — and a non-idempotent call (an SQL insert) would run twice: the
second copy fails on a duplicate key, or worse, succeeds. So each
:class:`~trellis.interfaces.rpc_server.RpcServer` keeps, per call id (and function):

* **running**: a copy arriving while the first still runs (or waits for a slot) joins
  it: it takes no slot, gets progress frames, and is answered the first's reply;
* **finished**: a copy arriving after the first ended gets the first's reply frame, as
  sent, for :data:`REMEMBER_S` after it ended or until the call's deadline if sooner (a
  copy past the deadline is refused anyway: retries carry the first attempt's deadline),
  within a bound of entries and bytes (oldest forgotten first): a copy comes a silence
  window (1 s) after the first was sent, and reaches a stalled instance about when the
  first does, so the window is ample and the memory small (≤ ~1.5 MiB per busy server).

It holds for the copies that reach the same instance (process): the same provider
instance (over NATS or a same-host socket, both served by one server), the same
worker. A copy that NATS hands to another instance — the first one's host died, which
is what failover is for — runs there.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

#: how long a finished call's reply is kept for a copy (or until the call's deadline, if sooner)
REMEMBER_S = 10.0
#: finished calls remembered per server, at most (oldest forgotten first)
MAX_CALLS = 1024
#: bytes of reply frames remembered per server, at most
MAX_BYTES = 1 << 20

#: (invocation id, function): a copy of a call has both the same
Key = tuple[str, str]


class _Running:
    __slots__ = ("deadline_s", "waiters")

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.waiters: list[asyncio.Future[bytes | None]] | None = None


class CallMemory:
    """One server's running and finished calls by (invocation id, function)."""

    __slots__ = ("max_calls", "max_bytes", "_running", "_done", "_bytes", "stats")

    def __init__(self, max_calls: int = MAX_CALLS, max_bytes: int = MAX_BYTES) -> None:
        self.max_calls = max_calls
        self.max_bytes = max_bytes
        self._running: dict[Key, _Running] = {}
        #: key -> (reply frame, kept until, Unix seconds); insertion order is the order calls ended (an
        #: OrderedDict: its oldest entry is found at once, where a dict's first key is searched for past
        #: the holes its forgotten entries leave until it is resized)
        self._done: OrderedDict[Key, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        #: copies joined to a running call, answered from a finished one
        self.stats = {"joined": 0, "replayed": 0}

    def begin(self, key: Key, deadline_s: float) -> None | bytes | asyncio.Future[bytes | None]:
        """A call arrives. None: it is new, run it (then :meth:`end` or :meth:`abandon`);
        bytes: it ran already, this is its reply frame; a future: it is running, the
        future gets its reply frame (None if it was abandoned without one)."""
        running = self._running.get(key)
        if running is not None:
            fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            if running.waiters is None:
                running.waiters = []
            running.waiters.append(fut)
            self.stats["joined"] += 1
            return fut
        done = self._done.get(key)
        if done is not None and done[1] > time.time():
            self.stats["replayed"] += 1
            return done[0]
        self._running[key] = _Running(deadline_s)
        return None

    def end(self, key: Key, frame: bytes) -> None:
        """The call's reply frame (sent once, to its first caller): remembered, and given to
        the copies that joined it. A second end (an early reply, then the return) is ignored."""
        running = self._running.pop(key, None)
        if running is None:
            return
        if running.waiters:
            for fut in running.waiters:
                if not fut.done():
                    fut.set_result(frame)
        done = self._done
        now = time.time()
        until = min(running.deadline_s, now + REMEMBER_S)
        if until > now and len(frame) <= self.max_bytes:
            stale = done.pop(key, None)  # an expired entry for the same key (its copy ran again)
            if stale is not None:
                self._bytes -= len(stale[0])
            done[key] = (frame, until)
            self._bytes += len(frame)
        while done:  # forget the oldest while over a bound, or gone past its deadline
            first = next(iter(done))
            old, until = done[first]
            if len(done) <= self.max_calls and self._bytes <= self.max_bytes and until > now:
                break
            done.popitem(last=False)
            self._bytes -= len(old)

    def abandon(self, key: Key) -> None:
        """The call ended without a reply (cancelled): copies that joined it get None (and
        send nothing: their caller sees silence, as the first's does); a later copy runs."""
        running = self._running.pop(key, None)
        if running is not None and running.waiters:
            for fut in running.waiters:
                if not fut.done():
                    fut.set_result(None)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def remembered(self) -> int:
        return len(self._done)
