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
its curve25519 twin (``SigningKey.to_curve25519_private_key``).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey
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


# --- keys -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def verify_key(public: str) -> VerifyKey:
    """An nkeys public key (``N…``, ``A…``, …) as an ed25519 verify key; ValueError if malformed."""
    try:
        raw = base64.b32decode(public.encode())
    except Exception:
        raise ValueError(f"not an nkeys public key: {public[:12]!r}…") from None
    if len(raw) != 35 or not nkeys.valid_public_prefix_byte(raw[0]):
        raise ValueError(f"not an nkeys public key: {public[:12]!r}…")
    if nkeys.crc16(bytearray(raw[:-2])) != int.from_bytes(raw[-2:], "little"):
        raise ValueError("nkeys public key checksum mismatch")
    return VerifyKey(raw[1:33])


def verify(public: str, data: bytes, signature_b64: str) -> bool:
    try:
        verify_key(public).verify(data, _unb64(signature_b64))
        return True
    except (ValueError, BadSignatureError):
        return False


class NKey:
    """An nkeys seed that signs (ed25519) and unseals (its curve25519 twin)."""

    def __init__(self, seed: str) -> None:
        seed = seed.strip()
        try:
            kp = nkeys.from_seed(bytearray(seed.encode()))
            self.public_key: str = kp.public_key.decode()
            _, raw = nkeys.decode_seed(bytearray(seed.encode()))
        except Exception as exc:  # nkeys raises its own hierarchy and binascii errors
            raise ValueError(f"invalid nkeys seed: {exc.__class__.__name__}") from None
        self._signing = SigningKey(bytes(raw))
        self._curve = self._signing.to_curve25519_private_key()

    @classmethod
    def generate(cls, prefix: int = nkeys.PREFIX_BYTE_SERVER) -> "NKey":
        return cls(nkeys.encode_seed(os.urandom(32), prefix).decode())

    @classmethod
    def load_or_create(cls, path: Path) -> "NKey":
        """The key in ``path`` (an nkeys seed), created with mode 0600 when missing."""
        if path.exists():
            try:
                return cls(path.read_text())
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key._seed_text() + "\n")
        return key

    def _seed_text(self) -> str:
        return nkeys.encode_seed(bytes(self._signing), nkeys.PREFIX_BYTE_SERVER).decode()

    @property
    def xkey(self) -> str:
        """The public curve key others seal to (base64)."""
        return _b64(bytes(self._curve.public_key))

    def sign(self, data: bytes) -> str:
        return _b64(self._signing.sign(data).signature)

    def unseal(self, sealed_b64: str) -> bytes:
        return SealedBox(self._curve).decrypt(_unb64(sealed_b64))


def seal(xkey_b64: str, data: bytes) -> str:
    """``data`` sealed to a curve public key; only its private key opens it."""
    return _b64(SealedBox(PublicKey(_unb64(xkey_b64))).encrypt(data))


class EphemeralXKey:
    """A one-use curve key pair: a host names it in a get request and opens the answer."""

    def __init__(self) -> None:
        self._key = PrivateKey.generate()
        self.public = _b64(bytes(self._key.public_key))

    def open(self, sealed_b64: str) -> bytes:
        try:
            return SealedBox(self._key).decrypt(_unb64(sealed_b64))
        except CryptoError:
            raise ValueError("the answer is not sealed to this request's key") from None


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
    def from_wire(cls, data: dict[str, str]) -> "SecretValue":
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

    @classmethod
    def issue(cls, key: NKey, grant: Grant) -> "SignedGrant":
        body = grant.model_dump_json()
        return cls(grant=body, issuer=key.public_key, signature=key.sign(body.encode()))

    def open(self, trusted: frozenset[str]) -> Grant:
        """The grant, if a trusted issuer signed it; ValueError otherwise."""
        if self.issuer not in trusted:
            raise ValueError(f"grant issued by {self.issuer[:12]}…, which this keyholder does not trust")
        if not verify(self.issuer, self.grant.encode(), self.signature):
            raise ValueError("grant signature does not verify")
        return Grant.model_validate_json(self.grant)


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


def build_get(host_seed: str, host_id: str, grant: SignedGrant, reply_xkey: str) -> GetSecrets:
    body = GetBody(grant=grant, host_id=host_id, reply_xkey=reply_xkey, at=time.time(),
                   nonce=_b64(os.urandom(12))).model_dump_json()
    return GetSecrets(body=body, host_id=host_id, signature=NKey(host_seed).sign(body.encode()))


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


async def fetch(nc: Any, lattice: str, host_seed: str, host_id: str, grant: SignedGrant,
                timeout_s: float = 5.0) -> dict[str, SecretValue]:
    """A host's get: the grant's secrets by the names the part reads them as."""
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

    from .control import CtlReply

    xkey = EphemeralXKey()
    req = build_get(host_seed, host_id, grant, xkey.public)
    try:
        msg = await nc.request(subject(lattice, Op.GET), req.model_dump_json().encode(), timeout=timeout_s)
    except NoRespondersError:
        raise SecretsUnavailable("no secrets keyholder answers (run wadm with --secrets-key)") from None
    except (NatsTimeout, TimeoutError):
        raise SecretsUnavailable(f"the secrets keyholder did not answer within {timeout_s}s") from None
    reply = CtlReply.model_validate_json(msg.data)
    if not reply.success:
        raise SecretsUnavailable(f"secrets refused: {reply.message}")
    return decode_values(xkey.open(str((reply.response or {}).get("sealed", ""))))


# --- the CLI's side -----------------------------------------------------------------------

NO_KEYHOLDER = ("no secrets keyholder answers in lattice {lattice!r}: it runs in wadm started with "
                "--secrets-key FILE (as 'trellis up' does)")


async def _ask(client: Any, op: str, body: BaseModel | None = None) -> Any:
    from .client import ControlError
    from .errors import ErrorCode

    try:
        return await client.request(subject(client.lattice, op), body)
    except ControlError as exc:
        if exc.code in (ErrorCode.NO_RESPONDERS, ErrorCode.TIMEOUT):
            raise ControlError(NO_KEYHOLDER.format(lattice=client.lattice), exc.code) from None
        raise


async def put(client: Any, name: str, value: SecretValue) -> int:
    """Store ``value`` as ``name``, sealed on this side to the keyholder's key; the new revision."""
    keys = await _ask(client, Op.XKEY)
    sealed = seal(str(keys["xkey"]), json.dumps(value.to_wire()).encode())
    reply = await _ask(client, Op.PUT, PutSecret(name=name, sealed=sealed))
    return int(reply["revision"])


async def delete(client: Any, name: str) -> None:
    await _ask(client, Op.DEL, DelSecret(name=name))


async def list_names(client: Any) -> list[SecretInfo]:
    return [SecretInfo(name=str(e["name"]), revision=int(e["revision"]), updated_at=str(e.get("updated_at", "")),
                       kind=str(e.get("kind", ""))) for e in await _ask(client, Op.LIST)]
