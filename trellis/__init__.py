"""Trellis: a distributed platform for WebAssembly components."""

from trellis.kit.deferred import nats_without_eager_aiohttp
from trellis.kit.version import __version__

nats_without_eager_aiohttp()  # before any part imports nats: ~14 MiB less in every process (kit/deferred.py)

__all__ = ["__version__"]
