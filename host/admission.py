"""What a host checks before it runs an artifact: signatures by trusted issuers.

Components are checked after they are fetched (the signature travels inside the .wasm);
provider files before their process starts, and the host then runs the bytes it checked
(a private copy in the state directory), so the file cannot be swapped in between.
``builtin:`` providers ship with Trellis itself; ``python:MODULE`` providers cannot be
signed and run only when the host lists the module in ``--allow-python-provider``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trellis.interfaces.errors import ErrorCode, TrellisError
from trellis.signing import Claims, SignatureError, Trust

if TYPE_CHECKING:
    from .provider_refs import ProviderCommand


class Admission:
    def __init__(self, trust: Trust, allow_python: tuple[str, ...], state_dir: Path) -> None:
        self.trust = trust
        self.allow_python = allow_python
        self.state_dir = state_dir
        self._verified: dict[str, Claims | None] = {}  # digest -> accepted claims

    async def check_component(self, component_id: str, path: Path, digest: str) -> Claims | None:
        if not self.trust.required:
            return None
        if digest in self._verified:
            return self._verified[digest]
        data = await asyncio.to_thread(path.read_bytes)
        claims = await asyncio.to_thread(self.trust.check_component, data, f"component {component_id}")
        self._verified[digest] = claims
        return claims

    async def provider_folder(self, provider_id: str, cmd: ProviderCommand) -> tuple[ProviderCommand, Claims | None]:
        """A folder provider (``python -m NAME`` with its parent on PYTHONPATH): when signatures are
        required, its files are copied once, the copy's signature checked, and the copy is what runs."""
        if not self.trust.required:
            return cmd, None
        from .provider_refs import ProviderCommand

        name = cmd.argv[-1]
        src = Path(cmd.pythonpath[0]) / name
        dest_parent = self.state_dir / "providers" / "checked" / provider_id
        dest_parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        claims = await asyncio.to_thread(self.trust.copy_checked_folder, src, dest_parent / name,
                                         f"provider {provider_id} ({name}/)")
        return ProviderCommand(cmd.argv, [str(dest_parent), *cmd.pythonpath[1:]]), claims

    def python_module_allowed(self, module: str) -> bool:
        return "*" in self.allow_python or module in self.allow_python

    async def provider_argv(self, provider_id: str, image: str, argv: list[str]) -> tuple[list[str], Claims | None]:
        """The command line to run and the accepted claims, once the provider passes the host's checks."""
        if image.startswith("python:"):
            module = image[len("python:"):]
            if not self.python_module_allowed(module):
                raise TrellisError(
                    f"provider {provider_id} refused: python:{module} runs code from the host's environment and "
                    f"this host does not allow it (start the host with --allow-python-provider {module})",
                    ErrorCode.FORBIDDEN)
            if self.trust.required:
                raise SignatureError(f"provider {provider_id} refused: python:{module} cannot be signed, and this "
                                     "host runs only artifacts signed by a trusted issuer (sign a .py file instead)")
            return argv, None
        if image.startswith("builtin:") or not self.trust.required:
            return argv, None
        source_path = Path(argv[-1])
        try:
            source = await asyncio.to_thread(source_path.read_bytes)
        except OSError as exc:
            raise TrellisError(f"cannot read provider file {source_path}: {exc.strerror}",
                               ErrorCode.NOT_FOUND) from None
        claims = self.trust.check_python_file(source, f"provider {provider_id} ({source_path.name})")
        assert claims is not None
        # run exactly the bytes that were checked
        copy = self.state_dir / "providers" / f"{provider_id}-{claims.hash[:16].lower()}.py"
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not copy.exists() or copy.read_bytes() != source:
            tmp = copy.with_suffix(".tmp")
            tmp.write_bytes(source)
            tmp.replace(copy)
        return [sys.executable, str(copy)], claims
