"""Links: what the app's link traits ask for, against the links in the lattice.

A link trait on component S targeting T becomes the lattice link
``S.id -> T.id  namespace:package/{interfaces}`` under the trait's ``name``
(``default`` when unset), with the resolved source and target config names. Link
traits with the same source, namespace, package, name *and* target are one
lattice link (their interfaces are merged), since the lattice keys links that way.

* Missing, or different and put by this app (or by nobody we know of): put it.
* Different and put by another app, or another app's link answers the same
  interface for the same source and name: a conflict, left alone and reported.
* Put by this app but no longer in the manifest: deleted (before puts, so a link
  whose target changed does not conflict with its old self).
* A link naming a config that is missing waits for it.
* A capability provider cannot link to another provider (wadm ignores such links).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..commands import DeleteLink, PutLink
from ..manifest import Manifest, config_name
from ..observed import Observed, ObservedLink
from .workload import ReconcilePass, resolve_id


@dataclass(frozen=True)
class DesiredLink:
    source: str
    """Manifest name of the source component."""
    target: str
    """Manifest name of the target component."""
    link: PutLink

    def describe(self) -> str:
        lk = self.link
        ifaces = ",".join(lk.interfaces)
        return f"{self.source} -> {self.target} ({lk.namespace}:{lk.package}/{ifaces}, name {lk.name!r})"


@dataclass
class DesiredLinkState:
    desired: DesiredLink
    ok: bool
    message: str = ""


@dataclass
class LinkOutcome:
    puts: list[PutLink] = field(default_factory=list)
    deletes: list[DeleteLink] = field(default_factory=list)
    states: list[DesiredLinkState] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def desired_links(app: Manifest, ctx: ReconcilePass,
                  shared_apps: Mapping[str, Manifest] | None = None) -> tuple[list[DesiredLink], list[str]]:
    """The lattice links the app's link traits describe, and notes on ignored ones."""
    merged: dict[tuple[str, str, str, str, str], DesiredLink] = {}
    notes: list[str] = []
    for comp in app.components:
        for lp in comp.links:
            target = app.component(lp.target.name)
            if target is None:
                continue  # validate() rejects this
            if comp.is_capability and target.is_capability:
                notes.append(f"link from provider {comp.name} to provider {target.name} is ignored")
                continue
            put = PutLink(
                source_id=resolve_id(app, comp, shared_apps),
                target=resolve_id(app, target, shared_apps),
                namespace=lp.namespace,
                package=lp.package,
                interfaces=lp.interfaces,
                name=lp.link_name,
                source_config=tuple(config_name(app.name, c) for c in lp.source_config),
                target_config=tuple(config_name(app.name, c) for c in lp.target.config),
                app=ctx.app,
                pass_id=ctx.pass_id,
            )
            prior = merged.get(put.identity)
            if prior is not None:
                old = prior.link
                put = replace(
                    old,
                    interfaces=(*old.interfaces, *put.interfaces),
                    source_config=tuple(dict.fromkeys((*old.source_config, *put.source_config))),
                    target_config=tuple(dict.fromkeys((*old.target_config, *put.target_config))),
                )
            merged[put.identity] = DesiredLink(comp.name, target.name, put)
    return list(merged.values()), notes


def _same(have: ObservedLink, want: PutLink) -> bool:
    return (
        have.interfaces == want.interfaces
        and have.source_config == want.source_config
        and have.target_config == want.target_config
    )


def plan_links(
    app_name: str,
    desired: list[DesiredLink],
    observed: Observed,
    blocked_configs: Mapping[str, str],
    ctx: ReconcilePass,
) -> LinkOutcome:
    out = LinkOutcome()
    wanted = {d.link.identity for d in desired}
    for old in sorted(observed.links, key=lambda lk: lk.identity):
        if old.app == app_name and old.identity not in wanted:
            out.deletes.append(
                DeleteLink(source_id=old.source_id, target=old.target, namespace=old.namespace,
                           package=old.package, name=old.name, app=app_name,
                           reason="no longer in the manifest", pass_id=ctx.pass_id)
            )
    deleted = {d.identity for d in out.deletes}
    by_identity = {lk.identity: lk for lk in observed.links}
    for d in desired:
        want = d.link
        waiting = [blocked_configs[c] for c in (*want.source_config, *want.target_config) if c in blocked_configs]
        if waiting:
            out.states.append(DesiredLinkState(d, False, "; ".join(dict.fromkeys(waiting))))
            continue
        have = by_identity.get(want.identity)
        if have is not None and _same(have, want):
            out.states.append(DesiredLinkState(d, True))
            continue
        if have is not None and have.app not in (None, app_name):
            out.states.append(DesiredLinkState(d, False,
                                        f"a different link {d.describe()} was put by application '{have.app}'"))
            continue
        clash = next(
            (
                lk for lk in observed.links
                if lk.group == _group(want) and lk.target != want.target
                and set(lk.interfaces) & set(want.interfaces) and lk.identity not in deleted
            ),
            None,
        )
        if clash is not None:
            owner = f"application '{clash.app}'" if clash.app else "someone outside Trellis' control"
            out.states.append(DesiredLinkState(
                d, False,
                f"conflicts with link {clash.source_id} -> {clash.target} for "
                f"{want.namespace}:{want.package}/{','.join(sorted(set(clash.interfaces) & set(want.interfaces)))} "
                f"(name {want.name!r}) put by {owner}",
            ))
            continue
        reason = "link is missing" if have is None else "link changed"
        out.puts.append(replace(want, reason=reason))
        out.states.append(DesiredLinkState(d, False, "putting link"))
    return out


def _group(link: PutLink) -> tuple[str, str, str, str]:
    return (link.source_id, link.namespace, link.package, link.name)
