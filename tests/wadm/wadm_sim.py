"""A tiny in-memory lattice for scaler tests: applies commands to an `Observed`.

It refuses what the real lattice would refuse (starting an id twice on a host,
scaling what is not running, links that give a call two answers), so a scaler bug
shows up as an `InvalidCommand`, not as a quietly wrong state.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence

from trellis.wadm.commands import (
    Command,
    DeleteConfig,
    DeleteLink,
    PinState,
    PutConfig,
    PutLink,
    ScaleComponent,
    StartComponent,
    StartProvider,
    StopComponent,
    StopProvider,
    UpdateComponent,
)
from trellis.wadm.manifest import Manifest, load_manifest
from trellis.wadm.observed import (
    APP_ANNOTATION,
    HostCapacity,
    Observed,
    ObservedConfig,
    ObservedHost,
    ObservedLink,
    RunningComponent,
    RunningProvider,
    StatePin,
)
from trellis.wadm.scaler import reconcile


class InvalidCommand(AssertionError):
    pass


def host(hid: str, *, mem: int = 1000, load: float = 0.0, cpus: int = 4, **labels: str) -> ObservedHost:
    return ObservedHost(id=hid, labels=labels,
                        capacity=HostCapacity(cpus=cpus, memory_available_bytes=mem, load_1m=load))


def lattice(*hosts: ObservedHost, links: Sequence[ObservedLink] = (),
            configs: Mapping[str, object] | None = None) -> Observed:
    return Observed(hosts=list(hosts), links=tuple(links), configs=dict(configs or {}))  # type: ignore[arg-type]  # Observed normalises plain collections


def _replace_host(obs: Observed, new: ObservedHost) -> Observed:
    hosts = dict(obs.hosts)
    hosts[new.id] = new
    return Observed(hosts=hosts, links=obs.links, configs=obs.configs, pins=obs.pins)


def _host(obs: Observed, host_id: str) -> ObservedHost:
    if host_id not in obs.hosts:
        raise InvalidCommand(f"host {host_id} is not in the lattice")
    return obs.hosts[host_id]


def _with(h: ObservedHost, *, components: Mapping[str, RunningComponent] | None = None,
          providers: Mapping[str, RunningProvider] | None = None) -> ObservedHost:
    return ObservedHost(id=h.id, labels=h.labels, capacity=h.capacity,
                        components=h.components if components is None else components,
                        providers=h.providers if providers is None else providers, name=h.name, state_id=h.state_id)


def apply(obs: Observed, commands: Iterable[Command]) -> Observed:
    for cmd in commands:
        obs = apply_one(obs, cmd)
    return obs


def apply_one(obs: Observed, cmd: Command) -> Observed:  # noqa: C901 - one branch per command
    if isinstance(cmd, StartComponent):
        h = _host(obs, cmd.host_id)
        if cmd.component_id in h.components:
            raise InvalidCommand(f"{cmd}: already running there")
        missing = [c for c in cmd.config if c not in obs.configs]
        if missing:
            raise InvalidCommand(f"{cmd}: config {missing} does not exist")
        comps = {**h.components, cmd.component_id: RunningComponent(cmd.image, cmd.max_instances, cmd.annotations)}
        return _replace_host(obs, _with(h, components=comps))
    if isinstance(cmd, ScaleComponent | UpdateComponent | StopComponent):
        h = _host(obs, cmd.host_id)
        have = h.components.get(cmd.component_id)
        if have is None:
            raise InvalidCommand(f"{cmd}: not running there")
        comps = dict(h.components)
        if isinstance(cmd, ScaleComponent):
            if cmd.max_instances < 1:
                raise InvalidCommand(f"{cmd}: scale below 1 (use stop)")
            comps[cmd.component_id] = RunningComponent(have.image, cmd.max_instances, cmd.annotations)
        elif isinstance(cmd, UpdateComponent):
            comps[cmd.component_id] = RunningComponent(cmd.image, have.max_instances, have.annotations)
        else:
            del comps[cmd.component_id]
        return _replace_host(obs, _with(h, components=comps))
    if isinstance(cmd, StartProvider):
        h = _host(obs, cmd.host_id)
        if cmd.provider_id in h.providers:
            raise InvalidCommand(f"{cmd}: already running there")
        provs = {**h.providers, cmd.provider_id: RunningProvider(cmd.image, cmd.annotations)}
        return _replace_host(obs, _with(h, providers=provs))
    if isinstance(cmd, StopProvider):
        h = _host(obs, cmd.host_id)
        if cmd.provider_id not in h.providers:
            raise InvalidCommand(f"{cmd}: not running there")
        provs = {k: v for k, v in h.providers.items() if k != cmd.provider_id}
        return _replace_host(obs, _with(h, providers=provs))
    if isinstance(cmd, PutLink):
        new = ObservedLink(source_id=cmd.source_id, target=cmd.target, namespace=cmd.namespace, package=cmd.package,
                           interfaces=cmd.interfaces, name=cmd.name, source_config=cmd.source_config,
                           target_config=cmd.target_config, app=cmd.app)
        for lk in obs.links:
            if lk.group == new.group and lk.target != new.target and set(lk.interfaces) & set(new.interfaces):
                raise InvalidCommand(f"{cmd}: conflicts with {lk}")
        links = tuple(lk for lk in obs.links if lk.identity != new.identity) + (new,)
        return Observed(hosts=obs.hosts, links=links, configs=obs.configs, pins=obs.pins)
    if isinstance(cmd, DeleteLink):
        links = tuple(lk for lk in obs.links if lk.identity != cmd.identity)
        return Observed(hosts=obs.hosts, links=links, configs=obs.configs, pins=obs.pins)
    if isinstance(cmd, PutConfig):
        configs = {**obs.configs, cmd.name: ObservedConfig(values=cmd.values, app=cmd.app)}
        return Observed(hosts=obs.hosts, links=obs.links, configs=configs, pins=obs.pins)
    if isinstance(cmd, DeleteConfig):
        configs = {k: v for k, v in obs.configs.items() if k != cmd.name}
        return Observed(hosts=obs.hosts, links=obs.links, configs=configs, pins=obs.pins)
    if isinstance(cmd, PinState):
        pins = {**obs.pins, (cmd.app, cmd.provider_id): StatePin(cmd.state_id, cmd.host_id, cmd.host_name, cmd.labels)}
        return Observed(hosts=obs.hosts, links=obs.links, configs=obs.configs, pins=pins)
    raise InvalidCommand(f"unknown command {cmd!r}")


def converge(app: Manifest, obs: Observed, *, max_passes: int = 20,
             shared_apps: Mapping[str, Manifest] | None = None) -> tuple[Observed, list[list[Command]]]:
    """Reconcile and apply until no commands are left; returns the final lattice and each pass's commands."""
    history: list[list[Command]] = []
    for i in range(max_passes):
        cmds = reconcile(app, obs, pass_id=f"p{i}", shared_apps=shared_apps)
        if not cmds:
            return obs, history
        history.append(cmds)
        obs = apply(obs, cmds)
    raise AssertionError(f"did not converge in {max_passes} passes; last: {[str(c) for c in history[-1]]}")


def drop_host(obs: Observed, host_id: str) -> Observed:
    return Observed(hosts={k: v for k, v in obs.hosts.items() if k != host_id}, links=obs.links, configs=obs.configs,
                    pins=obs.pins)


def add_host(obs: Observed, h: ObservedHost) -> Observed:
    return _replace_host(obs, h)


def placements(obs: Observed, cid: str, app: str | None = None) -> dict[str, int]:
    """host id → max_instances of component `cid` (optionally only app's)."""
    return {
        h.id: h.components[cid].max_instances
        for h in obs.sorted_hosts
        if cid in h.components and (app is None or h.components[cid].annotations.get(APP_ANNOTATION) == app)
    }


def providers_on(obs: Observed, pid: str) -> list[str]:
    return [h.id for h in obs.sorted_hosts if pid in h.providers]


def manifest(text: str) -> Manifest:
    return load_manifest(text)


# --- a one-component app, for scaler tests ------------------------------------------------

CID = "demo-hello"


def app(instances: int = 4, spread: str = "", *, image: str = "ghcr.io/acme/hello:1.0", version: str = "v1",
        kind: str = "component", scaler: str = "spreadscaler", extra: str = "") -> str:
    spread_block = ("spread:\n" + textwrap.indent(textwrap.dedent(spread).strip("\n"), "  ")) if spread else ""
    return f"""
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: demo
  annotations:
    version: {version}
spec:
  components:
    - name: hello
      type: {kind}
      properties:
        image: {image}
      traits:
        - type: {scaler}
          properties:
            instances: {instances}
{textwrap.indent(spread_block, " " * 12)}
{extra}
"""


ZONES = """
- name: east
  requirements: {zone: east}
  weight: 80
- name: west
  requirements: {zone: west}
  weight: 20
"""
