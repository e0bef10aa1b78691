"""Inline calls: a short call runs on the worker's event-loop thread, with no Wasm thread.

Handing a call to a Wasm thread and its result back to the loop costs two thread
switches and as many GIL hand-offs, and while two threads of the process are
busy, dropping an instance (unmapping its memory) interrupts the other core too
(a TLB shootdown). A call that needs nothing from the loop can run on the loop
itself: measured on the single-component benchmark, fresh instances 466 → 660
req/s and reused ones 1,740 → 2,790 (docs/performance.md).

A call runs inline when

* its component can be run again from the start with nobody the wiser: it has
  no preopened directories and no inherited stdout/stderr, so the only way out
  of its instance is through imports; and
* its function has not yet been seen to need a thread (below); and
* its arguments carry at most :data:`INLINE_ARG_BYTES` (:func:`heavy`): bytes cross into
  Wasm in host code, ~0.25 s a MiB, that the epoch deadline cannot cut short, so a
  2.7 MB request body held the loop for 1-2 s on a loaded machine, past the caller's
  silence window (no progress frames): it sent the call again, and again, until the
  worker was a slow consumer NATS cut off.

It is run again on a Wasm thread (:class:`~trellis.host.runtime.Reroute`), before
anything left the instance, when it

* calls an import answered over the lattice (a provider, another component):
  the loop cannot wait for itself. Logging and runtime config are answered
  inline; log lines are held until the call ends, so a call run again logs once;
* runs past the inline budget (``calls.inline_budget_ms`` of ``host/tuning.py``,
  ``TRELLIS_INLINE_BUDGET_MS``, default 20 ms):
  other calls on this worker must not wait behind it. The loop is blocked at
  most the budget plus one epoch tick (10 ms);
* needs a new instance while a Wasm thread is creating or dropping one (the
  lock between them): this one is not remembered.

After the first, that function of that component always runs on a Wasm thread
(until it is loaded again); after the second, once it ran past the budget
:data:`OVERRUNS_TO_STICK` times in a row. One overrun alone says little: on a
busy machine a call of a millisecond can be descheduled past the budget, and
were that remembered, a function would leave the loop for good by chance (seen
on the benchmark as whole runs at two thirds of the speed). A run cut short
costs its CPU once; its instance is dropped. ``TRELLIS_INLINE_CALLS=0`` turns
inline calls off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trellis.host.runtime import ErrorKind, InvocationError, Reroute, WasiGrants
from trellis.host.runtime.wasi_http.io import INLINE_BYTES

from .local import LocalImports

if TYPE_CHECKING:
    from trellis.host.runtime import CallProbe
    from trellis.interfaces.envelope import Invocation

    from ..tuning import CallPaths
    from .registry import Served

#: runs past the budget in a row after which a function stays on Wasm threads
OVERRUNS_TO_STICK = 3
#: arguments carrying more bytes than this run on a Wasm thread from the start (the bound wasi:http
#: bodies moved by an inline call have, ``INLINE_BYTES``)
INLINE_ARG_BYTES = INLINE_BYTES


class BudgetOverrun(Reroute):
    """The call ran past the inline budget (transient alone; the worker counts them)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, sticky=False)


def budget_s(calls: CallPaths) -> float | None:
    """The inline budget in seconds, or None when inline calls are off."""
    if not calls.inline_calls or calls.inline_budget_ms <= 0:
        return None
    return calls.inline_budget_ms / 1000.0


def heavy(args: list[Any]) -> bool:
    """Whether ``args`` carry more than :data:`INLINE_ARG_BYTES` in byte or text strings, counted
    at the top and one level down (an HTTP request record's body): a quick look, no walk."""
    n = 0
    for a in args:
        t = type(a)
        if t is bytes or t is str or t is bytearray:
            n += len(a)
        elif t is dict:
            for v in a.values():
                if type(v) is bytes or type(v) is str:
                    n += len(v)
        elif t is list:
            for v in a:
                if type(v) is bytes or type(v) is str:
                    n += len(v)
    return n > INLINE_ARG_BYTES


def eligible(grants: WasiGrants) -> bool:
    """Whether a component with these grants may be run again after a cut-short run."""
    return not (grants.preopens or grants.inherit_stdout or grants.inherit_stderr)


def run(served: Served, inv: Invocation, budget: float, probe: CallProbe | None = None) -> Any:
    """Run ``inv`` on this thread within ``budget`` seconds; raises :class:`Reroute` when it
    has to run on a Wasm thread instead, else what ``Invoker.invoke`` returns or raises."""
    local = served.local
    held: list[tuple[Any, ...]] = []

    def handler(interface: str, function: str, args: list[Any]) -> Any:
        if function.startswith("[resource-drop]"):
            return None  # as the lattice handler: handles are tokens, nothing to release
        if local is not None:
            done, value = local.serve(interface, function, args, held)
            if done:
                return value
        raise Reroute(f"{interface}.{function} is answered over the lattice")

    invoker = served.invoker
    remaining = inv.remaining_s()
    limit = invoker.limits.timeout_s
    own = remaining if limit is None else min(remaining, limit)  # the deadline it has anyway
    try:
        result = invoker.invoke(inv.operation, inv.args, handler, timeout_s=min(budget, remaining),
                                inline=True, probe=probe)
    except InvocationError as exc:
        if exc.kind is ErrorKind.TIMEOUT and budget < own:
            raise BudgetOverrun(f"ran past the inline budget of {budget * 1000:g} ms") from None
        LocalImports.emit(held)
        raise
    LocalImports.emit(held)
    return result
