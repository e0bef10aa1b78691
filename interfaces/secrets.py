"""Secrets: the wire contract between the keyholder, wadm, hosts and the CLI.

A secret is stored in the lattice's key-value bucket ``TRELLIS_<lattice>_secrets``
*sealed* (x25519 sealed box, as wasmCloud's secrets-nats-kv seals with xkeys) to
the keyholder's curve key, so a member that reads the bucket sees ciphertext only.
The keyholder (run by ``trellis wadm --secrets-key FILE``; ``trellis up`` gives it
one) is the only process holding the private key.

* ``trellis secret put`` asks the keyholder for its public curve key
  (``xkey``) and sends the value sealed to it (``put``): the value never crosses
  NATS in the clear. ``list`` returns names only; nothing returns a value except
  ``get``.
* ``get`` is asked by a **host** for a part it was told to run. The host sends
  the *grant* wadm signed when it placed the part (which app, which part, which
  host, which secrets), proves it is that host by signing the request with its
  own nkey (the host id *is* its public key), and names a fresh curve key of
  its own: the answer is sealed to that key, so only that host reads it.

Keys are nkeys: the keyholder and wadm sign with an ed25519 seed and seal with
its curve25519 twin (``SigningKey.to_curve25519_private_key``). This module holds the
contract (names, subjects, values and messages); the keys that sign, seal and open, and the
calls that use them, are ``trellis/signing/secrets.py``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from . import subjects

#: the secrets backend Trellis implements (a manifest's secret policy names it)
BACKEND = "nats-kv"
#: wadm's policy type for secrets
POLICY_TYPE = "policy.secret.wasmcloud.dev/v1alpha1"
#: the KV bucket (``subjects.bucket(lattice, SECRETS_BUCKET)``)
SECRETS_BUCKET = "secrets"
#: a signed get request older (or newer) than this is refused: replays need a fresh signature
MAX_CLOCK_SKEW_S = 120.0
#: the largest secret value accepted
MAX_SECRET_BYTES = 64 * 1024
#: secret names: also KV keys
NAME_PATTERN = r"^[A-Za-z0-9_\-\.=/]{1,256}$"


class Op:
    XKEY = "xkey"
    PUT = "put"
    DEL = "del"
    LIST = "list"
    GET = "get"


def subject(lattice: str, op: str) -> str:
    return subjects.secrets_api(lattice, BACKEND, op)


# --- encoding -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


# --- values ---------------------------------------------------------------------------


class SecretValue:
    """A secret's value; ``repr``/``str`` never show it: call :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        self._value = value

    def reveal(self) -> str | bytes:
        return self._value

    def reveal_str(self) -> str:
        v = self._value
        return v if isinstance(v, str) else v.decode()

    def __repr__(self) -> str:
        return "SecretValue(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def to_wire(self) -> dict[str, str]:
        if isinstance(self._value, bytes):
            return {"bytes": _b64(self._value)}
        return {"string": self._value}

    @classmethod
    def from_wire(cls, data: dict[str, str]) -> SecretValue:
        if "bytes" in data:
            return cls(_unb64(data["bytes"]))
        return cls(str(data["string"]))


def value_from_input(data: bytes) -> SecretValue:
    """What the CLI read (argument, stdin or file): text when it is UTF-8, bytes otherwise."""
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret is at most {MAX_SECRET_BYTES} bytes, got {len(data)}")
    try:
        return SecretValue(data.decode())
    except UnicodeDecodeError:
        return SecretValue(data)


# --- requests -------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """One manifest ``secrets:`` entry: the part reads it as ``name``; it is stored as ``key``."""

    name: str = Field(min_length=1, max_length=256)
    key: str = Field(min_length=1, max_length=256, pattern=NAME_PATTERN)
    field: str | None = None
    version: str | None = None


class Grant(_Model):
    """What wadm decided: ``host`` runs part ``part`` (``kind``) of ``app``, which reads ``secrets``."""

    app: str
    part: str
    kind: str = Field(pattern=r"^(component|provider)$")
    host: str
    secrets: tuple[SecretRef, ...]
    issued_at: float


class SignedGrant(_Model):
    """A grant as wadm signed it: ``grant`` is the JSON that ``signature`` covers."""

    grant: str
    issuer: str
    signature: str

class PutSecret(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    #: the value as JSON ``{"string": …}`` / ``{"bytes": b64}``, sealed to the keyholder's xkey
    sealed: str


class DelSecret(_Model):
    name: str = Field(pattern=NAME_PATTERN)


class GetSecrets(_Model):
    """A host asks for the secrets of a grant; ``signature`` (by ``host_id``) covers ``body``."""

    body: str
    host_id: str
    signature: str


class GetBody(_Model):
    grant: SignedGrant
    host_id: str
    #: the curve key the answer is sealed to (fresh per request)
    reply_xkey: str
    at: float
    nonce: str


def encode_values(values: dict[str, SecretValue]) -> bytes:
    return json.dumps({k: v.to_wire() for k, v in values.items()}).encode()


def decode_values(data: bytes) -> dict[str, SecretValue]:
    raw = json.loads(data)
    return {str(k): SecretValue.from_wire(v) for k, v in raw.items()}


@dataclass(frozen=True)
class SecretInfo:
    """What ``list`` shows: never a value."""

    name: str
    revision: int
    updated_at: str
    kind: str


class SecretsUnavailable(RuntimeError):
    """The keyholder refused or could not be asked; the message says why, in one line."""


NO_KEYHOLDER = ("no secrets keyholder answers in lattice {lattice!r}: it runs in wadm started with "
                "--secrets-key FILE (as 'trellis up' does)")
