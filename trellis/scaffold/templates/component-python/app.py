"""$name: an HTTP component that counts its visits in key-value.

It exports `trellis:http/incoming-handler` (Trellis's HTTP world: a request record in, a
response record out) and imports `wasi:keyvalue`. `trellis build` generates the
`wit_world` bindings from wit/world.wit with componentize-py.
"""

from wit_world import exports
from wit_world.imports import atomics, store
from wit_world.imports.types import Request, Response


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        # "default" is the link's bucket: the link's config decides which real bucket it is
        bucket = store.open("default")
        visits = atomics.increment(bucket, "visits", 1)
        body = f"Hello from $name!\nYou asked for {request.method} {request.path_with_query}\nvisits: {visits}\n"
        return Response(status=200, headers=[("content-type", b"text/plain; charset=utf-8")], body=body.encode())
