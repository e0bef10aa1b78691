"""The energy and carbon model behind ``trellis app usage`` and the ``trellis.usage.*`` metrics.

A deliberately simple, documented model (docs/observability.md, "Usage and carbon"):

* energy (Wh) = (CPU-seconds × watts per busy core + GiB-seconds of memory × watts per GiB)
  × PUE / 3600;
* carbon (gCO2e) = energy (kWh) × grid intensity (gCO2e/kWh) — the operational part of the
  Green Software Foundation's SCI, ``(E × I) + M`` per functional unit; embodied emissions
  M are left out (0) unless given per CPU-hour;
* SCI per 1,000 requests = carbon / invocations × 1,000.

Defaults follow the Cloud Carbon Footprint coefficients (3.5 W per busy vCPU at the top of
its range; 0.392 W per GB of memory = 0.42 W per GiB), a PUE of 1.2, and a world-average
grid intensity of 475 gCO2e/kWh. Each is set by a ``TRELLIS_*`` variable or a
``trellis app usage`` option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

GIB = 1024**3

ENV = {
    "cpu_watts_per_core": "TRELLIS_CPU_WATTS_PER_CORE",
    "memory_watts_per_gib": "TRELLIS_MEMORY_WATTS_PER_GIB",
    "pue": "TRELLIS_PUE",
    "grid_gco2_per_kwh": "TRELLIS_GRID_GCO2_PER_KWH",
    "embodied_g_per_cpu_hour": "TRELLIS_EMBODIED_G_PER_CPU_HOUR",
}


@dataclass(frozen=True)
class CarbonModel:
    #: power of one fully busy core (W)
    cpu_watts_per_core: float = 3.5
    #: power of one GiB of memory held (W)
    memory_watts_per_gib: float = 0.42
    #: data-centre overhead: facility energy / IT energy
    pue: float = 1.2
    #: grid carbon intensity (gCO2e per kWh)
    grid_gco2_per_kwh: float = 475.0
    #: embodied emissions of the hardware, per CPU-hour used (gCO2e); 0 leaves M out of SCI
    embodied_g_per_cpu_hour: float = 0.0

    @classmethod
    def from_env(cls, **overrides: float | None) -> CarbonModel:
        """Defaults, then ``TRELLIS_*`` variables, then ``overrides`` that are not None.
        A variable that is not a number is a ValueError naming it."""
        values: dict[str, float] = {}
        for field, env in ENV.items():
            raw = os.environ.get(env)
            if raw not in (None, ""):
                try:
                    values[field] = float(raw)
                except ValueError:
                    raise ValueError(f"{env}={raw!r} is not a number") from None
        values.update({k: float(v) for k, v in overrides.items() if v is not None})
        model = cls(**values)
        for field in ENV:
            if getattr(model, field) < 0:
                raise ValueError(f"{field.replace('_', '-')} must not be negative")
        return model

    def energy_wh(self, cpu_s: float, memory_byte_s: float) -> float:
        joules = cpu_s * self.cpu_watts_per_core + memory_byte_s / GIB * self.memory_watts_per_gib
        return joules * self.pue / 3600.0

    def carbon_g(self, cpu_s: float, memory_byte_s: float) -> float:
        operational = self.energy_wh(cpu_s, memory_byte_s) / 1000.0 * self.grid_gco2_per_kwh
        return operational + cpu_s / 3600.0 * self.embodied_g_per_cpu_hour

    def describe(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ENV}
