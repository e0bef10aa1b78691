"""A provider for the secrets tests: digests its secrets, never returns one."""

import hashlib
from typing import Any

from trellis.providers.sdk import Provider, run

checker = Provider("secret-check")
_secrets: dict[str, Any] = {}


@checker.on_start
async def start(*, info: Any, **kwargs: object) -> None:
    _secrets.update(info.secrets)


@checker.export("test:secrets/check", "digest")
def digest(name: str, **kwargs: object) -> str | None:
    secret = _secrets.get(name)
    return None if secret is None else hashlib.sha256(secret.reveal().encode()).hexdigest()


if __name__ == "__main__":
    run(checker)
