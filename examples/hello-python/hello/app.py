"""An HTTP component: greets every request and echoes what was asked for.

It exports `trellis:http/incoming-handler` (world `trellis:http/proxy`);
componentize-py generates the `wit_world` bindings at build time.
"""

from wit_world import exports
from wit_world.imports.types import Request, Response


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        body = f"Hello from Trellis\nYou asked for {request.method} {request.path_with_query}\n"
        return Response(
            status=200,
            headers=[("content-type", b"text/plain; charset=utf-8")],
            body=body.encode(),
        )
