"""Runtime tuning: the switches and budgets of a host's data path (``TRELLIS_*`` variables).

Each is a field of :class:`Tuning`, grouped by what it tunes, with its unit and
the reason for its default. The host reads the environment once, when its
settings are made (:meth:`Tuning.from_env`, the default of
``HostSettings.tuning``), and hands the result to each worker in its boot
message (``host/workers/messages.py``): a worker never reads these variables
itself. The variables stay the documented way to set them; the off-paths are
there to compare against (``python -m bench.http --ab TRELLIS_LOCAL_CALLS=0``)
and to debug, not because the defaults are unsafe.

A variable set to a value that does not fit its field is reported in one line
and the default used (a typo in a tuning knob should not keep a host from
starting).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

#: values that turn a switch off (anything else keeps it on)
OFF = frozenset({"0", "false", "no", "off"})
#: values that unset a number that may be None (``TRELLIS_GC_THRESHOLD=default``, ``TRELLIS_PARK_IDLE_S=off``)
NONE = frozenset({"default", "off", "never", "none"})


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


class CallPaths(BaseModel):
    """How a call travels inside one host (docs/architecture.md, "Components on a host")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inline_calls: bool = Field(
        True, json_schema_extra=_env("TRELLIS_INLINE_CALLS"),
        description="a short call that needs nothing from the event loop runs on it, without a Wasm thread "
        "(host/workers/inline.py); on: ~1.4x the requests per second of a fresh-instance component")
    inline_budget_ms: float = Field(
        20.0, json_schema_extra=_env("TRELLIS_INLINE_BUDGET_MS"),
        description="milliseconds an inline call may hold the event loop before it is run again on a Wasm "
        "thread; 20 ms: far above a leaf call (~1 ms), short enough that other calls barely wait. "
        "0 or less: no inline calls")
    local_calls: bool = Field(
        True, json_schema_extra=_env("TRELLIS_LOCAL_CALLS"),
        description="a call to a component the same worker serves runs there, nested, instead of over NATS "
        "(host/workers/colocated.py)")
    local_calls_max_depth: int = Field(
        8, ge=0, json_schema_extra=_env("TRELLIS_LOCAL_CALLS_MAX_DEPTH"),
        description="levels of nested co-located calls per Wasm thread; deeper ones go over NATS. 8: eight "
        "stores of 512 KiB of Wasm stack fit the 16 MiB thread stack")
    local_providers: bool = Field(
        True, json_schema_extra=_env("TRELLIS_LOCAL_PROVIDERS"),
        description="components and providers of one host call each other over a local socket instead of "
        "NATS (trellis local_rpc)")
    http_handoff: bool = Field(
        True, json_schema_extra=_env("TRELLIS_HTTP_HANDOFF"),
        description="the host's http-server hands accepted connections to the worker serving the route "
        "(host/workers/handoff.py), which answers them without NATS")
    http_streams: bool = Field(
        True, json_schema_extra=_env("TRELLIS_HTTP_STREAMS"),
        description="on a handed connection, a wasi:http component reads its request body as it arrives and "
        "its response goes out as it writes it (trellis/httpfront/streaming.py); off: bodies are "
        "received and sent whole, as over NATS")
    http_active_max: int | None = Field(
        None, ge=1, json_schema_extra=_env("TRELLIS_HTTP_ACTIVE_MAX"),
        description="handed HTTP requests a worker answers at once (host/workers/handoff.py); the others wait "
        "in line on its loop before they take an instance, so fewer instances are alive under load (the "
        "orders app at c=20, 6 per worker: 15-35 MiB less PSS, req/s within noise; 4: 55-60 MiB less, "
        "10-25 % more CPU per order). It bounds every route, including components that wait on slow calls: "
        "None ('off', the default) leaves each component's instances as the only bound")


class WasmTuning(BaseModel):
    """How wasmtime is driven (host/runtime/wasmtime_patches.py, docs/runtime.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_gil: bool = Field(
        True, json_schema_extra=_env("TRELLIS_HOLD_GIL"),
        description="wasmtime's quick C functions (values, types, handles) keep the GIL instead of "
        "releasing and waiting for it again: a large share of a worker's context switches otherwise")
    lower_in_place: bool = Field(
        True, json_schema_extra=_env("TRELLIS_LOWER_IN_PLACE"),
        description="lists, records, variants, … are written into wasmtime's value slots directly "
        "(host/runtime/lower_in_place.py) rather than through wasmtime-py's per-value objects")
    wasi_http_fast: bool = Field(
        True, json_schema_extra=_env("TRELLIS_WASI_HTTP_FAST"),
        description="the host's wasi:http functions are registered with wasmtime's C API directly "
        "(host/runtime/wasi_http/fastcall.py); needs lower_in_place")
    wasi_http_native: bool = Field(
        True, json_schema_extra=_env("TRELLIS_WASI_HTTP_NATIVE"),
        description="the hot wasi:http/wasi:io host functions' callbacks are C (host/runtime/wasi_http/native.py, "
        "compiled on first use into ~/.cache/trellis/native); off, or without a C compiler: fastcall.py's "
        "ctypes callbacks. Needs wasi_http_fast")
    wasi_http_native_state: bool = Field(
        True, json_schema_extra=_env("TRELLIS_WASI_HTTP_NATIVE_STATE"),
        description="the native callbacks run the hot wasi:http functions of a request the host holds whole "
        "in C, on the request's objects (host/runtime/wasi_http/_native_state.c); off: their Python "
        "implementations. Needs wasi_http_native")
    native_values: bool = Field(
        True, json_schema_extra=_env("TRELLIS_NATIVE_VALUES"),
        description="an export's arguments and results (a trellis:http request and response, ...) are written "
        "into and read out of wasmtime's value slots by a C extension (host/runtime/native_values.py, compiled "
        "on first use into ~/.cache/trellis/native); off, or without a C compiler: lower_in_place's and "
        "lift_in_place's Python. Needs lower_in_place")
    lower_plain: bool = Field(
        True, json_schema_extra=_env("TRELLIS_LOWER_PLAIN"),
        description="an import's answer and an export's arguments are written into wasmtime's value slots "
        "straight from their plain form (host/runtime/lower_plain.py); off: through from_plain's wasmtime-py "
        "objects")
    native_ticker: bool = Field(
        True, json_schema_extra=_env("TRELLIS_NATIVE_TICKER"),
        description="the epoch ticker (calls' deadlines) is a C thread that never takes the GIL "
        "(host/runtime/_ticker.c, compiled on first use into ~/.cache/trellis/native); off, or without a C "
        "compiler: a Python thread")
    wasm_hold_gil: bool = Field(
        False, json_schema_extra=_env("TRELLIS_WASM_HOLD_GIL"),
        description="a call into Wasm keeps the GIL (a worker runs one guest at a time, each until its next "
        "import) and hands it over at epoch ticks to a thread waiting for it (host/runtime/gil_hold.py, the tick "
        "callback in C); only while the epoch ticker is the C thread (native_ticker), else calls release the GIL. "
        "Off by default: on the full app +13 % req/s and -20 % p99 at the same CPU per order over 8 sittings, but "
        "beside guests that compute for long (tests/chaos/test_hostile.py) a neighbour's calls on the same worker "
        "ran at 0.05-0.09x the rate and 45x the p99 (docs/performance.md, \"Wasm calls keep the GIL, second session\")")
    wasm_hold_gil_slice_ms: float = Field(
        0.0, ge=0, json_schema_extra=_env("TRELLIS_WASM_HOLD_GIL_SLICE_MS"),
        description="with wasm_hold_gil: the thread CPU (ms) a call runs, from its start or its last hand-over, "
        "before an epoch tick hands the GIL over to a thread waiting for it (the tick callback, C in "
        "host/runtime/_ticker.c); 0 (the default): at every tick. A spinning guest stops the worker's loop for at "
        "most about this plus a tick. 0, 5 ms and never measured the same on the full app")
    profiler: str | None = Field(
        None, json_schema_extra=_env("TRELLIS_WASM_PROFILER"),
        description="wasmtime profiling strategy for perf (perfmap, jitdump or vtune); None: none, as "
        "profiling costs on every call")


class ProcessTuning(BaseModel):
    """What every worker process measures and how its memory is managed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: bool = Field(
        True, json_schema_extra=_env("TRELLIS_METRICS"),
        description="per-call figures (invocation records, usage, latency histograms); off: nothing is "
        "measured per call (a spy or the dashboard still gets records while it watches)")
    gc_threshold: int | None = Field(
        10_000, ge=1, json_schema_extra=_env("TRELLIS_GC_THRESHOLD"),
        description="allocations between collections of the youngest generation, after the start-up heap "
        "is frozen (trellis.kit.gc_tuning); 10,000 instead of Python's 700: decoding a large value "
        "no longer walks live objects again and again. None ('default'): Python's own settings")
    worker_nice: int = Field(
        0, ge=0, le=19, json_schema_extra=_env("TRELLIS_WORKER_NICE"),
        description="the workers' niceness above the host's (os.nice, inherited by their threads): on a "
        "loaded machine the host's event loop — NATS, heartbeats, the controller's lease, the built-in "
        "providers — is scheduled before the workers' Wasm threads instead of waiting its turn among them "
        "(it stalled for 0.3-0.7 s runnable but not run). 0 by default (the same priority as the host): at 5 "
        "the orders app served 6-9 % fewer requests a second at 5-8 % more CPU per order (docs/performance.md)")
    park_idle_s: float | None = Field(
        30.0, ge=0, allow_inf_nan=False, json_schema_extra=_env("TRELLIS_PARK_IDLE_S"),
        description="seconds a component may go without an instance or a call before its compiled code is "
        "dropped from memory (reloaded from the compile cache on its next call; host/runtime/parking.py); "
        "30 s: an idle app costs little, a component called now and then rarely reloads. None ('off'): never")
    provider_group: bool = Field(
        True, json_schema_extra=_env("TRELLIS_PROVIDER_GROUP"),
        description="a host runs its built-in providers (builtin:NAME) in one process instead of one process "
        "each (host/provider_group.py): ~28 MiB of private memory less per built-in provider after the "
        "first; they share the process's fate (each is restarted when it dies)")
    worker_zygote: bool = Field(
        True, json_schema_extra=_env("TRELLIS_WORKER_ZYGOTE"),
        description="a host's workers are forked from one parent that has imported Python's and the worker's "
        "modules and wasmtime once (host/workers/zygote.py): they share those pages until they write to them "
        "(idle: 2 workers 39 MiB with their parent instead of 70). Off: each worker a process of its own")
    zygote_from_host: bool = Field(
        True, json_schema_extra=_env("TRELLIS_ZYGOTE_FROM_HOST"),
        description="with worker_zygote, `trellis host` forks that parent from its own process before it starts "
        "a thread (host/workers/forks.py: prefork), so the host, the zygote and the workers also share the "
        "host's imported modules (idle: 60 MiB for the four instead of 75; under load the host ~18 MiB less). "
        "Off: the zygote is started as a process of its own")
    zygote_lean_after_s: float | None = Field(
        10.0, ge=0, allow_inf_nan=False, json_schema_extra=_env("TRELLIS_ZYGOTE_LEAN_AFTER_S"),
        description="seconds the worker zygote waits without a fork to make before it exec's a lean copy of "
        "itself (host/workers/zygote_lean.py: the standard library only, same pid, its workers still its "
        "children), which exec's the full zygote again when a worker must be forked: once the workers run, the "
        "zygote's imported modules are memory only it uses (orders app under load: ~20 MiB of PSS). A worker "
        "restarted after that waits for the zygote's imports (~1 s) and no longer shares them with the other "
        "workers. None ('off'): the zygote stays as it is")
    providers_in_host: bool = Field(
        True, json_schema_extra=_env("TRELLIS_PROVIDERS_IN_HOST"),
        description="with provider_group, `trellis host` runs that group on its own event loop instead of a "
        "process (host/provider_group.py): one Python process fewer, ~32 MiB of PSS; a provider that crashes "
        "the interpreter then takes the host with it. Off: the group's own process")


class Tuning(BaseModel):
    """The runtime tuning of a host and its workers: the ``TRELLIS_*`` switches, grouped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calls: CallPaths = Field(default_factory=CallPaths)
    wasm: WasmTuning = Field(default_factory=WasmTuning)
    process: ProcessTuning = Field(default_factory=ProcessTuning)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Tuning:
        """Defaults, then the ``TRELLIS_*`` variables that are set (read here, once)."""
        env = os.environ if environ is None else environ
        groups: dict[str, Any] = {}
        for group_name, group_field in cls.model_fields.items():
            model = group_field.default_factory  # the group's class
            assert isinstance(model, type) and issubclass(model, BaseModel)
            values: dict[str, Any] = {}
            for name, f in model.model_fields.items():
                var = (f.json_schema_extra or {}).get("env")  # type: ignore[union-attr]  # a dict: the settings declare their env that way
                raw = env.get(str(var)) if var else None
                if raw is None or raw.strip() == "":
                    continue
                try:
                    values[name] = _parse(raw.strip(), f.annotation, f.default)
                    model.model_validate({name: values[name]})
                except ValueError as exc:
                    values.pop(name, None)
                    log.warning("%s=%r ignored (%s); using %r", var, raw, _reason(exc), f.default)
            groups[group_name] = model(**values)
        return cls(**groups)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """``TRELLIS_*`` variable -> ``group.field`` (for docs and errors)."""
        out = {}
        for group_name, group_field in cls.model_fields.items():
            model = group_field.default_factory
            assert isinstance(model, type) and issubclass(model, BaseModel)
            for name, f in model.model_fields.items():
                out[str((f.json_schema_extra or {})["env"])] = f"{group_name}.{name}"  # type: ignore[index]  # a dict: the settings declare their env that way
        return out


def _parse(raw: str, annotation: Any, default: Any) -> Any:
    if annotation is bool:
        return raw.lower() not in OFF
    if raw.lower() in NONE and "None" in str(annotation):
        return None
    if isinstance(default, int) and not isinstance(default, bool):  # gc_threshold, depth
        try:
            return int(raw)
        except ValueError:
            raise ValueError("not a whole number") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ValueError("not a number") from None
    return raw


def _reason(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", "")) for e in errors()).lower()
    return str(exc)
