"""Python side of the `secretreader` test component: digests, never returns, a secret."""

import hashlib

import wit_world
from componentize_py_types import Err
from wit_world.imports import reveal, store


def _describe(error: store.SecretsError) -> str:
    if isinstance(error, store.SecretsError_NotFound):
        return "not-found"
    return f"{type(error).__name__.removeprefix('SecretsError_').lower()}: {error.value}"


class WitWorld(wit_world.WitWorld):
    def digest(self, name: str) -> str:
        try:
            secret = store.get(name)
        except Err as e:
            raise Err(_describe(e.value)) from e
        with secret:
            value = reveal.reveal(secret)
        raw = value.value.encode() if isinstance(value, store.SecretValue_String) else value.value
        return hashlib.sha256(raw).hexdigest()
