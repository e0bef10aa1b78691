"""Per-component execution settings: limits, WASI grants, instance reuse.

All are frozen dataclasses with units in their names and defaults chosen for
a multi-tenant host: deny by default, generous enough for a componentize-py
component (whose CPython runtime needs tens of MiB of linear memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wasmtime import WasiConfig

__all__ = ["Limits", "ReusePolicy", "Preopen", "WasiGrants"]


@dataclass(frozen=True)
class Limits:
    """Budgets for one invocation (instantiation included when fresh).

    Attributes:
        timeout_s: Wall-clock deadline in seconds, enforced by epoch
            interruption; ``None`` disables it. 10 s: far above a normal
            request, low enough that a stuck component frees its worker.
        fuel: Wasm instruction budget (roughly one unit per instruction);
            ``None`` means unlimited. Deterministic, unlike the deadline.
        memory_bytes: Cap on the linear memory of the store, in bytes;
            ``None`` means wasmtime's own limit (4 GiB per 32-bit memory).
            256 MiB fits a componentize-py component with room to work.

    The wasm stack limit is engine-wide:
    :attr:`trellis.host.runtime.engine.EngineSettings.max_wasm_stack_bytes`.
    """

    timeout_s: float | None = 10.0
    fuel: int | None = None
    memory_bytes: int | None = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive or None")
        if self.fuel is not None and self.fuel < 0:
            raise ValueError("fuel must be >= 0 or None")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError("memory_bytes must be positive or None")


@dataclass(frozen=True)
class ReusePolicy:
    """When one instance (store + instance) may serve several calls.

    Attributes:
        max_invocations: Calls an instance serves before it is dropped.
            1 (the default) gives every call a fresh instance: no state leaks
            between calls, at the cost of one instantiation per call.
        max_idle_s: Drop a warm instance unused for this long (seconds);
            ``None`` keeps it until ``max_invocations``.
        max_warm: Idle warm instances kept at most. Concurrent calls each take
            their own, so a component under load keeps about as many as it has
            calls in flight (never more than its concurrency cap allows).

    A call that fails with a trap or an import failure always discards its
    instance, whatever the policy.
    """

    max_invocations: int = 1
    max_idle_s: float | None = None
    max_warm: int = 64

    def __post_init__(self) -> None:
        if self.max_invocations < 1:
            raise ValueError("max_invocations must be >= 1")
        if self.max_idle_s is not None and self.max_idle_s < 0:
            raise ValueError("max_idle_s must be >= 0 or None")
        if self.max_warm < 0:
            raise ValueError("max_warm must be >= 0")


@dataclass(frozen=True)
class Preopen:
    """A host directory visible to the component at ``guest_path``."""

    host_path: str
    guest_path: str
    writable: bool = False


@dataclass(frozen=True)
class WasiGrants:
    """What WASI may reach. The default grants nothing: no environment, no
    files, no stdio (guest stdout/stderr are discarded, except that the
    runtime keeps the tail of stderr for error messages), no arguments.

    Attributes:
        env: Environment variables the component sees.
        preopens: Directories it may open, read-only unless ``writable``.
        inherit_stdout: Guest stdout goes to the host process's stdout.
        inherit_stderr: Guest stderr goes to the host process's stderr.
        args: ``argv`` the component sees.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    preopens: tuple[Preopen, ...] = ()
    inherit_stdout: bool = False
    inherit_stderr: bool = False
    args: tuple[str, ...] = ()

    def wasi_config(self) -> WasiConfig:
        """A fresh ``WasiConfig`` (each store consumes its own)."""
        config = WasiConfig()
        if self.env:
            config.env = list(self.env.items())
        if self.args:
            config.argv = list(self.args)
        for p in self.preopens:
            config.preopen_dir(p.host_path, p.guest_path, p.writable)
        if self.inherit_stdout:
            config.inherit_stdout()
        if self.inherit_stderr:
            config.inherit_stderr()
        return config
