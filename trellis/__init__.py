"""Trellis: a distributed platform for WebAssembly components."""

from trellis.kit.version import __version__

__all__ = ["__version__"]
