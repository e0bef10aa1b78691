"""Links: which component or provider answers a source's imports (wasmCloud 1.x model).

A link says: when ``source_id`` calls an interface of ``wit_namespace:wit_package``
listed in ``interfaces`` under link name ``name``, the call goes to ``target``.
``source_config`` / ``target_config`` name configs (:mod:`trellis.interfaces.lattice_config`)
the source and the target receive for this link.

Identity and conflicts (decided here, enforced by :mod:`trellis.interfaces.store`):

* a link is identified by (source, namespace, package, name, target); putting it
  again replaces it (interfaces and config may change);
* two links from one source, namespace, package and name *to different targets*
  conflict when their interfaces overlap: a call would have two answers. Disjoint
  interfaces may go to different targets (``store`` to one provider, ``atomics``
  to another).

Pure types and functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import subjects
from .errors import ErrorCode, TrellisError
from .lattice_config import LatticeConfigError, check_config_name

DEFAULT_LINK_NAME = "default"
#: WIT identifiers: kebab-case words (each word letters/digits, starting with a letter)
_WIT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*(-[A-Za-z][A-Za-z0-9]*)*$")
_LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
_WIT_INTERFACE = re.compile(
    r"^(?P<ns>[^:/@\s]+):(?P<pkg>[^:/@\s]+)/(?P<iface>[^:/@\s]+)(@(?P<version>[^\s/]+))?$"
)


class LinkError(TrellisError):
    """A link that cannot be stored; the message says why."""

    code = ErrorCode.BAD_REQUEST


class LinkConflictError(LinkError):
    """The link would give a call two answers; the message names both links."""

    code = ErrorCode.CONFLICT

    def __init__(self, new: Link, existing: Link) -> None:
        overlap = sorted(set(new.interfaces) & set(existing.interfaces))
        super().__init__(
            f"link {new.describe()} conflicts with existing link {existing.describe()}: "
            f"both answer {', '.join(f'{new.wit_namespace}:{new.wit_package}/{i}' for i in overlap)} "
            f"for {new.source_id} under link name {new.name!r}. Delete the existing link first "
            f"('trellis link del {existing.source_id} {existing.wit_namespace} {existing.wit_package}"
            f" --link-name {existing.name}') or use another link name"
        )
        self.new = new
        self.existing = existing


def check_wit_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _WIT_ID.match(value) or len(value) > 64:
        raise ValueError(
            f"invalid {kind} {value!r}: use a WIT identifier (kebab-case words of letters and digits, "
            "each starting with a letter, e.g. 'keyvalue' or 'incoming-handler')"
        )
    return value


def check_link_name(value: str) -> str:
    if not isinstance(value, str) or not _LINK_NAME.match(value):
        raise ValueError(
            f"invalid link name {value!r}: use 1-64 letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class WitInterface:
    """``ns:pkg/iface@version`` taken apart."""

    namespace: str
    package: str
    interface: str
    version: str = ""

    def __str__(self) -> str:
        v = f"@{self.version}" if self.version else ""
        return f"{self.namespace}:{self.package}/{self.interface}{v}"


def parse_wit_interface(text: str) -> WitInterface:
    """Parse ``wasi:keyvalue/store`` or ``wasi:keyvalue/store@0.2.0-draft``."""
    m = _WIT_INTERFACE.match(text or "")
    if not m:
        raise ValueError(f"invalid WIT interface {text!r}: expected namespace:package/interface[@version]")
    ns = check_wit_id("WIT namespace", m["ns"])
    pkg = check_wit_id("WIT package", m["pkg"])
    iface = check_wit_id("WIT interface", m["iface"])
    return WitInterface(ns, pkg, iface, m["version"] or "")


class Link(BaseModel):
    """One link (wasmCloud 1.x shape)."""

    model_config = ConfigDict(extra="forbid")

    source_id: str = Field(description="component or provider that makes the calls")
    target: str = Field(description="component or provider that answers them")
    name: str = Field(default=DEFAULT_LINK_NAME,
                      description="link name; lets one source have several targets per package")
    wit_namespace: str = Field(description="e.g. 'wasi'")
    wit_package: str = Field(description="e.g. 'keyvalue'")
    interfaces: list[str] = Field(description="interface names within the package, e.g. ['store', 'atomics']")
    source_config: list[str] = Field(default_factory=list, description="named configs given to the source")
    target_config: list[str] = Field(default_factory=list, description="named configs given to the target")

    @field_validator("source_id", "target")
    @classmethod
    def _id(cls, v: str, info: Any) -> str:
        return subjects.check_id("source" if info.field_name == "source_id" else "target", v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_link_name(v)

    @field_validator("wit_namespace", "wit_package")
    @classmethod
    def _wit(cls, v: str, info: Any) -> str:
        return check_wit_id(info.field_name.replace("_", " ").replace("wit ", "WIT "), v)

    @field_validator("interfaces")
    @classmethod
    def _interfaces(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a link needs at least one interface")
        out: list[str] = []
        for i in v:
            check_wit_id("WIT interface", i)
            if i not in out:
                out.append(i)
        return sorted(out)

    @field_validator("source_config", "target_config")
    @classmethod
    def _configs(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for n in v:
            try:
                check_config_name(n)
            except LatticeConfigError as exc:
                raise ValueError(exc.message) from None
            if n not in out:
                out.append(n)
        return out

    @classmethod
    def build(cls, **fields: Any) -> Link:
        """Like ``Link(**fields)`` but raising :class:`LinkError` with one readable message."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise LinkError(f"invalid link: {validation_message(exc)}") from None

    # --- identity ------------------------------------------------------------------

    @property
    def group(self) -> tuple[str, str, str, str]:
        """(source, namespace, package, name): links that may conflict share a group."""
        return (self.source_id, self.wit_namespace, self.wit_package, self.name)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """(source, namespace, package, name, target): putting a link with the same identity replaces it."""
        return (*self.group, self.target)

    def describe(self) -> str:
        ifaces = self.interfaces[0] if len(self.interfaces) == 1 else "{" + ",".join(self.interfaces) + "}"
        return (f"{self.source_id} -> {self.target} {self.wit_namespace}:{self.wit_package}/{ifaces} "
                f"(name {self.name!r})")

    def covers(self, namespace: str, package: str, interface: str) -> bool:
        return (self.wit_namespace, self.wit_package) == (namespace, package) and interface in self.interfaces

    def conflicts_with(self, other: Link) -> bool:
        return (
            self.group == other.group
            and self.target != other.target
            and bool(set(self.interfaces) & set(other.interfaces))
        )

    def config_for(self, entity_id: str) -> list[str]:
        """The config names ``entity_id`` gets for this link (its side: source or target)."""
        if entity_id == self.target and entity_id != self.source_id:
            return list(self.target_config)
        if entity_id == self.source_id and entity_id != self.target:
            return list(self.source_config)
        if entity_id == self.source_id:  # a link to itself: both sides
            return list(dict.fromkeys([*self.source_config, *self.target_config]))
        return []


def check_conflicts(existing: Iterable[Link], new: Link) -> None:
    """Raise :class:`LinkConflictError` if ``new`` conflicts with any existing link."""
    for old in existing:
        if new.conflicts_with(old):
            raise LinkConflictError(new, old)


def find_link(links: Iterable[Link], source_id: str, interface: str | WitInterface,
              name: str = DEFAULT_LINK_NAME) -> Link | None:
    """The link a call from ``source_id`` to ``interface`` under link ``name`` goes over."""
    wi = parse_wit_interface(interface) if isinstance(interface, str) else interface
    for link in links:
        if link.source_id == source_id and link.name == name and link.covers(wi.namespace, wi.package, wi.interface):
            return link
    return None


def validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
