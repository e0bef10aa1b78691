"""How a provider reference becomes a command line.

* ``builtin:NAME`` — a built-in provider: module ``providers.builtin.<NAME with - as _>``
* ``python:MODULE`` — any importable module with a ``__main__`` entry (``python -m MODULE``)
* ``/path/to/provider.py`` or ``file:///path/to/provider.py`` — a Python file run as a script
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from interfaces.errors import ErrorCode, TrellisError


class ProviderRefError(TrellisError):
    code = ErrorCode.BAD_REQUEST


#: built-in providers whose client library comes with an optional extra: name -> (module, extra)
BUILTIN_EXTRAS: dict[str, tuple[str, str]] = {
    "sqldb-postgres": ("asyncpg", "postgres"),
    "keyvalue-redis": ("redis", "redis"),
}

#: ``python -P``: the child does not put its working directory first on sys.path, so a folder
#: named like one of Trellis's packages where the user stands cannot shadow them
SAFE_PATH = "-P"


def _missing_extra(name: str) -> str | None:
    needed = BUILTIN_EXTRAS.get(name)
    if needed is None or importlib.util.find_spec(needed[0]) is not None:
        return None
    module, extra = needed
    return (f"built-in provider {name!r} needs {module}, which is not installed on this host: "
            f"pip install 'trellis-wasm[{extra}]'")


def provider_argv(image: str) -> list[str]:
    image = image.strip()
    if image.startswith("builtin:"):
        name = image[len("builtin:"):]
        module = "providers.builtin." + name.replace("-", "_")
        if not name or importlib.util.find_spec(module) is None:
            raise ProviderRefError(f"no built-in provider {name!r} (module {module} not found)", ErrorCode.NOT_FOUND)
        missing = _missing_extra(name)
        if missing:
            raise ProviderRefError(missing, ErrorCode.NOT_FOUND)
        return [sys.executable, SAFE_PATH, "-m", module]
    if image.startswith("python:"):
        module = image[len("python:"):]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ProviderRefError(f"python module {module!r} is not importable on this host", ErrorCode.NOT_FOUND)
        return [sys.executable, SAFE_PATH, "-m", module]
    path = unquote(urlparse(image).path) if image.startswith("file://") else image
    if path.endswith(".py"):
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise ProviderRefError(f"provider file {p} does not exist on this host", ErrorCode.NOT_FOUND)
        return [sys.executable, str(p)]
    raise ProviderRefError(
        f"unsupported provider reference {image!r}: use builtin:NAME, python:MODULE or a path to a .py file")
