"""How a provider reference becomes a command line.

* ``builtin:NAME`` — a built-in provider: module ``trellis.providers.builtin.<NAME with - as _>``
* ``python:MODULE`` — any importable module with a ``__main__`` entry (``python -m MODULE``)
* ``/path/to/provider.py`` or ``file:///path/to/provider.py`` — a Python file run as a script
* ``/path/to/folder`` — a package with a ``__main__.py``, run as ``python -m folder``
* ``lattice://sha256:…`` — either of those, uploaded by ``trellis app deploy``; the host fetches
  and unpacks it first (`trellis.interfaces.provider_package`)
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.interfaces.provider_package import PreparedProvider


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
        module = "trellis.providers.builtin." + name.replace("-", "_")
        if not name or name == "group" or importlib.util.find_spec(module) is None:  # group: their shared process
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
    return provider_command(image).argv


@dataclass(frozen=True)
class ProviderCommand:
    argv: list[str]
    pythonpath: list[str] = field(default_factory=list)  # put first on the child's PYTHONPATH


#: what a host says when a provider's path is not on its machine
FIX_FOR_PATHS = "run 'trellis app deploy' on the machine that has it (it uploads local files), or 'trellis push' it"


def provider_command(image: str, host: str = "this host") -> ProviderCommand:
    """How ``image`` runs here. ``lattice://`` references are fetched first (`prepared_command`)."""
    image = image.strip()
    if image.startswith(("builtin:", "python:")):
        return ProviderCommand(provider_argv(image))
    path = unquote(urlparse(image).path) if image.startswith("file://") else image
    p = Path(path).expanduser()
    if path.endswith(".py") or p.is_dir() or image.startswith(("file://", "/", "./", "../", "~")):
        p = p.resolve()
        if not p.exists():
            raise ProviderRefError(f"{host} cannot read provider {p} (not on that machine): {FIX_FOR_PATHS}",
                                   ErrorCode.NOT_FOUND)
        if p.is_dir():
            if not (p / "__main__.py").is_file():
                raise ProviderRefError(f"provider folder {p} has no __main__.py (a host runs it as "
                                       f"'python -m {p.name}')")
            return ProviderCommand([sys.executable, SAFE_PATH, "-m", p.name], [str(p.parent)])
        return ProviderCommand([sys.executable, str(p)])
    raise ProviderRefError(
        f"unsupported provider reference {image!r}: use builtin:NAME, python:MODULE, lattice://sha256:…, "
        "or a path to a .py file or a folder with a __main__.py")


def prepared_command(prepared: PreparedProvider) -> ProviderCommand:
    """The command for a provider fetched from the lattice and unpacked (`trellis.interfaces.provider_package`)."""
    safe = [SAFE_PATH] if prepared.argv_tail[:1] == ["-m"] else []
    return ProviderCommand([sys.executable, *safe, *prepared.argv_tail], list(prepared.pythonpath))
