"""``builtin:http-server``: HTTP in, a call to a linked component out (docs/http.md).

Each link from this provider to a component for ``trellis:http/incoming-handler``
is a route: its config names an address (and optionally a Host and a path
prefix); every request that matches becomes one call of the component's
``handle(request) -> response``.

============  ==============================================================
module        owns
============  ==============================================================
front         the listeners, reconciled with the links (a Service)
handoff       which worker of this host takes an accepted connection
tls           the listener's certificate from the provider's secrets
provider      the SDK provider: callbacks, health
============  ==============================================================

The HTTP itself is a library the host's workers share (``trellis/httpfront/``):
``config`` (link and provider config keys, parsed and checked), ``routes`` (route tables
and the listener plan), ``wire`` (HTTP bytes ↔ request/response records, error responses),
``gateway`` (the call to the component over NATS, failures as HTTP statuses), ``protocol``
(one HTTP/1.1 connection on httptools), ``listener`` (one listening socket and how it
answers).
"""

from .provider import NAME, HttpServer, build

provider = build()

__all__ = ["NAME", "HttpServer", "build", "provider"]
