"""The wasmtime engine every component in a worker runs on, and its epoch ticker.

An engine is configured once per worker process. Two settings are fixed
because the runtime depends on them: *epoch interruption* (deadlines) and
*fuel* (optional instruction budgets). Stores created on this engine must
therefore always be given an epoch deadline and some fuel, which
:mod:`trellis.host.runtime.invoke` does.

Deadlines are enforced by one background thread per engine that increments
the engine's epoch every ``tick_ms`` milliseconds. The thread is started on
first use and stopped by :meth:`RuntimeEngine.close`.

Instances are allocated on demand (each maps and unmaps its own memories and
tables), or, with ``EngineSettings.pool``, by wasmtime's *pooling allocator*
(:class:`InstancePool`): slots reserved once per engine and reset (``madvise``)
when an instance is dropped. Memories start from copy-on-write images of their
data segments (``memory_init_cow``), so a fresh instance maps its image instead
of copying it.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

__all__ = [
    "ALLOCATORS",
    "WASMTIME_VERSION",
    "EngineSettings",
    "InstancePool",
    "RuntimeEngine",
    "WasmtimeNotPatched",
    "engine_settings",
    "make_engine",
]

log = logging.getLogger(__name__)

WASMTIME_VERSION: str = version("wasmtime")
#: wasmtime's profiling strategy (``perfmap``, ``jitdump``, ``vtune``), for profiling guests
PROFILER_ENV = "TRELLIS_WASM_PROFILER"


_GIB = 1 << 30
_MIB = 1 << 20


@dataclass(frozen=True)
class InstancePool:
    """wasmtime's pooling instance allocator: the bounds of an engine's pool.

    The pool reserves *address space* for every slot when the engine is made
    (``max_memories`` × (``max_memory_bytes`` + guard pages): ~1 TiB with the
    defaults, of a process's 128 TiB); it uses no memory until an instance
    touches its pages, and a dropped instance's pages are given back
    (``madvise``), so resident memory (PSS) is that of the instances alive, as
    without the pool. An instantiation beyond a bound fails with kind
    ``instantiation`` and a message naming the bound.

    Attributes:
        max_component_instances: Component instances alive at once per engine
            (fresh ones running a call, warm ones kept by a reuse policy, nested
            co-located ones). 256: well above a worker's concurrency (its
            threads and inline calls, a component's ``max_instances``) plus the
            warm instances its components keep.
        max_core_instances: Core module instances alive at once. A
            componentize-py component is 14 core instances, so 20 per
            component instance: 5,120.
        max_memories: Linear memories alive at once; components made by
            componentize-py, componentize-js and wasm-tools have one each. 256.
        max_tables: Tables alive at once (a componentize-py component has 2). 512.
        max_memory_bytes: Largest linear memory a slot holds, in bytes. 4 GiB:
            every 32-bit memory fits, so ``Limits.memory_bytes`` stays the only
            cap a component meets; the slot reserves no more address space than
            wasmtime's default reservation per memory (4 GiB) anyway.
        max_table_elements: Elements a table may hold (a componentize-py
            component starts with ~5,700). 100,000 (800 KB of address space each).
        max_component_instance_bytes: wasmtime's bookkeeping (``VMComponentContext``
            and its core instances' contexts) per component instance, in bytes;
            ~400 KB for a componentize-py component. 8 MiB.
        max_unused_warm_slots: Slots kept holding a component's memory image
            after its instance is dropped, so the next instance of the same
            component maps nothing. 100: wasmtime's default.
        keep_resident_bytes: Bytes at the start of each dropped memory reset by
            ``memset`` instead of ``madvise`` (kept resident). 0: the pages a
            componentize-py call dirties are spread over its ~10 MiB heap image,
            so a resident prefix saved few page faults and cost more in ``memset``
            than it saved (measured: 1 MiB within the noise, 4 MiB +25 % CPU per
            fresh call).
    """

    max_component_instances: int = 256
    max_core_instances: int = 5120
    max_memories: int = 256
    max_tables: int = 512
    max_memory_bytes: int = 4 * _GIB
    max_table_elements: int = 100_000
    max_component_instance_bytes: int = 8 * _MIB
    max_unused_warm_slots: int = 100
    keep_resident_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("max_component_instances", "max_core_instances", "max_memories", "max_tables",
                     "max_memory_bytes", "max_table_elements", "max_component_instance_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"InstancePool.{name} must be positive")
        if self.max_unused_warm_slots < 0 or self.keep_resident_bytes < 0:
            raise ValueError("InstancePool.max_unused_warm_slots and keep_resident_bytes must be >= 0")

    def apply(self, config: wasmtime.Config) -> None:
        """Make ``config`` allocate from this pool (wasmtime's C API: wasmtime-py has no wrapper)."""
        from wasmtime import _ffi as ffi

        pool = ffi.wasmtime_pooling_allocation_config_new()
        try:
            ffi.wasmtime_pooling_allocation_config_total_component_instances_set(pool, self.max_component_instances)
            ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, self.max_core_instances)
            ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, self.max_memories)
            ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, self.max_tables)
            ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, self.max_memory_bytes)
            ffi.wasmtime_pooling_allocation_config_table_elements_set(pool, self.max_table_elements)
            ffi.wasmtime_pooling_allocation_config_max_component_instance_size_set(
                pool, self.max_component_instance_bytes)
            ffi.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pool, self.max_unused_warm_slots)
            ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, self.keep_resident_bytes)
            # fiber stacks serve async calls only, which wasmtime-py never makes; wasmtime's default (1000)
            # would map 2,000 regions (stacks and their guards) per engine, of a process's 65,530
            ffi.wasmtime_pooling_allocation_config_total_stacks_set(pool, 0)
            ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)  # copies the settings
        finally:
            ffi.wasmtime_pooling_allocation_config_delete(pool)


@dataclass(frozen=True)
class EngineSettings:
    """Engine-wide settings; changing any of them needs a new engine.

    Attributes:
        max_wasm_stack_bytes: Wasm stack budget per call, in bytes. Deep
            recursion beyond it traps with ``stack_overflow``. 512 KiB is
            wasmtime's default and plenty for ordinary components.
        epoch_tick_ms: Period of the epoch ticker, in milliseconds. This is
            the resolution of invocation deadlines: a deadline fires between
            ``timeout`` and ``timeout + tick`` after it was set. 10 ms keeps
            the ticker's cost negligible.
        parallel_compilation: Let cranelift compile on several threads.
        consume_fuel: Meter instructions so ``Limits.fuel`` can be enforced.
            Metering slows every instruction and every call (~7 % of a
            reused call's CPU), so hosts keep a metered engine only for
            components that ask for a fuel budget.
        pool: Allocate instances from wasmtime's pooling allocator with these
            bounds; ``None`` (the default) allocates each instance's memories
            and tables on demand (``mmap``/``munmap`` per instance). On demand
            by default: the pool measured no lower CPU per fresh or reused call
            here (docs/performance.md, "Cheaper instances"), and it bounds the
            instances alive per engine and reserves ~1 TiB of address space.
        memory_init_cow: Start linear memories from copy-on-write mappings of
            their initial image instead of copying the data segments into each
            new instance. On (wasmtime's default): a componentize-py component's
            ~10 MiB heap image made instantiation 20× dearer when copied.
        profiler: wasmtime's profiling strategy (``perfmap``, ``jitdump``,
            ``vtune``) so that perf names the guest's functions; ``None``
            (the default) profiles nothing. An unknown name is logged and
            ignored. A worker takes it from ``tuning.wasm.profiler``
            (``TRELLIS_WASM_PROFILER``, host/tuning.py).
    """

    max_wasm_stack_bytes: int = 512 * 1024
    epoch_tick_ms: int = 10
    parallel_compilation: bool = True
    consume_fuel: bool = True
    pool: InstancePool | None = None
    memory_init_cow: bool = True
    profiler: str | None = None

    def cache_tag(self) -> str:
        """Settings that affect compiled code, for compile-cache keys."""
        # epoch interruption and fuel change generated code; the stack limit
        # does not but is cheap to include and keeps the key conservative.
        return f"epoch=1,fuel={int(self.consume_fuel)},stack={self.max_wasm_stack_bytes}"


#: names of the instance allocators (``HostSettings.instance_allocator``), the default first
ALLOCATORS = ("on-demand", "pooling")


def engine_settings(allocator: str = "on-demand", **overrides: object) -> EngineSettings:
    """Engine settings with the named instance allocator (``on-demand``: none; ``pooling``:
    the default :class:`InstancePool`). A bad name is a one-line ``ValueError``."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"instance allocator {allocator!r}: expected one of {', '.join(ALLOCATORS)}")
    pool = InstancePool() if allocator == "pooling" else None
    return EngineSettings(pool=pool, **overrides)  # type: ignore[arg-type]  # overrides are EngineSettings fields


class _EpochTicker:
    """Daemon thread that increments an engine's epoch every ``period_s`` while a deadline is armed.

    Ticks are needed only while some store may run with a deadline: each call arms its store
    (:meth:`RuntimeEngine.arm`) with a deadline of N ticks, and the thread goes on until it has
    made those N ticks (counted, not timed: a late thread still makes every one). With no
    deadline pending the thread blocks on an event instead of waking 100 times a second, so an
    idle worker costs no CPU for its deadlines.

    A call's deadline (10 s by default) mostly outlives the call, and ticking 100 times a
    second until it passed was most of a worker's CPU in the seconds after traffic. So calls
    say when they run (:meth:`enter`, :meth:`leave`): once none runs, the ticks still owed to
    deadlines armed inside calls are dropped (each call arms its store again, so no deadline is
    lost); deadlines armed outside any call on their thread are ticked out in full as before.
    """

    def __init__(self, engine: wasmtime.Engine, period_s: float) -> None:
        self._engine = engine
        self._period_s = period_s
        self._stop = threading.Event()
        #: ticks made, and the count to reach before sleeping (every armed deadline passed)
        self._count = 0
        self._target = 0
        self._wake = threading.Event()
        #: calls running now, and how deep the current thread is in them
        self._running = 0
        self._calls = threading.local()
        self._lock = threading.Lock()
        #: the count to reach for deadlines armed outside any call (kept when the calls end)
        self._unscoped = 0
        self._thread = threading.Thread(
            target=self._run, name="trellis-epoch-ticker", daemon=True
        )
        self._thread.start()

    def need(self, ticks: int) -> None:
        """A deadline ``ticks`` from now was armed: tick at least that many more times."""
        target = self._count + ticks + 1
        if not getattr(self._calls, "depth", 0) and target > self._unscoped:
            self._unscoped = target
        if target > self._target:
            self._target = target
            if not self._wake.is_set():
                self._wake.set()

    def enter(self) -> None:
        """A call starts on this thread (its store is armed inside it)."""
        self._calls.depth = getattr(self._calls, "depth", 0) + 1
        with self._lock:
            self._running += 1

    def leave(self) -> None:
        """A call ended; with none running, stop ticking for the deadlines armed inside calls."""
        self._calls.depth -= 1
        with self._lock:
            self._running -= 1
            if not self._running and self._target > self._unscoped:
                self._target = max(self._count, self._unscoped)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._count >= self._target:
                self._wake.clear()
                if self._count >= self._target:  # nothing armed since: sleep until something is
                    self._wake.wait()
                continue
            if self._stop.wait(self._period_s):
                return
            self._engine.increment_epoch()
            self._count += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def state(self) -> tuple[int, int, bool]:
        """(ticks made, the count to reach, asleep: nothing owed and waiting to be woken), for tests."""
        return self._count, self._target, self._count >= self._target and not self._wake.is_set()


#: the ticker is a C thread (``_ticker.c``) when the extension builds: on unless switched off
#: (``tuning.wasm.native_ticker``, ``TRELLIS_NATIVE_TICKER``: wasmtime_patches.switch)
native_ticker = True


class _NativeTicker:
    """:class:`_EpochTicker`'s counting in a C thread that never takes the GIL (``_ticker.c``).

    Under load the Python thread woke ~100-200 times a second per worker and took the GIL from the
    event loop's thread each time: ~8-20 CPU-µs per request in one process (the thread's own CPU,
    before the loop's share of the hand-overs). The calls' depth per thread stays here."""

    def __init__(self, engine: wasmtime.Engine, period_s: float, module: Any) -> None:
        address = ctypes.cast(engine.ptr(), ctypes.c_void_p).value
        increment = ctypes.cast(ffi.dll.wasmtime_engine_increment_epoch, ctypes.c_void_p).value
        self._t = module.Ticker(engine, address, increment, max(1, int(period_s * 1e9)))
        self._calls = threading.local()

    def need(self, ticks: int) -> None:
        self._t.need(ticks, getattr(self._calls, "depth", 0))

    def enter(self) -> None:
        self._calls.depth = getattr(self._calls, "depth", 0) + 1
        self._t.enter()

    def leave(self) -> None:
        self._calls.depth -= 1
        self._t.leave()

    def stop(self) -> None:
        self._t.stop()

    def state(self) -> tuple[int, int, bool]:
        count, target, asleep = self._t.state()
        return int(count), int(target), bool(asleep)


def _ticker_module() -> Any:
    """The C ticker's extension, or None (switched off, or it cannot be built: the Python thread serves)."""
    if not native_ticker:
        return None
    from . import native_build

    return native_build.once(
        _native, lambda: native_build.load("_trellis_ticker", Path(__file__).with_name("_ticker.c"), ("pthread",)),
        log, "the native epoch ticker is unavailable (a Python thread ticks)")


_native: dict[str, Any] = {}


def new_ticker(engine: wasmtime.Engine, period_s: float) -> _EpochTicker | _NativeTicker:
    """The engine's epoch ticker: the C thread when it can be, else the Python one."""
    module = _ticker_module()
    if module is not None:
        try:
            return _NativeTicker(engine, period_s, module)
        except Exception as exc:  # noqa: BLE001 - e.g. a wasmtime-py without the symbol: the Python thread
            log.warning("the native epoch ticker did not start (a Python thread ticks): %s", exc)
    return _EpochTicker(engine, period_s)


@dataclass
class RuntimeEngine:
    """A wasmtime engine plus the settings it was built with and its ticker."""

    engine: wasmtime.Engine
    settings: EngineSettings
    _ticker: _EpochTicker | _NativeTicker | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def cache_tag(self) -> str:
        return self.settings.cache_tag()

    def deadline_ticks(self, timeout_s: float | None) -> int:
        """Epoch ticks to pass to ``Store.set_epoch_deadline`` for a timeout.

        Starts the ticker if a finite timeout is requested. ``None`` means no
        deadline (a deadline so far away it never fires).
        """
        if timeout_s is None:
            return 2**62
        self._ensure_ticker()
        tick_s = self.settings.epoch_tick_ms / 1000.0
        # +1: the current tick may be about to end.
        return max(1, math.ceil(timeout_s / tick_s)) + 1

    def _ensure_ticker(self) -> None:
        if self._ticker is None:
            with self._lock:
                if self._ticker is None:
                    self._ticker = new_ticker(self.engine, self.settings.epoch_tick_ms / 1000.0)

    def arm(self, ticks: int) -> None:
        """A store was given a deadline of ``ticks`` from now: tick until it has passed."""
        ticker = self._ticker
        if ticker is not None and ticks < 2**61:
            ticker.need(ticks)

    def enter(self) -> _EpochTicker | _NativeTicker | None:
        """A call starts on this thread (see :class:`_EpochTicker`); give what it returns to
        :meth:`leave` when the call ends."""
        ticker = self._ticker
        if ticker is not None:
            ticker.enter()
        return ticker

    @staticmethod
    def leave(ticker: _EpochTicker | _NativeTicker | None) -> None:
        """The call :meth:`enter` announced ended."""
        if ticker is not None:
            ticker.leave()

    @property
    def ticker_running(self) -> bool:
        return self._ticker is not None

    def close(self) -> None:
        """Stop the epoch ticker. Idempotent. The engine itself stays usable
        for calls without deadlines."""
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()


class WasmtimeNotPatched(RuntimeError):
    """An engine was asked for before :func:`~trellis.host.runtime.wasmtime_patches.apply`."""


def make_engine(settings: EngineSettings | None = None) -> RuntimeEngine:
    """Build an engine with epoch interruption (and fuel metering unless turned off).

    The process must have called :func:`trellis.host.runtime.wasmtime_patches.apply` first: without
    its corrections wasmtime-py lowers some values wrongly (an untagged ``result`` whose ``ok``
    is an option cannot carry ``err``)."""
    from . import wasmtime_patches

    if not wasmtime_patches.applied():
        raise WasmtimeNotPatched("wasmtime-py is not patched in this process: call "
                                 "trellis.host.runtime.wasmtime_patches.apply() when it starts, before any Wasm runs")
    settings = settings or EngineSettings()
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = settings.consume_fuel
    config.max_wasm_stack = settings.max_wasm_stack_bytes
    config.parallel_compilation = settings.parallel_compilation
    config.wasm_component_model = True
    config.memory_init_cow = settings.memory_init_cow
    if settings.pool is not None:
        settings.pool.apply(config)
    profiler = settings.profiler
    if profiler:  # e.g. perfmap: perf then names the guest's functions
        try:
            config.profiler = profiler
        except wasmtime.WasmtimeError as exc:
            log.warning("%s=%s ignored: %s (perfmap, jitdump or vtune)", PROFILER_ENV, profiler, exc)
    return RuntimeEngine(engine=wasmtime.Engine(config), settings=settings)
