"""Issuer keys: nkeys ed25519 key pairs, as wasmCloud signs with.

An *issuer* is an nkeys **account** key pair (public key ``A…``, seed ``SA…``), the role
wasmCloud's ``wash claims`` gives the signer. Each signed artifact also names a *subject*:
a **module** public key (``M…``) made for it, as wascap does. Seeds are kept in a file of
their own, mode 0600, one line.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

#: nkeys role prefixes (the first base32 character of a public key)
ROLE_ACCOUNT = nkeys.PREFIX_BYTE_ACCOUNT  # "A": issuers
ROLE_MODULE = 12 << 3  # "M": what wascap names a signed module with (not in nkeys.py)
ROLE_SERVER = nkeys.PREFIX_BYTE_SERVER


class KeyError_(ValueError):
    """A key that cannot be read or has the wrong role."""


def _crc16(data: bytes) -> int:
    return int(nkeys.crc16(bytearray(data)))


def encode_public(raw: bytes, role: int) -> str:
    """The nkeys text of a 32-byte ed25519 public key with ``role``."""
    src = bytes([role]) + raw
    return base64.b32encode(src + _crc16(src).to_bytes(2, "little")).decode().rstrip("=")


def decode_public(text: str, role: int | None = ROLE_ACCOUNT) -> bytes:
    """The 32 raw bytes of an nkeys public key; checks its checksum and (when given) its role."""
    text = text.strip()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        raise KeyError_(f"{text[:12]!r}… is not an nkeys public key") from None
    if len(raw) != 35 or _crc16(raw[:33]) != int.from_bytes(raw[33:], "little"):
        raise KeyError_(f"{text[:12]!r}… is not an nkeys public key (bad length or checksum)")
    if role is not None and raw[0] != role:
        want = encode_public(bytes(32), role)[0]
        raise KeyError_(f"{text[:12]}… is not an issuer key: expected an nkeys {want}… public key")
    return raw[1:33]


def check_issuer(public_key: str) -> str:
    """``public_key`` stripped, if it is an account (issuer) public key; else `KeyError_`."""
    decode_public(public_key, ROLE_ACCOUNT)
    return public_key.strip()


def verify(public_key: str, message: bytes, signature: bytes, role: int | None = ROLE_ACCOUNT) -> bool:
    raw = decode_public(public_key, role)
    try:
        nacl.signing.VerifyKey(raw).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


class IssuerKey:
    """An issuer's key pair, from its seed."""

    def __init__(self, seed: str) -> None:
        seed = seed.strip()
        try:
            kp = nkeys.from_seed(bytearray(seed.encode()))
            public = kp.public_key.decode()
        except Exception as exc:  # nkeys raises its own hierarchy and binascii errors
            raise KeyError_(f"not an nkeys seed ({exc.__class__.__name__})") from None
        if not public.startswith("A"):
            raise KeyError_(f"not an issuer seed: its public key {public[:8]}… is not an account (A…) key; "
                            "make one with 'trellis sign --new-issuer-key FILE'")
        self._kp = kp
        self.public_key = public

    def sign(self, message: bytes) -> bytes:
        return bytes(self._kp.sign(message))

    @classmethod
    def generate(cls) -> IssuerKey:
        return cls(nkeys.encode_seed(os.urandom(32), ROLE_ACCOUNT).decode())

    @classmethod
    def load(cls, path: Path) -> IssuerKey:
        try:
            text = path.read_bytes()[:4096].decode("ascii")
        except OSError as exc:
            raise KeyError_(f"cannot read issuer key {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise KeyError_(f"{path}: not an nkeys seed (the file is not text)") from None
        try:
            return cls(text)
        except KeyError_ as exc:
            raise KeyError_(f"{path}: {exc}") from None

    @classmethod
    def create(cls, path: Path) -> IssuerKey:
        """A new issuer key kept in ``path`` (mode 0600; an existing file is never overwritten)."""
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyError_(f"{path} already exists; use --issuer-key {path} to sign with it") from None
        with os.fdopen(fd, "w") as f:
            f.write(key._kp.seed.decode() + "\n")
        return key


def new_module_key() -> str:
    """A fresh module (``M…``) public key, the subject of one signing (its seed is not kept)."""
    return encode_public(bytes(nacl.signing.SigningKey.generate().verify_key), ROLE_MODULE)
