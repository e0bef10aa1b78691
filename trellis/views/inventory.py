"""Components and providers lattice-wide: the hosts' inventories folded by id.

A component or provider may run on several hosts; each row says where, with how many
instances (components) or in which state (providers), and which app placed it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from trellis.interfaces.annotations import APP_ANNOTATION, APP_VERSION_ANNOTATION
from trellis.interfaces.control import HostInfo


class Placement(BaseModel):
    host_id: str
    host_name: str


class ComponentPlacement(Placement):
    max_instances: int


class ProviderPlacement(Placement):
    status: str


class ComponentRow(BaseModel):
    id: str
    image: str
    digest: str = ""
    app: str | None = None
    app_version: str | None = None
    max_instances: int
    hosts: list[ComponentPlacement]


class ProviderRow(BaseModel):
    id: str
    image: str
    app: str | None = None
    app_version: str | None = None
    status: str
    hosts: list[ProviderPlacement]


def components(hosts: Iterable[HostInfo]) -> list[ComponentRow]:
    rows: dict[str, ComponentRow] = {}
    for h in hosts:
        for c in h.components:
            row = rows.get(c.id)
            if row is None:
                row = rows[c.id] = ComponentRow(
                    id=c.id, image=c.image, digest=c.digest, app=c.annotations.get(APP_ANNOTATION),
                    app_version=c.annotations.get(APP_VERSION_ANNOTATION), max_instances=0, hosts=[])
            row.max_instances += c.max_instances
            row.hosts.append(ComponentPlacement(host_id=h.id, host_name=h.name, max_instances=c.max_instances))
    return sorted(rows.values(), key=lambda r: (r.app or "", r.id))


def providers(hosts: Iterable[HostInfo]) -> list[ProviderRow]:
    rows: dict[str, ProviderRow] = {}
    for h in hosts:
        for p in h.providers:
            row = rows.get(p.id)
            if row is None:
                row = rows[p.id] = ProviderRow(
                    id=p.id, image=p.image, app=p.annotations.get(APP_ANNOTATION),
                    app_version=p.annotations.get(APP_VERSION_ANNOTATION), status=p.status, hosts=[])
            row.hosts.append(ProviderPlacement(host_id=h.id, host_name=h.name, status=p.status))
    for row in rows.values():
        states = sorted({pl.status for pl in row.hosts})
        row.status = states[0] if len(states) == 1 else "mixed (" + ", ".join(states) + ")"
    return sorted(rows.values(), key=lambda r: (r.app or "", r.id))
