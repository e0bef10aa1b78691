"""nats-py's eager ``import aiohttp`` is deferred in Trellis processes (``trellis/kit/deferred.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import trellis.providers.builtin.keyvalue_nats  # what a provider process imports first
import nats.aio.transport as transport
out = {"after_import": "aiohttp" in sys.modules, "stand_in": type(transport.aiohttp).__name__,
       "truthy": bool(transport.aiohttp)}
ws_type = transport.aiohttp.WSMsgType  # the WebSocket transport's first use
import aiohttp
import aiohttp.web
out.update(real=type(sys.modules["aiohttp"]).__name__, same=ws_type is aiohttp.WSMsgType,
           session=transport.aiohttp.ClientSession is aiohttp.ClientSession, web=hasattr(aiohttp, "web"))
print(json.dumps(out))
"""


def test_a_trellis_process_imports_aiohttp_only_when_it_is_used() -> None:
    res = subprocess.run([sys.executable, "-P", "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"after_import": False, "stand_in": "DeferredModule", "truthy": True, "real": "module",
                   "same": True, "session": True, "web": True}
