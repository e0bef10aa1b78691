"""The wadm application manifest (OAM ``core.oam.dev/v1beta1`` ``Application``) as pydantic models.

The format is wadm's, with two Trellis additions: a component's ``properties.reuse``
(`ReuseProperties`: instance reuse, which wadm's format cannot express) and
``properties.timeout_ms`` (its per-call deadline). Unknown
keys are rejected where wadm rejects them (the manifest root, component
properties, traits, scaler properties, spreads, config entries); Trellis also rejects
them on components and link properties,
where wadm means to but its parser silently drops them. Where wadm ignores unknown
keys (metadata, spec, policies, link target/source blocks, secrets) they are kept
and `validate()` warns about them.

Trait properties are parsed by trait type. Properties of a built-in trait
(``spreadscaler``, ``daemonscaler``, ``link``) that do not fit are kept as
`InvalidProperties` (with the reasons) rather than failing the whole parse, so
that `validate()` can report every problem in the manifest at once. Properties of
any other trait type are kept as `CustomProperties`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails

from trellis.interfaces.links import DEFAULT_LINK_NAME

API_VERSION = "core.oam.dev/v1beta1"
APPLICATION_KIND = "Application"
MANIFEST_VERSION_ANNOTATION = "version"
DESCRIPTION_ANNOTATION = "description"
SHARED_ANNOTATION = "experimental.wasmcloud.dev/shared"
SPREADSCALER = "spreadscaler"
DAEMONSCALER = "daemonscaler"
LINK = "link"
SCALER_TRAITS = frozenset({SPREADSCALER, DAEMONSCALER})
BUILTIN_TRAITS = frozenset({SPREADSCALER, DAEMONSCALER, LINK})
DEFAULT_SPREAD_WEIGHT = 100
DEFAULT_SPREAD_NAME = "default"
LATEST_VERSION = "latest"

NonNegInt = Annotated[StrictInt, Field(ge=0)]


class _Strict(BaseModel):
    """Unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Lenient(BaseModel):
    """Unknown keys are kept (and `validate()` warns about them)."""

    model_config = ConfigDict(extra="allow", frozen=True)


def sanitize_id(text: str) -> str:
    """Lower-case, with every character that is not an ASCII letter or digit replaced by ``_``."""
    return re.sub(r"[^a-z0-9]", "_", text.lower())


def generated_id(app_name: str, name: str) -> str:
    """wadm's id for a component, provider or inline config with no explicit id: ``<app>-<name>``, sanitized."""
    return f"{sanitize_id(app_name)}-{sanitize_id(name)}"


# --- config, secrets, shared components ------------------------------------------------


class ConfigProperty(_Strict):
    """A named config. With `properties`, the app owns it (Trellis creates it as
    ``<app>-<name>``); without, it names a config that already exists in the lattice."""

    name: str
    properties: dict[str, str] | None = None

    @property
    def inline(self) -> bool:
        return self.properties is not None


class SecretSourceProperty(_Lenient):
    policy: str
    key: str
    field: str | None = None
    version: str | None = None


class SecretProperty(_Lenient):
    name: str
    properties: SecretSourceProperty


class SharedApplication(_Lenient):
    """``properties.application``: use component `component` of the shared application `name`."""

    name: str
    component: str


class ReuseProperties(_Strict):
    """``properties.reuse`` (a Trellis extension; wadm has no such key): instance reuse for a
    WebAssembly component, as ``trellis start component --reuse N --reuse-idle S`` sets it.
    Without it every call gets a fresh instance."""

    max_invocations: Annotated[StrictInt, Field(ge=1)] = 1
    """Calls one instance serves before it is dropped (``--reuse``); 1 is a fresh instance per call."""
    max_idle_s: Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)] | None = None
    """Drop an instance idle this many seconds (``--reuse-idle``); unset keeps it until it has served them."""

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            raise ValueError(f"expected a mapping such as {{max_invocations: {data}}}, got the number {data}")
        return data


class ComponentProperties(_Strict):
    image: str | None = None
    source: str | None = None
    """Where ``image`` came from (a Trellis extension): ``trellis app deploy|put`` uploads a local
    file or folder to the lattice's artifact store, sets ``image`` to its ``lattice://sha256:…``
    reference and records the local ``file://`` path here. Informational: hosts never read it."""
    application: SharedApplication | None = None
    id: str | None = None
    config: tuple[ConfigProperty, ...] = ()
    secrets: tuple[SecretProperty, ...] = ()
    reuse: ReuseProperties | None = None
    timeout_ms: Annotated[StrictInt, Field(ge=1, le=86_400_000)] | None = None
    """Components only (a Trellis extension, as ``trellis start component --timeout-ms``): the
    per-call deadline inside the component, in milliseconds (default 10 000). For a ``wasi:http``
    handler it is an idle budget: it restarts whenever the request's or response's body moves
    (docs/components.md, "Limits")."""
    state: Literal["local", "shared"] | None = None
    """Capability providers: ``local`` if its data lives on the host it runs on (wadm then keeps it
    on that host), ``shared`` if not (wadm may move it freely); unset: as the provider declares
    (``builtin:sqldb-sqlite`` is local)."""


# --- trait properties -------------------------------------------------------------------


class Spread(_Strict):
    name: str
    requirements: dict[str, str] = {}
    weight: NonNegInt | None = None

    @property
    def effective_weight(self) -> int:
        return DEFAULT_SPREAD_WEIGHT if self.weight is None else self.weight


class ScalerProperties(_Strict):
    """Properties of ``spreadscaler`` and ``daemonscaler`` (``replicas`` is accepted for ``instances``)."""

    instances: Annotated[
        StrictInt, Field(ge=0, validation_alias=AliasChoices("instances", "replicas"))
    ]
    spread: tuple[Spread, ...] = ()


class TargetConfig(_Lenient):
    name: str
    config: tuple[ConfigProperty, ...] = ()
    secrets: tuple[SecretProperty, ...] = ()


class ConfigDefinition(_Lenient):
    config: tuple[ConfigProperty, ...] = ()
    secrets: tuple[SecretProperty, ...] = ()


class LinkProperties(_Strict):
    """Properties of a ``link`` trait.

    The deprecated forms are accepted and translated: ``target: NAME`` for
    ``target: {name: NAME}``, ``target_config`` for ``target.config`` and
    ``source_config`` for ``source.config``. `deprecated_keys` says which were used.
    """

    namespace: str
    package: str
    interfaces: Annotated[tuple[str, ...], Field(min_length=1)]
    target: TargetConfig
    source: ConfigDefinition | None = None
    name: str | None = None

    _deprecated_keys: tuple[str, ...] = PrivateAttr(default=())

    @property
    def deprecated_keys(self) -> tuple[str, ...]:
        return self._deprecated_keys

    @property
    def link_name(self) -> str:
        return self.name if self.name is not None else DEFAULT_LINK_NAME

    @property
    def source_config(self) -> tuple[ConfigProperty, ...]:
        return self.source.config if self.source is not None else ()

    @model_validator(mode="wrap")
    @classmethod
    def _translate_deprecated(cls, data: Any, handler: Any) -> Any:
        used: list[str] = []
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("target"), str):
                data["target"] = {"name": data["target"]}
            if data.get("target_config", ...) is None:
                del data["target_config"]
            if data.get("source_config", ...) is None:
                del data["source_config"]
            if "target_config" in data:
                used.append("target_config")
                old = data.pop("target_config")
                target = data.get("target")
                if isinstance(target, dict):
                    if target.get("config"):
                        raise ValueError(
                            "both 'target_config' (deprecated) and 'target.config' are set; "
                            "keep only 'target.config'"
                        )
                    data["target"] = {**target, "config": old}
            if "source_config" in data:
                used.append("source_config")
                old = data.pop("source_config")
                source = data.get("source")
                if source is None:
                    data["source"] = {"config": old}
                elif isinstance(source, dict):
                    if source.get("config"):
                        raise ValueError(
                            "both 'source_config' (deprecated) and 'source.config' are set; "
                            "keep only 'source.config'"
                        )
                    data["source"] = {**source, "config": old}
        inst = handler(data)
        if used and isinstance(inst, LinkProperties):
            inst._deprecated_keys = tuple(used)
        return inst


class CustomProperties(_Strict):
    """Properties of a trait type Trellis does not know; kept as given."""

    raw: Any


class InvalidProperties(_Strict):
    """Properties of a built-in trait that do not fit its schema, with pydantic's reasons."""

    raw: Any
    errors: tuple[Any, ...] = Field(default=(), exclude=True)

    def error_details(self) -> list[ErrorDetails]:
        return list(self.errors)


def _plain_error(err: ErrorDetails) -> ErrorDetails:
    """A pydantic error with only plain values in its context (no exception objects)."""
    plain: ErrorDetails = {"type": err["type"], "loc": err["loc"], "msg": err["msg"], "input": err.get("input")}
    ctx = {k: v for k, v in (err.get("ctx") or {}).items() if isinstance(v, str | int | float)}
    if ctx:
        plain["ctx"] = ctx
    return plain


TraitProperties = ScalerProperties | LinkProperties | CustomProperties | InvalidProperties

_TRAIT_SCHEMAS: dict[str, type[BaseModel]] = {
    SPREADSCALER: ScalerProperties,
    DAEMONSCALER: ScalerProperties,
    LINK: LinkProperties,
}


class Trait(_Strict):
    type: str
    properties: TraitProperties

    @field_serializer("properties")
    def _serialize_properties(self, props: TraitProperties) -> Any:
        if isinstance(props, CustomProperties | InvalidProperties):
            return props.raw
        return props.model_dump(mode="python", by_alias=True, exclude_none=True)

    @model_validator(mode="wrap")
    @classmethod
    def _parse_properties(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, dict) and "properties" in data and isinstance(data.get("type"), str):
            raw = data["properties"]
            if not isinstance(raw, BaseModel):
                schema = _TRAIT_SCHEMAS.get(data["type"])
                props: BaseModel
                if schema is None:
                    props = CustomProperties(raw=raw)
                else:
                    try:
                        props = schema.model_validate(raw)
                    except ValidationError as exc:
                        props = InvalidProperties(raw=raw, errors=tuple(_plain_error(e) for e in exc.errors()))
                    except ValueError as exc:  # raised by a model validator outside pydantic's wrapping
                        props = InvalidProperties(
                            raw=raw,
                            errors=({"type": "value_error", "loc": (), "msg": str(exc)},),
                        )
                data = {**data, "properties": props}
        return handler(data)

    @property
    def is_scaler(self) -> bool:
        return self.type in SCALER_TRAITS

    @property
    def is_link(self) -> bool:
        return self.type == LINK

    @property
    def scaler(self) -> ScalerProperties | None:
        return self.properties if self.is_scaler and isinstance(self.properties, ScalerProperties) else None

    @property
    def link(self) -> LinkProperties | None:
        return self.properties if self.is_link and isinstance(self.properties, LinkProperties) else None


# --- components, policies, manifest ---------------------------------------------------


class Component(_Strict):
    name: str
    type: Literal["component", "actor", "capability"]
    properties: ComponentProperties
    traits: tuple[Trait, ...] | None = None

    @property
    def is_capability(self) -> bool:
        return self.type == "capability"

    @property
    def kind(self) -> Literal["component", "capability"]:
        """``actor`` is wadm's old name for ``component``."""
        return "capability" if self.type == "capability" else "component"

    @property
    def image(self) -> str | None:
        return self.properties.image

    @property
    def shared(self) -> SharedApplication | None:
        return self.properties.application

    @property
    def all_traits(self) -> tuple[Trait, ...]:
        return self.traits or ()

    @property
    def scaler_traits(self) -> list[Trait]:
        return [t for t in self.all_traits if t.is_scaler]

    @property
    def scaler_trait(self) -> Trait | None:
        """The component's (first) spreadscaler or daemonscaler trait, if any."""
        found = self.scaler_traits
        return found[0] if found else None

    @property
    def links(self) -> list[LinkProperties]:
        return [t.link for t in self.all_traits if t.link is not None]


class Policy(_Lenient):
    name: str
    type: str
    properties: dict[str, str] = {}


class Metadata(_Lenient):
    name: str
    annotations: dict[str, str] = {}
    labels: dict[str, str] = {}


class Specification(_Lenient):
    components: tuple[Component, ...]
    policies: tuple[Policy, ...] = ()


class Manifest(_Strict):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata
    spec: Specification

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def declared_version(self) -> str | None:
        """The ``version`` annotation, if set."""
        return self.metadata.annotations.get(MANIFEST_VERSION_ANNOTATION)

    @property
    def version(self) -> str:
        """The ``version`` annotation, or (as wadm gives unversioned manifests a
        generated version) ``auto-<digest>``: the same content always gets the same version."""
        declared = self.declared_version
        return declared if declared else f"auto-{self.digest()[:12]}"

    @property
    def description(self) -> str | None:
        return self.metadata.annotations.get(DESCRIPTION_ANNOTATION)

    @property
    def shared(self) -> bool:
        """Whether other applications may use this application's components."""
        return self.metadata.annotations.get(SHARED_ANNOTATION, "").lower() == "true"

    @property
    def components(self) -> tuple[Component, ...]:
        return self.spec.components

    def component(self, name: str) -> Component | None:
        for comp in self.spec.components:
            if comp.name == name:
                return comp
        return None

    def component_id(self, component: Component) -> str:
        """The lattice id of a component or provider defined in this manifest:
        its explicit ``id``, else ``<app>-<name>`` sanitized (wadm's rule). For a
        shared component (``application``), the id in the shared application is
        computed from that application's name; see `shared_component_id`."""
        if component.properties.id:
            return component.properties.id
        if component.shared is not None and component.image is None:
            return generated_id(component.shared.name, component.shared.component)
        return generated_id(self.name, component.name)

    def to_data(self) -> dict[str, Any]:
        """The manifest as plain JSON-able data, in manifest key spelling."""
        data = _json_safe(self.model_dump(mode="python", by_alias=True, exclude_none=True))
        assert isinstance(data, dict)
        return data

    def digest(self) -> str:
        """sha256 of the canonical JSON form of the manifest (computed once: a manifest is frozen, and
        an unversioned one's `version` asks for it several times in every pass of the controller,
        which serialised the whole manifest each time: a third of an idle controller's resync)."""
        return self._canonical_digest

    @functools.cached_property
    def _canonical_digest(self) -> str:
        text = json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Manifest:
        """A copy; one with changes has its digest computed again."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.__dict__.pop("_canonical_digest", None)
        return copy


def _json_safe(value: Any) -> Any:
    """`value` with every part made JSON-able (custom trait properties may hold any YAML value)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_json_safe(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, BaseModel):
        return _json_safe(value.model_dump(mode="python", by_alias=True, exclude_none=True))
    return str(value)


def config_name(app_name: str, config: ConfigProperty) -> str:
    """The lattice name of a config entry: inline configs are owned by the app and
    named ``<app>-<name>`` (sanitized, as wadm does); references are used as written."""
    return generated_id(app_name, config.name) if config.inline else config.name


KNOWN_KEYS: frozenset[str] = frozenset(
    {
        "apiVersion", "kind", "metadata", "spec", "name", "annotations", "labels",
        "components", "policies", "type", "properties", "traits", "image", "application",
        "id", "config", "secrets", "component", "instances", "replicas", "spread",
        "requirements", "weight", "target", "source", "namespace", "package", "interfaces",
        "source_config", "target_config", "policy", "key", "field", "version",
        "reuse", "max_invocations", "max_idle_s", "state", "timeout_ms",
    }
)
"""Every key the format knows, for "did you mean" hints."""
