"""Running exported functions: stores, instances, limits and failures.

An :class:`Invoker` serves calls to one loaded component with fixed
:class:`~trellis.host.runtime.settings.Limits`, WASI grants and reuse policy. Per
call it

1. resolves the function address and lowers the plain arguments through the
   codec (a bad argument fails before any wasm runs);
2. takes a warm instance or instantiates a fresh one: a new ``Store`` with
   its own WASI context (deny-by-default), memory cap, fuel and epoch
   deadline, instantiated by the component's linker, which is built once;
3. calls the function with the invocation's import handler installed, and
   lifts the result to a plain value.

Every failure surfaces as an :class:`~trellis.host.runtime.errors.InvocationError`
whose ``kind`` says what happened; the failed instance is discarded and the
invoker keeps serving. An ``Invoker`` may be used from several threads: a
warm instance serves one call at a time and a concurrent (or re-entrant)
call gets a fresh instance of its own.

A call may also run *inline*, on a thread that must not wait (the worker's
event loop): it never blocks on the lock that serialises instance creation
and disposal (:class:`~trellis.host.runtime.errors.Reroute` instead, to be run again
on a thread), and an instance it cannot drop at once is dropped by the next
call that can.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime

from trellis.interfaces.resources import unversioned
from trellis.interfaces.wasm_limits import MAX_BYTES_PER_CALL

from . import gil_hold, native_values
from .call import Lifted, PlainArg
from .codec import CodecError, Plain, from_plain, to_plain
from .component import FunctionInfo, FunctionNotFound, LoadedComponent
from .errors import (
    ErrorKind,
    InvocationError,
    Reroute,
)
from .failures import invocation_failure
from .imports import (
    CURRENT_CALL,
    HTTP_HANDLER,
    REQUEST_BODY,
    CallContext,
    ImportHandler,
    ResourceTable,
    build_linker,
    deny_all,
    is_wasip2_interface,
)
from .instance import FdStderrTail, Live, StderrTail
from .probe import CallProbe
from .settings import Limits, ReusePolicy, WasiGrants
from .wasi_http import AS_500, TRELLIS_HANDLE, WasiHttpExport, as_response, claim_exchange, end_stream, find_handler
from .wasi_http.binding import DIRECT as direct_function
from .wasi_http.io import OutOfTime
from .wasi_http.types import ResponseOutparam

__all__ = ["Invoker", "InvokerStats"]

_UNLIMITED_FUEL = 2**63 - 1


@dataclass
class InvokerStats:
    """Counters for tests and metrics."""

    instantiations: int = 0
    calls: int = 0
    failures: int = 0
    #: instances dropped (instantiations - dropped: instances alive now)
    dropped: int = 0


class Invoker:
    """Calls exported functions of one component under fixed settings."""

    def __init__(
        self,
        loaded: LoadedComponent,
        *,
        limits: Limits | None = None,
        grants: WasiGrants | None = None,
        reuse: ReusePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        lifecycle_lock: threading.Lock | threading.RLock | None = None,
    ) -> None:
        self.loaded = loaded
        #: when given, instances are created and dropped one at a time (see Worker.lifecycle_lock)
        self._lifecycle = lifecycle_lock
        self.engine = loaded.engine
        self.limits = limits or Limits()
        self.grants = grants or WasiGrants()
        self.reuse = reuse or ReusePolicy()
        self.stats = InvokerStats()
        self._clock = clock
        #: a wasi:http proxy component (no trellis:http handler): serves the trellis:http address itself
        self._wasi_http: WasiHttpExport | None = None
        if find_handler(loaded) is not None and not any(
                fn.interface is not None and (unversioned(fn.interface), fn.name) == HTTP_HANDLER
                for fn in loaded.all_exported()):
            self._wasi_http = WasiHttpExport(loaded, inherit_stderr=self.grants.inherit_stderr,
                                             inherit_stdout=self.grants.inherit_stdout)
            self.reuse = self._wasi_http.reuse_policy(self.reuse)  # StarlingMonkey's: one request an instance
        shadow = self._wasi_http.shadow if self._wasi_http is not None else frozenset()
        #: whether the component imports WASI p2: a store gets a WASI context only then (each costs a
        #: ``WasiConfig``, its stderr callback and ``set_wasi`` per instance)
        self.uses_wasi = bool(shadow) or any(is_wasip2_interface(n) for n in loaded.imports.interfaces)
        self._linker = build_linker(self.engine, loaded, shadow, direct_function if shadow else None,
                                    wasi=self.uses_wasi)
        self._fuel = _UNLIMITED_FUEL if self.limits.fuel is None else self.limits.fuel
        self._metered = self.engine.settings.consume_fuel
        if self.limits.fuel is not None and not self._metered:
            raise ValueError("a fuel limit needs an engine with consume_fuel=True")
        self._deadline_ticks = self.engine.deadline_ticks(self.limits.timeout_s)
        #: exports whose calls may append a response body (trellis:http/response-body)
        self._http_handlers = frozenset(
            fn for fn in loaded.all_exported()
            if fn.interface is not None and (unversioned(fn.interface), fn.name) == HTTP_HANDLER)
        #: whether the component reads large request bodies in pieces (trellis:http/request-body)
        self._reads_body = any(unversioned(n) == REQUEST_BODY for n in loaded.imports.interfaces)
        #: idle warm instances, most recently used last (a pool: concurrent calls each keep theirs)
        self._idle: list[Live] = []
        self._lock = threading.Lock()
        self._closed = False
        #: export types read once per component (see Live.func)
        self._types: dict[FunctionInfo, tuple[list[Any], Any]] = {}
        #: instances an inline call could not drop (the lifecycle lock was taken): dropped later
        self._orphans: list[Live] = []
        #: per export, its parameters' native writers (``native_values``; None: the codec's way)
        self._writers: dict[FunctionInfo, list[Any]] = {}

    # -- public -----------------------------------------------------------

    def invoke(
        self,
        function: str | FunctionInfo,
        args: Sequence[Plain] = (),
        handler: ImportHandler = deny_all,
        *,
        timeout_s: float | None = None,
        inline: bool = False,
        probe: CallProbe | None = None,
    ) -> Plain:
        """Call ``function`` with plain ``args``; return the plain result.

        ``timeout_s`` shortens this call's deadline (the caller's own deadline, when the call is
        nested in another component's import); it never extends ``Limits.timeout_s``.
        ``inline``: the calling thread must not wait on other threads (see the module's notes).
        Raises :class:`InvocationError` for every failure, and :class:`Reroute` when the call
        must run again elsewhere (raised by the handler, or for ``inline`` calls).
        ``probe``, when given, is filled in with what the call cost (``probe.py``).
        """
        if self._closed:
            raise RuntimeError("invoker is closed")
        ticker = self.engine.enter()  # the epoch ticker may stop once no call runs
        if probe is None:
            try:
                return self._invoke(function, args, handler, timeout_s, inline, None)
            finally:
                self.engine.leave(ticker)
        probe.begin()
        slot: list[Live] = []
        try:
            return self._invoke(function, args, handler, timeout_s, inline, slot)
        finally:
            self.engine.leave(ticker)
            touched = probe.end()
            if slot:
                live = slot[0]
                live.touched += touched
                probe.memory_bytes = live.touched
                probe.cold = live.calls <= 1
                if self._metered:
                    probe.fuel = live.fuel_used
            else:
                probe.memory_bytes = touched

    def _invoke(self, function: str | FunctionInfo, args: Sequence[Plain], handler: ImportHandler,
                timeout_s: float | None, inline: bool, slot: list[Live] | None) -> Plain:
        if self._wasi_http is not None and function in TRELLIS_HANDLE:
            return self._serve_wasi_http(args, handler, timeout_s, inline, slot)
        fn = self._resolve(function)
        takes_body = fn in self._http_handlers
        withheld = b""
        if takes_body:
            args, withheld = self._withhold_body(args)
        lowered = self._lower_args(fn, args)
        ctx = CallContext(handler=handler, table=ResourceTable(), takes_body=takes_body, request_body=withheld)
        ticks = self._deadline_ticks
        if timeout_s is not None:
            ticks = min(ticks, self.engine.deadline_ticks(max(timeout_s, 0.0)))
        live, fresh = self._acquire(ctx, ticks, inline)
        if not fresh:
            self._arm(live.store, ticks)  # a warm instance gets this call's budgets
        ctx.table = live.table
        if slot is not None:
            slot.append(live)
        keep = False
        try:
            raw = self._call(live, fn, lowered, ctx)
            keep = True
        finally:
            if slot is not None and self._metered:
                live.fuel_used = self._fuel_used(live)
            self._release(live, keep, inline)
        result = raw.value if raw.__class__ is Lifted else self._lift_result(fn, raw)
        if ctx.body and isinstance(result, dict):  # trellis:http/response-body.append's pieces come first
            result["body"] = b"".join([*ctx.body, bytes(result.get("body") or b"")])
        return result

    @property
    def serves_wasi_http(self) -> bool:
        """Whether this is a wasi:http proxy component, called with the trellis:http address."""
        return self._wasi_http is not None

    def _serve_wasi_http(self, args: Sequence[Plain], handler: ImportHandler, timeout_s: float | None,
                         inline: bool, slot: list[Live] | None = None) -> Plain:
        """One HTTP request (the trellis:http record) through ``wasi:http/incoming-handler.handle``
        (:mod:`trellis.host.runtime.wasi_http`): the response record; a trap or an unset outparam is a 500."""
        wasi = self._wasi_http
        assert wasi is not None
        if len(args) != 1:
            raise InvocationError(ErrorKind.BAD_ARGUMENT, "trellis:http/incoming-handler.handle takes 1 argument")
        budget = self.limits.timeout_s if timeout_s is None else (
            timeout_s if self.limits.timeout_s is None else min(timeout_s, self.limits.timeout_s))
        ctx = CallContext(handler=wasi.handler(handler), table=ResourceTable(), inline=inline,
                          deadline=None if budget is None else time.monotonic() + budget)
        ticks = self._deadline_ticks
        if timeout_s is not None:
            ticks = min(ticks, self.engine.deadline_ticks(max(timeout_s, 0.0)))
        live, fresh = self._acquire(ctx, ticks, inline)
        if not fresh:
            self._arm(live.store, ticks)
        if budget is not None:
            ctx.progress = self._restarter(ctx, live.store, budget, ticks)
        ctx.table = live.table
        ctx.stderr = live.stderr.write if live.stderr is not None else None
        if slot is not None:
            slot.append(live)
        keep = False
        failure: InvocationError | None = None
        exchange = None if inline else claim_exchange()  # an inline call is buffered: it may run again
        out: ResponseOutparam | None = None
        try:
            lowered, out = wasi.lower(live.table, args[0], exchange)
            try:
                self._call(live, wasi.function, lowered, ctx)
                keep = out.response is not None
            except InvocationError as e:
                if isinstance(ctx.failure, OutOfTime):
                    e = InvocationError(ErrorKind.TIMEOUT, f"deadline of {budget}s exceeded ({ctx.failure})",
                                        detail=e.detail)
                if e.kind not in AS_500:
                    raise e from None
                failure = e
            end_stream(out, failure, wasi.function.address)  # before the instance is dropped or kept
        except BaseException as e:
            if out is not None:
                end_stream(out, e, wasi.function.address)
            raise
        finally:
            ctx.handler.close()  # type: ignore[attr-defined]  # a WasiHttpHandler: its outgoing streams end with the call
            if slot is not None and self._metered:
                live.fuel_used = self._fuel_used(live)
            self._release(live, keep, inline)
        assert out is not None
        return as_response(out, failure, wasi.function.address)

    def _restarter(self, ctx: CallContext, store: wasmtime.Store, budget: float, ticks: int) -> Callable[[], None]:
        """A wasi:http handler's deadline is an idle budget: whenever a body stream moves (a piece of
        the request read, of the response taken, of an outgoing body), it starts again, both the
        host's waits' (``ctx.deadline``) and the epoch's that stops Wasm. At most every eighth of the
        budget, so the streams' calls mostly pay a clock read."""
        step = budget / 8
        last = time.monotonic()
        engine = self.engine

        def progress() -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < step:
                return
            last = now
            ctx.deadline = now + budget
            gil_hold.set_deadline(store, engine, ticks)
            engine.arm(ticks)
        return progress

    def close(self) -> None:
        """Drop the warm instances and refuse further calls. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            idle += self._orphans
            self._orphans = []
        for live in idle:
            live.close()
        self._dropped(len(idle))

    @property
    def live_instances(self) -> int:
        """Instances that exist now: running a call, or warm."""
        return self.stats.instantiations - self.stats.dropped

    def _dropped(self, n: int) -> None:
        if n:
            with self._lock:
                self.stats.dropped += n

    def drop_idle(self) -> int:
        """Drop the warm instances idle longer than ``max_idle_s``; how many were dropped.

        Called periodically by the worker, so a component nobody calls holds no instance
        (scale to zero) instead of keeping its warm ones until the next call.
        """
        self._drop_orphans()
        limit = self.reuse.max_idle_s
        if limit is None or not self._idle:
            return 0
        now = self._clock()
        with self._lock:
            stale = [w for w in self._idle if now - w.last_used > limit]
            if not stale:
                return 0
            self._idle = [w for w in self._idle if now - w.last_used <= limit]
        for live in stale:
            live.close()
        self._dropped(len(stale))
        return len(stale)

    @property
    def parkable(self) -> bool:
        """Whether its compiled code can be dropped while idle (``parking.py``)."""
        return self.loaded.parkable

    @property
    def parked(self) -> bool:
        return self.loaded.parked

    def park(self) -> bool:
        """Drop the component's compiled code while no instance exists (``parking.py``); the next
        instantiation loads it again. Whether it was dropped."""
        lock = self._lifecycle
        if lock is not None:
            lock.acquire()
        try:
            with self._lock:
                if self._closed or self._idle or self._orphans or self.live_instances:
                    return False
                self._types.clear()  # read from the old code's functions
                return self.loaded.park()
        finally:
            if lock is not None:
                lock.release()

    @property
    def has_orphans(self) -> bool:
        """Instances an inline call could not drop at once (the lifecycle lock was taken)."""
        return bool(self._orphans)

    @property
    def has_warm_instance(self) -> bool:
        return bool(self._idle or self._orphans)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- steps --------------------------------------------------------------

    def _resolve(self, function: str | FunctionInfo) -> FunctionInfo:
        if isinstance(function, FunctionInfo):
            return function
        try:
            return self.loaded.function(function)
        except FunctionNotFound as e:
            raise InvocationError(ErrorKind.NOT_FOUND, str(e)) from None

    def _withhold_body(self, args: Sequence[Plain]) -> tuple[Sequence[Plain], bytes]:
        """An HTTP request whose body is more than one call carries into Wasm: passed with an empty
        body, the body kept for ``trellis:http/request-body.read``; or refused as too large when the
        component does not read bodies in pieces."""
        request = args[0] if len(args) == 1 else None
        if not isinstance(request, dict):
            return args, b""
        body = request.get("body")
        if not isinstance(body, (bytes, bytearray)) or len(body) <= MAX_BYTES_PER_CALL:
            return args, b""
        if not self._reads_body:
            raise InvocationError(
                ErrorKind.REQUEST_TOO_LARGE,
                f"the request body of {len(body)} bytes is more than one call carries into Wasm "
                f"({MAX_BYTES_PER_CALL} bytes); a component reads a larger one with {REQUEST_BODY}")
        return [{**request, "body": b""}], bytes(body)

    def _lower_args(self, fn: FunctionInfo, args: Sequence[Plain]) -> list[object]:
        if len(args) != len(fn.params):
            names = [n for n, _ in fn.params]
            raise InvocationError(
                ErrorKind.BAD_ARGUMENT,
                f"{fn.address} takes {len(fn.params)} argument(s) {names}, got {len(args)}",
            )
        writers = self._writers.get(fn)
        if writers is None:
            writers = self._writers[fn] = [native_values.lowerer(t) for _, t in fn.params]
        try:
            out: list[object] = []
            for i, ((_, t), a, w) in enumerate(zip(fn.params, args, writers, strict=False)):
                # written in C when it is in the form the codec takes as it is (native_values), else
                # from the plain form in Python when it can be (call.PlainArg), else the codec's way
                lowered = None if w is None else native_values.lower(w, a)
                out.append(lowered or PlainArg.of(t, a) or from_plain(t, a, path=f"args[{i}]"))
            return out
        except CodecError as e:
            raise InvocationError(ErrorKind.BAD_ARGUMENT, str(e)) from None

    def _lift_result(self, fn: FunctionInfo, raw: object) -> Plain:
        if fn.result is None:
            return None
        try:
            return to_plain(fn.result, raw, path="result")
        except CodecError as e:
            raise InvocationError(ErrorKind.BAD_RESULT, str(e)) from None

    def _acquire(self, ctx: CallContext, ticks: int | None = None, inline: bool = False) -> tuple[Live, bool]:
        """A warm instance if one is idle, else a fresh one; and which."""
        stale: list[Live] = []
        found: Live | None = None
        with self._lock:
            idle_limit = self.reuse.max_idle_s
            now = self._clock()
            while self._idle:
                live = self._idle.pop()
                if idle_limit is not None and now - live.last_used > idle_limit:
                    stale.append(live)
                    continue
                live.busy = True
                found = live
                break
            if idle_limit is not None:  # older ones below are staler still
                keep = [w for w in self._idle if now - w.last_used <= idle_limit]
                stale += [w for w in self._idle if now - w.last_used > idle_limit]
                self._idle = keep
        for live in stale:
            self._drop(live, inline)
        if found is not None:
            return found, False
        return self._instantiate(ctx, ticks, inline), True

    def _release(self, live: Live, healthy: bool, inline: bool = False) -> None:
        with self._lock:
            live.calls += 1
            live.last_used = self._clock()
            reusable = healthy and not self._closed and live.calls < self.reuse.max_invocations
            if reusable and len(self._idle) < self.reuse.max_warm:
                live.busy = False
                self._idle.append(live)
                return
        self._drop(live, inline)

    def _drop(self, live: Live, inline: bool) -> None:
        """Close ``live``; an inline caller leaves it for later if the lifecycle lock is taken."""
        if live.close(wait=not inline):
            self._dropped(1)
            return
        with self._lock:
            self._orphans.append(live)

    def _drop_orphans(self) -> None:
        if not self._orphans:
            return
        with self._lock:
            orphans, self._orphans = self._orphans, []
        for live in orphans:
            live.close()
        self._dropped(len(orphans))

    def _new_store(self) -> tuple[wasmtime.Store, StderrTail | None]:
        store = wasmtime.Store(self.engine.engine)
        tail: StderrTail | None = None
        hold = gil_hold.possible(self.engine)  # its calls may keep the GIL: stderr kept without it
        if self.uses_wasi:
            wasi = self.grants.wasi_config()
            if not self.grants.inherit_stderr:
                if hold:
                    tail = FdStderrTail()
                    tail.attach(wasi)
                else:
                    tail = StderrTail()
                    wasi.stderr_custom = tail.write
            store.set_wasi(wasi)  # required before instantiating with add_wasip2()
        if hold:
            gil_hold.safe(store, tail if isinstance(tail, FdStderrTail) else None)
        if self.limits.memory_bytes is not None:
            store.set_limits(memory_size=self.limits.memory_bytes)
        return store, tail

    def _fuel_used(self, live: Live) -> int | None:
        try:
            return self._fuel - live.store.get_fuel()
        except wasmtime.WasmtimeError:
            return None

    def _arm(self, store: wasmtime.Store, ticks: int | None = None) -> None:
        """Give the store this call's fuel and deadline. A fresh instance is
        armed once, so instantiation counts against the call's budgets."""
        if self._metered:
            store.set_fuel(self._fuel)
        ticks = self._deadline_ticks if ticks is None else ticks
        gil_hold.set_deadline(store, self.engine, ticks)
        self.engine.arm(ticks)  # the epoch ticker runs while a deadline may be pending

    def _instantiate(self, ctx: CallContext, ticks: int | None = None, inline: bool = False) -> Live:
        if self._orphans and not inline:
            self._drop_orphans()
        lock = self._lifecycle
        if lock is not None and not lock.acquire(blocking=not inline):
            raise Reroute("another thread is creating or dropping an instance", sticky=False)
        try:
            # A parked component's code is loaded again before the call's deadline is armed: that takes
            # milliseconds (tens on a loaded machine) that are not the call's. Counted in, an inline
            # call (a budget of 20 ms) ran past its budget and was run again on a Wasm thread: the
            # first request after idle paid for the guest twice.
            component = self.loaded.component
            store, tail = self._new_store()
            ctx.stderr = tail.write if tail is not None else None
            self._arm(store, ticks)
            token = CURRENT_CALL.set(ctx)
            try:
                instance = self._linker.instantiate(store, component)
            except wasmtime.WasmtimeError as e:
                store.close()
                self.stats.failures += 1
                raise self._failure(e, ctx, tail, instantiating=True) from None
            finally:
                CURRENT_CALL.reset(token)
            # counted before the lock goes: parking (park()) sees this instance and keeps the code
            self.stats.instantiations += 1
        finally:
            if lock is not None:
                lock.release()
        return Live(store, instance, ctx.table, tail, busy=True, lifecycle=lock)

    def _call(self, live: Live, fn: FunctionInfo, lowered: list[object], ctx: CallContext) -> object:
        func = live.func(self.loaded, fn, self._types)
        token = CURRENT_CALL.set(ctx)
        self.stats.calls += 1
        try:
            return func(live.store, *lowered)
        except Exception as e:
            self.stats.failures += 1
            raise self._failure(e, ctx, live.stderr, instantiating=False) from None
        finally:
            CURRENT_CALL.reset(token)

    # -- failures -----------------------------------------------------------

    def _failure(self, error: Exception, ctx: CallContext, tail: StderrTail | None, *,
                 instantiating: bool) -> InvocationError | Reroute:
        return invocation_failure(error, ctx, tail, instantiating=instantiating, limits=self.limits,
                                  stack_bytes=self.engine.settings.max_wasm_stack_bytes)
