"""kv-memory: an in-memory key-value provider, the example of docs/providers.md.

* exports ``example:kv/store`` (get, set, delete, keys); every linked component
  gets its own namespace, so two components never see each other's keys;
* link config (the link's ``target_config``): ``max-keys`` caps how many keys a
  component may keep. Past it ``set`` returns the WIT error ``quota-exceeded``;
  a malformed value fails the call with ``ProviderError("bad-config", ...)``;
* imports ``example:kv/events``: after a change it calls ``changed`` on every
  component linked *from* this provider (``trellis link put kv-memory <component>
  example kv --interface events``);
* reports health (number of keys) and logs on shutdown.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from trellis.providers.sdk import CallError, Link, Provider, ProviderError, export

log = logging.getLogger("kv_memory")


class KvMemory:
    """The provider's state and handlers; one instance per provider process."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, bytes]] = defaultdict(dict)  # (component, bucket) -> keys
        self.subscribers: dict[tuple[str, ...], Link] = {}  # links from us to components wanting events

    def count(self, component: str) -> int:
        return sum(len(v) for (c, _), v in self.data.items() if c == component)

    # --- example:kv/store ----------------------------------------------------------

    @export("example:kv/store")
    def get(self, bucket: str, key: str, *, ctx, **kwargs) -> bytes | None:
        """A sync handler: it runs in a thread, fine for quick work like this."""
        return self.data[(ctx.source, bucket)].get(key)

    @export("example:kv/store", "set")  # WIT name given explicitly: 'set' is a Python builtin
    async def set_value(self, bucket: str, key: str, value: bytes, *, ctx, **kwargs) -> dict:
        limit = ctx.config.get("max-keys")
        if limit is not None:
            try:
                max_keys = int(limit)
            except ValueError:
                raise ProviderError("bad-config", f"max-keys must be a number, got {limit!r}") from None
            if key not in self.data[(ctx.source, bucket)] and self.count(ctx.source) >= max_keys:
                return {"err": {"quota-exceeded": f"{ctx.source} may keep {max_keys} keys"}}
        self.data[(ctx.source, bucket)][key] = bytes(value)
        for link in list(self.subscribers.values()):
            try:  # same trace as this call, never past its deadline
                await ctx.call(link, "example:kv/events.changed", bucket, key, timeout_s=2)
            except CallError as exc:
                log.warning("could not tell %s about %s/%s: %s", link.target, bucket, key, exc)
        return {"ok": None}

    @export("example:kv/store")
    async def delete(self, bucket: str, key: str, *, ctx, **kwargs) -> None:
        self.data[(ctx.source, bucket)].pop(key, None)

    @export("example:kv/store")
    async def keys(self, bucket: str, *, ctx, **kwargs) -> list[str]:
        return sorted(self.data[(ctx.source, bucket)])

    # --- lifecycle -------------------------------------------------------------------

    def link_put(self, link: Link, config: dict[str, str], *, info, **kwargs) -> None:
        if link.source_id == info.provider_id:  # we call the component: it wants events
            self.subscribers[link.identity] = link
        else:
            log.info("%s linked, config %s", link.source_id, config)

    def link_deleted(self, link: Link, *, info, **kwargs) -> None:
        self.subscribers.pop(link.identity, None)
        if link.target == info.provider_id:  # the component is unlinked: drop its data
            for k in [k for k in self.data if k[0] == link.source_id]:
                del self.data[k]

    def health(self, **kwargs) -> tuple[bool, str]:
        return True, f"{sum(len(v) for v in self.data.values())} keys"

    def shutdown(self, grace_s: float, **kwargs) -> None:
        log.info("stopping with %d keys (lost: they live in memory)", sum(len(v) for v in self.data.values()))


def build() -> Provider:
    """A fresh provider (tests build one each, so no state leaks between them)."""
    impl = KvMemory()
    p = Provider("kv-memory", exports=[impl], imports=["example:kv/events"],
                 description="in-memory key-value store")
    p.on_link_put(impl.link_put)
    p.on_link_deleted(impl.link_deleted)
    p.health(impl.health)
    p.on_shutdown(impl.shutdown)
    return p


kv = build()
