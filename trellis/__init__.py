"""Trellis: a distributed platform for WebAssembly components."""

__version__ = "0.1.0"
