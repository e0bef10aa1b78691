"""The lifecycle shared by built-in providers that components call (key-value, SQL).

Subclasses say how to build and tear down one link's state, how to probe their
backends and how to close them; :meth:`LinkedBackend.provider` wires the SDK
callbacks: links with the provider as target are built in ``on_link_put`` and
torn down in ``on_link_deleted``, a change of the provider's own config
rebuilds the links it affects, health answers from the background prober, and
shutdown closes links, then backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from trellis.providers.sdk import Link, Provider

from .health import Prober
from .links import LinkTable

S = TypeVar("S")


class LinkedBackend(ABC, Generic[S]):
    name: str
    #: config keys a secret of the same name (the manifest's ``secrets:`` ``name``) sets, over the config
    secret_keys: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.links: LinkTable[S] = LinkTable(self.name, self.build_link, self.teardown_link)
        self.prober = Prober(self.name, self.probe)

    # --- what a backend provides -------------------------------------------------------

    @abstractmethod
    async def build_link(self, link: Link, config: dict[str, str]) -> S:
        """One link's state from its merged config (no I/O; raise ConfigError for bad config)."""

    @abstractmethod
    async def teardown_link(self, state: S) -> None: ...

    @abstractmethod
    async def probe(self) -> tuple[bool, str]:
        """(backends reachable, message)."""

    @abstractmethod
    async def close_backends(self) -> None: ...

    async def started(self, info: Any) -> None:
        """Called from on_start, after the provider's own config is known."""

    # --- SDK callbacks -----------------------------------------------------------------

    def own_config(self, info: Any) -> dict[str, str]:
        """The provider's own config, with the values its secrets set (kept out of every log)."""
        secrets = getattr(info, "secrets", {})
        return {**info.config, **{k: secrets[k].reveal_str() for k in self.secret_keys if k in secrets}}

    async def on_start(self, *, info: Any, **kwargs: Any) -> None:
        self.links.base = self.own_config(info)
        await self.started(info)

    async def on_link_put(self, link: Link, config: dict[str, str], *, info: Any, **kwargs: Any) -> None:
        if link.target == info.provider_id:
            await self.links.put(link, config, info.provider_id)

    async def on_link_deleted(self, link: Link, *, info: Any, **kwargs: Any) -> None:
        await self.links.delete(link, info.provider_id)

    async def on_config_updated(self, name: str, values: dict[str, str], *, info: Any, **kwargs: Any) -> None:
        await self.links.rebase(self.own_config(info))

    async def health(self, **kwargs: Any) -> tuple[bool, str]:
        return self.prober.answer()

    async def on_shutdown(self, grace_s: float, **kwargs: Any) -> None:
        await self.prober.close()
        await self.links.close_all()
        await self.close_backends()

    def link_problems(self) -> list[str]:
        return [f"link {k[0]}/{k[1]}: {e}" for k, e in self.links.errors().items()]

    def provider(self, exports: list[Any], description: str) -> Provider:
        p = Provider(self.name, exports=exports, description=description)
        p.on_start(self.on_start)
        p.on_link_put(self.on_link_put)
        p.on_link_deleted(self.on_link_deleted)
        p.on_config_updated(self.on_config_updated)
        p.health(self.health)
        p.on_shutdown(self.on_shutdown)
        return p
