"""Running one call of a served component: on the event loop or a Wasm thread, and its record.

Every way a call enters a worker (its RPC server, a co-located call, an HTTP
request on a handed connection) ends in :meth:`Calls.invoke` or, on a thread
already, :meth:`Calls.execute`. Where it runs is :mod:`.dispatch`'s decision;
this module acts on it: the inline run and its reroute (``inline.py``), the Wasm
thread pool and its size, the import handler a call gets, and the invocation
record handed to observers (``records.py``). A failure reaches the caller as the
``RpcError`` the remote path gives (:func:`as_rpc_error`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from trellis.host.runtime import CallProbe, ImportHandler, InvocationError, Reroute, deny_all
from trellis.interfaces import tracing
from trellis.interfaces.envelope import Invocation
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.rpc_client import RpcError
from trellis.interfaces.serving import error_of

from . import dispatch, inline
from .colocated import WASM_THREAD_STACK
from .records import VIA_RPC, Observers, build
from .wasm_threads import WasmThreads

if TYPE_CHECKING:
    from .imports import ImportRouter
    from .registry import Served
    from .taps import Taps

log = logging.getLogger("trellis.worker")

_CODES = {
    "missing_link": ErrorCode.MISSING_LINK,
    "bad_argument": ErrorCode.BAD_REQUEST,
    "not_found": ErrorCode.NOT_FOUND,
}


class Calls:
    """Runs the calls of one worker's components (see the module doc)."""

    def __init__(self, host_id: str, index: int, threads: int, inline_budget_s: float | None,
                 measure: bool, observers: Observers) -> None:
        self.host_id = host_id
        self.index = index
        self.threads = threads
        #: how long a call may hold the event loop (None: never run calls there)
        self.inline_budget_s = inline_budget_s
        #: per-call figures wanted (tuning.process.metrics): every call gets a probe and a record
        self.measure = measure
        self.observers = observers
        # nested co-located calls stack one store's Wasm (up to 512 KiB each) per level on a thread
        threading.stack_size(WASM_THREAD_STACK)
        self.executor = WasmThreads(threads, name_prefix="wasm")
        #: set once the worker is connected
        self.imports: ImportRouter | None = None
        self.taps: Taps | None = None

    def ensure_threads(self, admitted: int) -> None:
        """Enough threads for every admitted call at once: a call waiting in an import (on another
        component, maybe on this worker) holds its thread, so fewer threads than admitted calls
        could starve the very calls it waits for. Idle threads cost nothing; they start lazily."""
        self.executor.grow(max(self.threads, admitted + 1))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def handler(self, served: Served, inv: Invocation, trace: dict[str, str] | None = None) -> ImportHandler:
        """The import handler for one call of ``served``; its lattice calls carry ``trace``, by
        default the current span's (the call's server span, on the loop or on a Wasm thread)."""
        if not served.needs_handler:
            return deny_all
        assert self.imports is not None
        if trace is None and served.lattice_imports:
            trace = tracing.inject()
        taps = self.taps
        spy = taps if taps is not None and taps.spying and taps.spied(served.component_id) else None
        return self.imports.handler_for(served.component_id, inv, served.invoker.loaded, served.local,
                                        trace=trace, counts=served.link_calls, spy=spy, app=served.app)

    @staticmethod
    def execute(served: Served, inv: Invocation, handler: ImportHandler, timeout_s: float | None = None,
                probe: CallProbe | None = None) -> Any:
        """Run one call on this thread; failures as the ``RpcError`` its caller gets."""
        try:
            return served.invoker.invoke(inv.operation, inv.args, handler, timeout_s=timeout_s, probe=probe)
        except Exception as exc:
            raise as_rpc_error(served, inv, exc, timeout_s) from None

    def probe(self) -> CallProbe | None:
        """A probe for one call when anybody wants its record: the call tally (unless
        tuning.process.metrics is off), or a spy or the dashboard while they watch; else None:
        nothing is measured and no record is made."""
        if self.measure:
            return CallProbe()
        taps = self.taps
        if taps is not None and (taps.spying or taps.traffic_until):
            return CallProbe()
        return None

    def record(self, served: Served, inv: Invocation, via: str, ran_inline: bool, probe: CallProbe | None,
               start: float, t0: float, exc: BaseException | None = None, result: Any = None) -> None:
        """Hand the record of a finished call to the observers (``records.py``), and with its
        arguments and ``result`` to the spy tap when the component is spied on (``taps.py``)."""
        if probe is not None:
            record = build(served, inv, self.host_id, self.index, via, ran_inline, probe, start, t0, exc)
            self.observers.emit(record)
            taps = self.taps
            if taps is not None and taps.spying:
                taps.served(record, inv.args, result, exc)

    def run_inline(self, served: Served, inv: Invocation, probe: CallProbe | None = None) -> Any:
        """Run one call on the event loop (``inline.py``); ``Reroute`` when it needs a thread."""
        assert self.inline_budget_s is not None
        overruns = served.overruns
        try:
            result = inline.run(served, inv, self.inline_budget_s, probe)
        except Reroute as why:
            served.inline_stats["rerouted"] += 1
            overrun = isinstance(why, inline.BudgetOverrun)
            stick, count = dispatch.after_reroute(why.sticky, overrun, overruns.get(inv.operation, 0),
                                                  inline.OVERRUNS_TO_STICK)
            if overrun:
                overruns[inv.operation] = count
            if stick:
                served.needs_thread.add(inv.operation)
                log.debug("%s %s runs on a Wasm thread from now on: %s", served.component_id,
                          inv.operation, why.reason)
            raise
        except Exception as exc:
            if overruns:
                overruns.pop(inv.operation, None)
            raise as_rpc_error(served, inv, exc, inv.remaining_s()) from None
        if overruns:
            overruns.pop(inv.operation, None)
        served.inline_stats["served"] += 1
        return result

    async def invoke(self, served: Served, inv: Invocation, timeout_s: float | None = None,
                     via: str = VIA_RPC, thread: bool = False) -> Any:
        """Run one call of ``served`` (its slot already taken): inline when it can, else on a Wasm
        thread, cut short after ``timeout_s``; failures as the ``RpcError`` its caller gets.
        ``via`` says how it came in, for its record (``records.py``); ``thread``: never inline
        (a request whose body is still arriving: the loop feeds it)."""
        probe = self.probe()
        start, t0 = time.time(), time.perf_counter()
        ran_inline = False
        try:
            if not thread and dispatch.entry(served.inline, inv.operation in served.needs_thread,
                                             served.inline and inline.heavy(inv.args)) is dispatch.INLINE:
                ran_inline = True
                try:
                    result = self.run_inline(served, inv, probe)
                except Reroute:
                    ran_inline = False  # cut short before anything left the instance: run it again on a thread
                else:
                    self.record(served, inv, via, True, probe, start, t0, result=result)
                    return result
            # calls this invocation makes are children of its server span (the current context here)
            handler = self.handler(served, inv)
            # the Wasm thread runs in this context: its log lines carry the call's trace and span ids
            result = await self.executor.run(asyncio.get_running_loop(), contextvars.copy_context().run,
                                             self.execute, served, inv, handler, timeout_s, probe)
        except BaseException as exc:
            self.record(served, inv, via, ran_inline, probe, start, t0, exc)
            raise
        self.record(served, inv, via, False, probe, start, t0, result=result)
        return result


def as_rpc_error(served: Served, inv: Invocation, exc: Exception, timeout_s: float | None) -> RpcError:
    """A failed call as the ``RpcError`` its caller gets: the Wasm runtime's errors here, the
    rest as every way of serving a call maps them (``serving.error_of``)."""
    cid, operation = served.component_id, inv.operation
    if isinstance(exc, InvocationError):
        kind = exc.kind.value
        if kind == "timeout" and timeout_s is not None and inv.remaining_s() <= 0:
            # the caller's deadline, not the component's timeout: as the RPC client reports it
            return RpcError(f"call to {inv.target} {operation} timed out", ErrorCode.TIMEOUT, "timeout")
        return RpcError(f"{cid}: {exc.message}", _CODES.get(kind, ErrorCode.INVOCATION_FAILED), kind)
    if isinstance(exc, LookupError):  # unknown function
        return RpcError(f"{cid}: {exc}", ErrorCode.NOT_FOUND, "no_such_function")
    if isinstance(exc, (ValueError, TypeError)):  # arguments that do not fit the WIT types
        return RpcError(f"{cid}: bad arguments for {operation}: {exc}", ErrorCode.BAD_REQUEST, "bad_arguments")
    return error_of(exc, inv)
