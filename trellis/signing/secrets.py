"""Secrets' keys and the calls that use them: signing, sealing and opening (``interfaces/secrets.py``
is the contract they speak).

* :class:`NKey` signs (ed25519) and unseals (its curve25519 twin); :func:`seal` seals to a
  public curve key; :class:`EphemeralXKey` is the one-use key a host opens its answer with;
* wadm issues grants (:func:`issue_grant`), the keyholder opens them (:func:`open_grant`) and
  checks a host's signed request (:func:`verify`);
* a host asks for a part's secrets (:func:`fetch`); the CLI puts, deletes and lists them
  (:func:`put`, :func:`delete`, :func:`list_names`), sealing values on its own side.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel

from trellis.interfaces.secrets import (
    NO_KEYHOLDER,
    DelSecret,
    GetBody,
    GetSecrets,
    Grant,
    Op,
    PutSecret,
    SecretInfo,
    SecretsUnavailable,
    SecretValue,
    SignedGrant,
    decode_values,
    subject,
)


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
    def generate(cls, prefix: int = nkeys.PREFIX_BYTE_SERVER) -> NKey:
        return cls(nkeys.encode_seed(os.urandom(32), prefix).decode())

    @classmethod
    def load_or_create(cls, path: Path) -> NKey:
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


def issue_grant(key: NKey, grant: Grant) -> SignedGrant:
    """``grant`` signed by ``key`` (wadm's grant key)."""
    body = grant.model_dump_json()
    return SignedGrant(grant=body, issuer=key.public_key, signature=key.sign(body.encode()))


def open_grant(signed: SignedGrant, trusted: frozenset[str]) -> Grant:
    """The grant, if a trusted issuer signed it; ValueError otherwise."""
    if signed.issuer not in trusted:
        raise ValueError(f"grant issued by {signed.issuer[:12]}…, which this keyholder does not trust")
    if not verify(signed.issuer, signed.grant.encode(), signed.signature):
        raise ValueError("grant signature does not verify")
    return Grant.model_validate_json(signed.grant)


def build_get(host_seed: str, host_id: str, grant: SignedGrant, reply_xkey: str) -> GetSecrets:
    body = GetBody(grant=grant, host_id=host_id, reply_xkey=reply_xkey, at=time.time(),
                   nonce=_b64(os.urandom(12))).model_dump_json()
    return GetSecrets(body=body, host_id=host_id, signature=NKey(host_seed).sign(body.encode()))


async def fetch(nc: Any, lattice: str, host_seed: str, host_id: str, grant: SignedGrant,
                timeout_s: float = 5.0) -> dict[str, SecretValue]:
    """A host's get: the grant's secrets by the names the part reads them as."""
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeout

    from trellis.interfaces.control import CtlReply

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

async def _ask(client: Any, op: str, body: BaseModel | None = None) -> Any:
    from trellis.interfaces.client import ControlError
    from trellis.interfaces.errors import ErrorCode

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
