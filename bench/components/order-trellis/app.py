"""The benchmark's single component on Trellis: `trellis:http/incoming-handler`.

One request in, one response out (world `trellis:http/proxy@0.1.0`, served by
`builtin:http-server`); the logic is `bench/components/common/order_logic.py`.
"""

from order_logic import handle_order
from wit_world import exports
from wit_world.imports.types import Request, Response


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        status, ctype, body = handle_order(request.method, request.path_with_query, request.body)
        return Response(status=status, headers=[("content-type", ctype)], body=body)
