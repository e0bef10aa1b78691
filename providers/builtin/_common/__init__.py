"""Helpers shared by the built-in providers (internal: not part of the SDK).

* :mod:`.config`: typed config values, provider config merged under link config;
* :mod:`.links`: per-link state keyed by (component, link name);
* :mod:`.shared`: backend connections shared by links with equal settings, opened on first use;
* :mod:`.health`: background backend probes answering health checks at once;
* :mod:`.lifecycle`: the SDK callbacks of a provider that components call;
* :mod:`.calls`: backend work bounded by the caller's deadline;
* :mod:`.nats`: which NATS server, and the names reserved on the lattice's;
* :mod:`.kv`, :mod:`.sql`: the WIT side of ``wasi:keyvalue`` and ``trellis:sql``.
"""
