"""Imports a dependency makes eagerly that a Trellis process almost never uses, made at first use.

nats-py's ``nats.aio.transport`` runs ``import aiohttp`` at import time, for its WebSocket
transport only (``ws://`` servers). Importing aiohttp costs every process that imports
nats ~14 MiB of private memory (aiohttp's client builds its default TLS contexts, loading
the CA bundle, when it is imported) and ~0.1-0.4 s: a host, its workers, wadm and each
provider pay it, eight processes for the orders app, and none of them speaks WebSocket
to NATS. :func:`nats_without_eager_aiohttp` imports nats while ``aiohttp`` is a stand-in
module; nats keeps the stand-in, which imports the real aiohttp the first time anything
is read from it (a ``ws://`` connection). Anything else that imports aiohttp gets the
real module, as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.Lock()


class DeferredModule(types.ModuleType):
    """Stands in for a module until an attribute is read from it; then imports the real one."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_deferred_real"] = None

    def __getattr__(self, attr: str) -> Any:  # only called for what the stand-in does not have
        real = self.__dict__["_deferred_real"]
        if real is None:
            with _lock:
                real = self.__dict__["_deferred_real"]
                if real is None:
                    if sys.modules.get(self.__name__) is self:
                        del sys.modules[self.__name__]
                    real = importlib.import_module(self.__name__)
                    self.__dict__["_deferred_real"] = real
        return getattr(real, attr)


def nats_without_eager_aiohttp() -> None:
    """Import nats-py with aiohttp deferred (see the module's docstring); a no-op when nats or aiohttp is
    already imported, or when aiohttp is not installed."""
    if "nats" in sys.modules or "aiohttp" in sys.modules:
        return
    try:
        if importlib.util.find_spec("aiohttp") is None:
            return
    except (ImportError, ValueError):
        return
    stand_in = DeferredModule("aiohttp")
    sys.modules["aiohttp"] = stand_in
    try:
        import nats.aio.transport  # noqa: F401 (imported for its side effect: it keeps the stand-in)
    except ImportError:
        pass
    finally:
        if sys.modules.get("aiohttp") is stand_in:
            del sys.modules["aiohttp"]
