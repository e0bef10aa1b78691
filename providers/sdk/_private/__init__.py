"""Internals of the provider SDK; import the public names from ``trellis.providers.sdk``."""
