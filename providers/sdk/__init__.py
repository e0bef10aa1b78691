"""The provider SDK: write a capability provider as a small Python program.

::

    from trellis.providers.sdk import Provider, ProviderError, run

    kv = Provider("kv-memory")

    @kv.export("wasi:keyvalue/store")
    async def get(bucket: str, key: str, *, ctx, **kwargs) -> bytes | None:
        ...

    if __name__ == "__main__":
        run(kv)

The SDK hides NATS, the envelope, encoding and tracing. See docs/providers.md.
It never imports the host or wadm (the ``sdk-standalone`` import contract in pyproject.toml):
a provider is a separate program the host starts.
"""

from trellis.interfaces.links import Link

from ._private.bootstrap import Bootstrap, BootstrapError, NatsBootstrap, read_bootstrap
from ._private.cli import main, run, serve
from ._private.context import Context, ProviderInfo, context, nats_connection
from ._private.definition import DefinitionError, ExportDefinition, Provider, export
from ._private.errors import CallError, ProviderError
from ._private.runtime import ProviderRuntime, ProviderStartError
from ._private.subjects import provider_health, provider_ping

__all__ = [
    "Bootstrap",
    "BootstrapError",
    "CallError",
    "Context",
    "DefinitionError",
    "ExportDefinition",
    "Link",
    "NatsBootstrap",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "ProviderRuntime",
    "ProviderStartError",
    "context",
    "export",
    "main",
    "nats_connection",
    "provider_health",
    "provider_ping",
    "read_bootstrap",
    "run",
    "serve",
]
