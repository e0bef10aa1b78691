"""The wasmtime engine every component in a worker runs on, and its epoch ticker.

An engine is configured once per worker process. Two settings are fixed
because the runtime depends on them: *epoch interruption* (deadlines) and
*fuel* (optional instruction budgets). Stores created on this engine must
therefore always be given an epoch deadline and some fuel, which
:mod:`trellis.host.runtime.invoke` does.

Deadlines are enforced by one background thread per engine that increments
the engine's epoch every ``tick_ms`` milliseconds. The thread is started on
first use and stopped by :meth:`RuntimeEngine.close`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import version

import wasmtime

__all__ = ["EngineSettings", "RuntimeEngine", "make_engine", "WASMTIME_VERSION"]

log = logging.getLogger(__name__)

WASMTIME_VERSION: str = version("wasmtime")
#: wasmtime's profiling strategy (``perfmap``, ``jitdump``, ``vtune``), for profiling guests
PROFILER_ENV = "TRELLIS_WASM_PROFILER"


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
    """

    max_wasm_stack_bytes: int = 512 * 1024
    epoch_tick_ms: int = 10
    parallel_compilation: bool = True
    consume_fuel: bool = True

    def cache_tag(self) -> str:
        """Settings that affect compiled code, for compile-cache keys."""
        # epoch interruption and fuel change generated code; the stack limit
        # does not but is cheap to include and keeps the key conservative.
        return f"epoch=1,fuel={int(self.consume_fuel)},stack={self.max_wasm_stack_bytes}"


class _EpochTicker:
    """Daemon thread that increments an engine's epoch every ``period_s``."""

    def __init__(self, engine: wasmtime.Engine, period_s: float) -> None:
        self._engine = engine
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="trellis-epoch-ticker", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class RuntimeEngine:
    """A wasmtime engine plus the settings it was built with and its ticker."""

    engine: wasmtime.Engine
    settings: EngineSettings
    _ticker: _EpochTicker | None = field(default=None, repr=False)
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
                    self._ticker = _EpochTicker(
                        self.engine, self.settings.epoch_tick_ms / 1000.0
                    )

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


def make_engine(settings: EngineSettings | None = None) -> RuntimeEngine:
    """Build an engine with epoch interruption (and fuel metering unless turned off)."""
    settings = settings or EngineSettings()
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = settings.consume_fuel
    config.max_wasm_stack = settings.max_wasm_stack_bytes
    config.parallel_compilation = settings.parallel_compilation
    config.wasm_component_model = True
    profiler = os.environ.get(PROFILER_ENV)
    if profiler:  # e.g. perfmap: perf then names the guest's functions
        try:
            config.profiler = profiler
        except wasmtime.WasmtimeError as exc:
            log.warning("%s=%s ignored: %s (perfmap, jitdump or vtune)", PROFILER_ENV, profiler, exc)
    return RuntimeEngine(engine=wasmtime.Engine(config), settings=settings)
