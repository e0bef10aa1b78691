"""Subjects a provider instance answers besides its invocations (spelled in interfaces.subjects)::

    trellis.<lattice>.prov.<provider_id>.ping               every instance answers (scatter-gather)
    trellis.<lattice>.prov.<provider_id>.<host_id>.health   the instance a host runs answers
"""

from __future__ import annotations

from interfaces.subjects import provider_health, provider_ping

__all__ = ["provider_health", "provider_ping"]
