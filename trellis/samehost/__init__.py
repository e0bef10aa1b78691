"""Same-host socket transports: calls and connections between processes of one host, without NATS.

* :mod:`.local_rpc` — RPC between a host's workers and its providers over abstract Unix sockets
  (the lattice's own envelope frames, served by the same ``RpcServer``);
* :mod:`.handoff` — an accepted HTTP connection handed from the http-server provider to the worker
  that serves its route (``SCM_RIGHTS``).

A layer of its own (docs/architecture.md): it imports the contracts (``trellis.interfaces``) and
the runtime kit; the host and the provider SDK import it.
"""
