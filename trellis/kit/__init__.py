"""The runtime kit: what every long-running Trellis process shares, outside the command line.

* :mod:`.service` — the ``Service`` lifecycle and the ``TaskGroup`` that owns background tasks;
* :mod:`.procs` — child processes: the parent-death signal, the supervised environment,
  ``exit_with_parent``, the argv that starts ``trellis`` itself;
* :mod:`.meters` — a process's metrics (OpenTelemetry meter provider, Prometheus, OTLP);
* :mod:`.gc_tuning` — the garbage collector's settings for workers and providers;
* :mod:`.version` — the version (``trellis.__version__`` reads it).

The host, wadm, the provider SDK and the built-in providers import it; it imports only the
contracts (``trellis.interfaces``). See docs/architecture.md.
"""
