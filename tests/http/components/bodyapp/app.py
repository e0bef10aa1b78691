"""The `bodyapp` test component: echoes request bodies of any size.

It imports ``trellis:http/request-body``, so a body larger than one call carries
into Wasm reaches it with an empty ``body`` and is read in pieces; it answers 200
with the whole body (sent back in pieces with ``response-body.append``) and
``x-pieces``: how many pieces ``read`` returned.
"""

from wit_world import exports
from wit_world.imports import request_body, response_body
from wit_world.imports.types import Request, Response

PIECE = 1 << 20


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        pieces = [request.body]
        while True:
            piece = request_body.read(PIECE)
            if not piece:
                break
            pieces.append(piece)
        body = b"".join(pieces)
        start = 0
        while len(body) - start > PIECE:
            response_body.append(body[start:start + PIECE])
            start += PIECE
        return Response(status=200, headers=[("x-pieces", str(len(pieces) - 1).encode())], body=body[start:])
