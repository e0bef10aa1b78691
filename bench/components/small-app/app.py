"""The density benchmark's small app: ``GET /`` adds one to key ``hits`` in the app's bucket.

Answers ``200 {"app": NAME, "hits": N}``; anything else is a 404. NAME is the
value of config key ``app`` (the manifest's inline config; ``small-app`` without
one). The bucket is opened as ``hits``: the link's config (``bucket``) says
which backend bucket that is, one per app. The benchmark
(``bench/density/apps.py``) makes each copy its own component: the same code
with a custom section naming the copy, so every copy has its own digest and
compiled artifact, as different apps would.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import atomics, runtime, store
from wit_world.imports.types import Request, Response

JSON = [("content-type", b"application/json")]


def app_name() -> str:
    try:
        return runtime.get("app") or "small-app"
    except Err:
        return "small-app"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: Request) -> Response:
        path = request.path_with_query.split("?", 1)[0]
        if request.method != "GET" or path != "/":
            return Response(status=404, headers=JSON, body=b'{"error": "not found"}')
        name = app_name()
        try:
            with store.open("hits") as bucket:
                hits = atomics.increment(bucket, "hits", 1)
        except Err as e:
            body = json.dumps({"app": name, "error": f"key-value: {type(e.value).__name__}"})
            return Response(status=502, headers=JSON, body=body.encode())
        return Response(status=200, headers=JSON, body=json.dumps({"app": name, "hits": hits}).encode())
