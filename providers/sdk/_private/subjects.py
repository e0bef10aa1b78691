"""Subjects a provider instance answers besides its invocations.

Built on :func:`interfaces.subjects.lattice_prefix` until they move into
``interfaces/subjects.py`` (the one place subjects are spelled)::

    trellis.<lattice>.prov.<provider_id>.ping               every instance answers (scatter-gather)
    trellis.<lattice>.prov.<provider_id>.<host_id>.health   the instance a host runs answers
"""

from __future__ import annotations

from interfaces import subjects


def _prefix(lattice: str, provider_id: str) -> str:
    return f"{subjects.lattice_prefix(lattice)}.prov.{subjects.check_id('provider', provider_id)}"


def provider_ping(lattice: str, provider_id: str) -> str:
    return f"{_prefix(lattice, provider_id)}.ping"


def provider_health(lattice: str, provider_id: str, host_id: str) -> str:
    return f"{_prefix(lattice, provider_id)}.{subjects.check_id('host', host_id)}.health"
