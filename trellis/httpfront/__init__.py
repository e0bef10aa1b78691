"""The HTTP front as a library: what serves HTTP/1.1 requests to components, wherever it runs.

* :mod:`.protocol` — the HTTP/1.1 connection (``httptools``), pipelining, keep-alive;
* :mod:`.wire` — request and response heads and bodies to and from ``trellis:http`` values;
* :mod:`.listener` — a listening socket, its route table, and the answer to each request;
* :mod:`.routes` — routes (host, path prefix → component) and the plan of listeners;
* :mod:`.config` — a listener's settings and routes parsed from link and named config;
* :mod:`.gateway` — a request's call to its component over NATS, and what a failed call answers.

The ``builtin:http-server`` provider (``trellis/providers/builtin/http_server/``: the provider,
its listeners' lifecycle, TLS, choosing the worker for a handed-off connection) and the host's
workers (``trellis/host/workers/handoff.py``: connections handed to them) both use it. A layer of
its own (docs/architecture.md): it imports the contracts and the runtime kit only.
"""
