"""Wasm worker processes: each serves invocations straight from NATS.

Creating instances from two threads of one process runs at half the rate of one
thread (TLB shootdowns), while two processes run at ~1.9x; so a host scales Wasm
execution with processes. The host (``pool.py``) supervises N workers
(``worker.py``) and tells them over a private stdin/stdout channel which
components to serve, with which share of the component's ``max_instances``.
"""

from .pool import WorkerPool, split_share

__all__ = ["WorkerPool", "split_share"]
