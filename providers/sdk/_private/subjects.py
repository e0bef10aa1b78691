"""Subjects a provider instance answers besides its invocations (spelled in trellis.interfaces.subjects)::

    trellis.<lattice>.prov.<provider_id>.ping               every instance answers (scatter-gather)
    trellis.<lattice>.prov.<provider_id>.<host_id>.health   the instance a host runs answers
    trellis.<lattice>.prov.<provider_id>.<host_id>.metrics  its metrics, for the host (a series list, JSON)
"""

from __future__ import annotations

from trellis.interfaces.subjects import provider_health, provider_metrics, provider_ping

__all__ = ["provider_health", "provider_metrics", "provider_ping"]
