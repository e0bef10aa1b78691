"""What a parsed manifest means, checked: `validate(manifest) -> list[Problem]`.

Pure: no I/O. The checks follow wadm's (``wadm-types/src/validation.rs`` and the
deploy-time checks of its API handler), with the same outcome for every manifest in
wadm's own test corpus. Trellis adds a few errors for manifests that wadm accepts
but cannot run (two scaler traits on one component, repeated spread names, all
spread weights zero, two components that resolve to the same id, the same inline
config defined twice with different values) and a few warnings, and checks its
own extensions, ``properties.reuse`` and ``properties.timeout_ms``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from pydantic import ValidationError

from trellis.interfaces.secrets import BACKEND
from trellis.interfaces.secrets import NAME_PATTERN as SECRET_NAME_PATTERN

from ._describe import problems_from_errors
from .capabilities import check_builtin_links, check_provider_images
from .images import ImageError, ImageKind, parse_image
from .local_state_check import check_local_state
from .models import (
    API_VERSION,
    APPLICATION_KIND,
    BUILTIN_TRAITS,
    LATEST_VERSION,
    Component,
    ConfigProperty,
    CustomProperties,
    InvalidProperties,
    LinkProperties,
    Manifest,
    ScalerProperties,
    config_name,
)
from .problems import Problem, did_you_mean, error, warning, where_component, where_link

SECRET_POLICY_TYPE = "policy.secret.wasmcloud.dev/v1alpha1"
SECRETS_BACKEND = BACKEND

KNOWN_INTERFACES: dict[str, dict[str, frozenset[str]]] = {
    "wrpc": {
        "blobstore": frozenset({"blobstore"}),
        "keyvalue": frozenset({"atomics", "store"}),
        "http": frozenset({"incoming-handler", "outgoing-handler"}),
    },
    "wasi": {
        "blobstore": frozenset({"blobstore"}),
        "config": frozenset({"runtime", "store"}),
        "keyvalue": frozenset({"atomics", "store", "batch", "watch"}),
        "http": frozenset({"incoming-handler", "outgoing-handler"}),
        "logging": frozenset({"logging"}),
    },
    "wasmcloud": {
        "messaging": frozenset({"consumer", "handler"}),
        "postgres": frozenset({"query", "prepared"}),
    },
}
"""Namespaces whose packages and interfaces are known (wadm's list, plus wasi:config/store
and wasmcloud:postgres). In these namespaces an unknown package or interface is
probably a typo, so it gets a warning; other namespaces are custom and not checked."""

_MANIFEST_NAME = re.compile(r"[-\w]+")
# What the Trellis lattice accepts (trellis.interfaces.subjects / links / lattice_config):
_ENTITY_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_WIT_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z][A-Za-z0-9]*)*")
_LINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DNS_PART = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


Check = Callable[[Manifest], list[Problem]]
"""One check: every problem of one kind it finds in a manifest (pure: no I/O)."""


def validate(manifest: Manifest) -> list[Problem]:
    """Every error and warning about `manifest`, errors first. Empty means all good."""
    problems: list[Problem] = []
    for check in CHECKS:
        problems += check(manifest)
    errs = [p for p in problems if p.is_error]
    return errs + [p for p in problems if not p.is_error]


# --- header and metadata ------------------------------------------------------------------


def _check_header(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    if m.api_version != API_VERSION:
        out.append(error("apiVersion", f"must be '{API_VERSION}', got '{m.api_version}'"))
    if m.kind != APPLICATION_KIND:
        out.append(error("kind", f"must be '{APPLICATION_KIND}', got '{m.kind}'"))
    for key in (m.spec.model_extra or {}):
        out.append(warning("spec", f"unknown key '{key}' is ignored{did_you_mean(key, ['components', 'policies'])}"))
    for pol in m.spec.policies:
        for key in (pol.model_extra or {}):
            out.append(warning(f'policy "{pol.name}"', f"unknown key '{key}' is ignored"))
    return out


def _valid_oam_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not all(_DNS_PART.fullmatch(p) for p in prefix.split("."))):
        return False
    return bool(_LABEL_NAME.fullmatch(name))


def _check_metadata(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    if not _MANIFEST_NAME.fullmatch(m.name):
        out.append(
            error("metadata.name", f"'{m.name}' is not a valid application name: use letters, digits, '-' and '_' only")
        )
    if m.declared_version == LATEST_VERSION:
        out.append(error("metadata.annotations.version", f"'{LATEST_VERSION}' is not allowed as a version"))
    for key in m.metadata.labels:
        if not _valid_oam_key(key):
            out.append(error("metadata.labels",
                             f"'{key}' is not a valid label key (OAM: [dns.prefix/]name, name ≤ 63 chars of letters, "
                             "digits, '-', '_', '.')"))
    for key in m.metadata.annotations:
        if not _valid_oam_key(key):
            out.append(error("metadata.annotations",
                             f"'{key}' is not a valid annotation key (OAM: [dns.prefix/]name, name ≤ 63 chars of "
                             "letters, digits, '-', '_', '.')"))
    for key in (m.metadata.model_extra or {}):
        out.append(
            warning("metadata", f"unknown key '{key}' is ignored{did_you_mean(key, ['name', 'annotations', 'labels'])}")
        )
    return out


# --- components ------------------------------------------------------------------------------


def _check_component_identity(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    by_name: dict[str, int] = {}
    for comp in m.components:
        if comp.name in by_name:
            out.append(error(where_component(comp),
                             f"duplicate component name in manifest: \"{comp.name}\" is used more than once"))
        by_name[comp.name] = by_name.get(comp.name, 0) + 1
    if not m.components:
        out.append(warning("spec.components", "the application has no components"))

    explicit: dict[str, str] = {}
    for comp in m.components:
        cid = comp.properties.id
        if cid is None:
            continue
        if cid in explicit:
            out.append(
                error(where_component(comp),
                      f"duplicate component identifier in manifest: id '{cid}' is also used by component "
                      f"\"{explicit[cid]}\"")
            )
        else:
            explicit[cid] = comp.name
        if not _ENTITY_ID.fullmatch(cid):
            out.append(error(where_component(comp), f"id '{cid}' must be 1-128 letters, digits, '_' or '-'"))
    # ids Trellis computes (or shares) must not collide either
    resolved: dict[str, str] = {}
    for comp in m.components:
        if comp.properties.id is not None or by_name.get(comp.name, 0) > 1:
            continue
        cid = m.component_id(comp)
        other = resolved.get(cid) or explicit.get(cid)
        if other is not None and other != comp.name:
            out.append(
                error(where_component(comp),
                      f"resolves to component id '{cid}', which component \"{other}\" also has; rename one or give it "
                      "an explicit id")
            )
        resolved.setdefault(cid, comp.name)
    return out


def _check_component(m: Manifest, comp: Component) -> list[Problem]:
    out: list[Problem] = []
    where = where_component(comp)
    props = comp.properties
    if comp.type == "actor":
        out.append(warning(where, "type 'actor' is the old name for 'component'"))

    # image or shared application, not both
    if props.image is not None and props.application is not None:
        out.append(error(where, "component cannot have both 'image' and 'application' properties"))
    elif props.image is None and props.application is None:
        out.append(error(where, "component must have either an 'image' or an 'application' property"))
    if props.image is not None:
        try:
            ref = parse_image(props.image)
            if ref.kind is ImageKind.BUILTIN and not comp.is_capability:
                out.append(error(where,
                                 f"image '{props.image}': builtin: images are capability providers; use type: "
                                 "capability"))
            if ref.kind is ImageKind.OCI and ref.registry is None:
                out.append(warning(where, f"image '{props.image}' names no registry, so no host can pull it: "
                                          f"write REGISTRY/REPOSITORY:TAG (e.g. ghcr.io/ORG/{props.image})"))
        except ImageError as exc:
            out.append(error(where, str(exc)))
    if props.reuse is not None:
        out += _check_reuse(comp, where)
    if props.timeout_ms is not None and comp.is_capability:
        out.append(error(f"{where} > properties.timeout_ms", "a call deadline applies to WebAssembly components "
                         "(type: component), not to capability providers"))
    if props.application is not None and props.image is None:
        shared = props.application
        if props.config:
            out.append(error(where, f"shared component '{shared.name}' cannot specify additional 'config'"))
        if props.reuse is not None:
            out.append(error(where, f"shared component '{shared.name}' cannot specify 'reuse': "
                                    f"application '{shared.name}' sets it"))
        if props.timeout_ms is not None:
            out.append(error(where, f"shared component '{shared.name}' cannot specify 'timeout_ms': "
                                    f"application '{shared.name}' sets it"))
        if props.secrets:
            out.append(error(where, f"shared component '{shared.name}' cannot specify additional 'secrets'"))
        if comp.scaler_traits:
            out.append(error(where,
                             f"shared component '{shared.name}' cannot include a scaler trait: it is scaled by "
                             f"application '{shared.name}'"))
        for key in (shared.model_extra or {}):
            out.append(warning(f"{where} > application", f"unknown key '{key}' is ignored"))

    # traits
    scalers = comp.scaler_traits
    if len(scalers) > 1:
        kinds = ", ".join(t.type for t in scalers)
        out.append(error(where,
                         f"has {len(scalers)} scaler traits ({kinds}); a component takes one spreadscaler or one "
                         "daemonscaler"))
    for i, trait in enumerate(comp.all_traits):
        twhere = f"{where} > {trait.type} trait (#{i + 1})"
        p = trait.properties
        if isinstance(p, InvalidProperties):
            data = {"properties": p.raw}
            out += problems_from_errors(data, p.error_details(), prefix=("properties",), where_prefix=twhere)
        elif isinstance(p, CustomProperties):
            out += _check_custom_trait(m, comp, trait.type, p, twhere)
        elif isinstance(p, ScalerProperties):
            out += _check_scaler(p, twhere)
    if (
        props.image is not None
        and not comp.is_capability
        and not scalers
    ):
        out.append(warning(where, "has no spreadscaler or daemonscaler trait, so it will not be started"))
    return out


def _check_reuse(comp: Component, where: str) -> list[Problem]:
    """``properties.reuse``: components only; an idle limit needs reuse to mean anything."""
    reuse = comp.properties.reuse
    assert reuse is not None
    if comp.is_capability:
        return [error(f"{where} > properties.reuse", "instance reuse applies to WebAssembly components "
                      "(type: component), not to capability providers")]
    if reuse.max_idle_s is not None and reuse.max_invocations == 1:
        return [warning(f"{where} > properties.reuse",
                        "max_idle_s has no effect while max_invocations is 1 (every call gets a fresh instance)")]
    return []


def _check_custom_trait(
    m: Manifest, comp: Component, ttype: str, p: CustomProperties, where: str
) -> list[Problem]:
    out = [
        warning(
            where,
            f"unknown trait type '{ttype}' is ignored{did_you_mean(ttype, BUILTIN_TRAITS | {'linkdef'})}".replace(
                "(did you mean 'linkdef'?)", "(did you mean 'link'?)"
            ),
        )
    ]
    if ttype == "linkdef":
        out[0] = warning(where, "trait type 'linkdef' is the old name for 'link' and is ignored; use type: link")
    # wadm checks the target of anything shaped like a link, whatever its trait type
    if isinstance(p.raw, dict) and "target" in p.raw:
        try:
            link = LinkProperties.model_validate(p.raw)
        except (ValidationError, ValueError):
            return out
        if m.component(link.target.name) is None:
            out.append(
                error(where,
                      f"link target \"{link.target.name}\" is missing from the manifest: no component has that "
                      f"name{did_you_mean(link.target.name, [c.name for c in m.components], 0.5)}")
            )
    return out


def _check_scaler(p: ScalerProperties, where: str) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for s in p.spread:
        if s.name in seen:
            out.append(error(where,
                             f"spread name '{s.name}' is used twice; spread names identify placements, so they must "
                             "differ"))
        seen.add(s.name)
        if s.weight == 0:
            out.append(warning(f"{where} > spread '{s.name}'", "weight 0: this spread gets no instances"))
    if p.spread and p.instances > 0 and all(s.effective_weight == 0 for s in p.spread):
        out.append(error(where,
                         "every spread has weight 0, so the instances cannot be divided; give at least one spread a "
                         "weight above 0"))
    return out


# --- links ------------------------------------------------------------------------------------


def _check_interface(namespace: str, package: str, interface: str) -> str | None:
    packages = KNOWN_INTERFACES.get(namespace)
    if packages is None:
        return None
    ifaces = packages.get(package)
    if ifaces is None:
        hint = did_you_mean(package, packages)
        return (f"unrecognized interface [{namespace}:{package}/{interface}]: "
                f"'{namespace}' has no package '{package}'{hint}")
    if interface not in ifaces:
        hint = did_you_mean(interface, ifaces)
        return (f"unrecognized interface [{namespace}:{package}/{interface}]: "
                f"'{namespace}:{package}' has no interface '{interface}'{hint}")
    return None


def _check_links(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    names = [c.name for c in m.components]
    for comp in m.components:
        seen: dict[tuple[str, str, str, str], str] = {}
        for link in comp.links:
            where = where_link(comp, link)
            target = m.component(link.target.name)
            if target is None:
                out.append(
                    error(where,
                          f"link target \"{link.target.name}\" is missing from the manifest: no component has that "
                          f"name{did_you_mean(link.target.name, names, 0.5)}")
                )
            elif comp.is_capability and target.is_capability:
                out.append(warning(where,
                                   "a capability provider can only link to a component, not to provider "
                                   f"\"{target.name}\"; this link is ignored"))
            named = (("namespace", link.namespace), ("package", link.package),
                     *(("interface", i) for i in link.interfaces))
            for what, value in named:
                if len(value) > 64 or not _WIT_ID.fullmatch(value):
                    out.append(error(where,
                                     f"{what} '{value}' is not a WIT identifier (kebab-case words of letters and "
                                     "digits, each starting with a letter)"))
            if link.name is not None and not _LINK_NAME.fullmatch(link.name):
                out.append(error(where,
                                 f"link name '{link.name}' must be 1-64 letters, digits, '_' or '-', starting with a "
                                 "letter or digit"))
            for iface in link.interfaces:
                msg = _check_interface(link.namespace, link.package, iface)
                if msg:
                    out.append(warning(where, msg))
                key = (link.link_name, link.namespace, link.package, iface)
                if key in seen:
                    out.append(
                        error(where,
                              f"duplicate link found inside component \"{comp.name}\": {link.link_name} "
                              f"({link.namespace}:{link.package}/{iface}) "
                              f"is linked to both \"{seen[key]}\" and \"{link.target.name}\"; give the links different "
                              "names")
                    )
                else:
                    seen[key] = link.target.name
            for key_name in link.deprecated_keys:
                new = "source:config:" if key_name == "source_config" else "target:config:"
                out.append(warning(where, f"'{key_name}' is deprecated; use {new} instead"))
            for key_name in (link.target.model_extra or {}):
                out.append(warning(f"{where} > target", f"unknown key '{key_name}' is ignored"))
            if link.source is not None:
                for key_name in (link.source.model_extra or {}):
                    out.append(warning(f"{where} > source", f"unknown key '{key_name}' is ignored"))
    return out


def _check_link_config_names(m: Manifest) -> list[Problem]:
    """wadm: every config named in any link (source or target) has a distinct name."""
    out: list[Problem] = []
    seen: set[str] = set()
    for comp in m.components:
        for link in comp.links:
            for cfg in (*link.target.config, *link.source_config):
                if cfg.name in seen:
                    out.append(error(where_link(comp, link),
                                     f"duplicate link config name found: '{cfg.name}' is used by more than one link "
                                     "config"))
                seen.add(cfg.name)
    return out


def _all_configs(m: Manifest) -> list[tuple[str, ConfigProperty]]:
    found: list[tuple[str, ConfigProperty]] = []
    for comp in m.components:
        for cfg in comp.properties.config:
            found.append((where_component(comp), cfg))
        for link in comp.links:
            for cfg in (*link.target.config, *link.source_config):
                found.append((where_link(comp, link), cfg))
    return found


def _check_inline_configs(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    inline: dict[str, tuple[str, ConfigProperty]] = {}
    configs = _all_configs(m)
    for where, cfg in configs:
        if not cfg.inline:
            continue
        stored = config_name(m.name, cfg)
        prior = inline.get(stored)
        if prior is not None and prior[1].properties != cfg.properties:
            out.append(
                error(where,
                      f"config '{cfg.name}' is defined with different properties at {prior[0]}; both would be stored "
                      f"as '{stored}'")
            )
        inline.setdefault(stored, (where, cfg))
    for where, cfg in configs:
        if not _CONFIG_NAME.fullmatch(config_name(m.name, cfg)):
            out.append(error(where,
                             f"config name '{cfg.name}' must be 1-128 letters, digits, '.', '_' or '-', starting with "
                             "a letter or digit"))
    inline_names = {cfg.name for _, cfg in inline.values()}
    for where, cfg in configs:
        if not cfg.inline and cfg.name in inline_names:
            out.append(
                warning(where, f"config '{cfg.name}' is referenced by name here but defined with properties elsewhere; "
                        "inline configs are stored as "
                        f"'{config_name(m.name, ConfigProperty(name=cfg.name, properties={}))}', "
                        "so this reference names a different, pre-existing config")
            )
    return out


def _check_secrets(m: Manifest) -> list[Problem]:
    """wadm's policy checks for secrets, and what Trellis does with them: a component's or
    provider's own ``secrets:`` are delivered from the lattice's keyholder (backend ``nats-kv``);
    secrets on links are not delivered."""
    out: list[Problem] = []
    policies = {p.name: p for p in m.spec.policies}
    for comp in m.components:
        where = where_component(comp)
        secrets = list(comp.properties.secrets)
        on_links = []
        for link in comp.links:
            on_links += list(link.target.secrets)
            if link.source is not None:
                on_links += list(link.source.secrets)
        if on_links:
            out.append(warning(where, "secrets on links are not delivered by Trellis; list them under the "
                                      "component's (or provider's) properties.secrets"))
        seen: set[str] = set()
        for secret in secrets:
            if secret.name in seen:
                out.append(error(where, f"secret '{secret.name}' is listed twice"))
            seen.add(secret.name)
            if not re.match(SECRET_NAME_PATTERN, secret.properties.key):
                out.append(error(where, f"secret '{secret.name}': key '{secret.properties.key}' is not a valid "
                                        "secret name (letters, digits, '-', '_', '.', '=', '/')"))
            if secret.properties.version is not None and not secret.properties.version.isdigit():
                out.append(error(where, f"secret '{secret.name}': version '{secret.properties.version}' is not a "
                                        "revision number ('trellis secret list' shows them)"))
        for secret in secrets + on_links:
            pol = policies.get(secret.properties.policy)
            if pol is None:
                out.append(error(where,
                                 f"secret '{secret.name}' is mapped to unknown policy '{secret.properties.policy}'"))
            elif pol.type != SECRET_POLICY_TYPE:
                out.append(
                    error(where,
                          f"secret '{secret.name}' is mapped to policy '{pol.name}' which is not a secret policy "
                          f"(expected type '{SECRET_POLICY_TYPE}')")
                )
            elif "backend" not in pol.properties:
                out.append(
                    error(where,
                          f"secret '{secret.name}' is mapped to policy '{pol.name}' which does not include a 'backend' "
                          "property")
                )
            elif pol.properties.get("backend") != SECRETS_BACKEND and secret in secrets:
                out.append(warning(where, f"secret '{secret.name}': policy '{pol.name}' names backend "
                                          f"'{pol.properties.get('backend')}'; Trellis serves every secret from its "
                                          f"own '{SECRETS_BACKEND}' keyholder ('trellis secret put')"))
    return out


def _check_components(m: Manifest) -> list[Problem]:
    out: list[Problem] = []
    for comp in m.components:
        out += _check_component(m, comp)
    return out


CHECKS: list[Check] = [
    _check_header,
    _check_metadata,
    _check_component_identity,
    _check_components,
    check_provider_images,
    _check_links,
    check_builtin_links,
    _check_link_config_names,
    _check_inline_configs,
    _check_secrets,
    check_local_state,
]
"""What `validate` runs, in order. A new check is a function ``(Manifest) -> list[Problem]``
appended here; checks that read files or the network belong in `local_checks.LOCAL_CHECKS`."""


# --- deploy-time: shared components --------------------------------------------------------


def check_shared_components(manifest: Manifest, deployed: Iterable[Manifest]) -> list[Problem]:
    """Errors for components that use a shared application (``properties.application``)
    that is not deployed, not shared, or has no such component. `deployed` is every
    application currently deployed in the lattice."""
    apps = {app.name: app for app in deployed}
    out: list[Problem] = []
    for comp in manifest.components:
        ref = comp.shared
        if ref is None or comp.image is not None:
            continue
        app = apps.get(ref.name)
        where = where_component(comp)
        if app is None:
            out.append(error(where, f"shared application '{ref.name}' is not deployed"))
        elif not app.shared:
            out.append(
                error(where,
                      f"application '{ref.name}' is not shared (it needs the annotation "
                      "experimental.wasmcloud.dev/shared: 'true')")
            )
        else:
            target = app.component(ref.component)
            if target is None or target.image is None:
                out.append(error(where, f"shared application '{ref.name}' has no component '{ref.component}'"))
            elif target.kind != comp.kind:
                out.append(error(where,
                                 f"'{ref.component}' in application '{ref.name}' is a {target.kind}, but this "
                                 f"component is a {comp.kind}"))
    return out


__all__ = [
    "CHECKS",
    "KNOWN_INTERFACES",
    "SECRET_POLICY_TYPE",
    "check_shared_components",
    "validate",
    "where_component",
    "where_link",
]
