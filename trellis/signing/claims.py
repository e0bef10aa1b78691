"""wascap claims: a JWT signed with an issuer's ed25519 nkey (wasmCloud's format).

The token is ``base64url(header).base64url(claims).base64url(signature)`` (no padding),
the header ``{"typ": "jwt", "alg": "Ed25519"}``, the signature ed25519 over the first two
parts with the issuer's key. The claims are wascap's (``crates/wascap/src/jwt.rs``)::

    {"jti": …, "iat": SECONDS, "iss": "A…" (issuer), "sub": "M…" (module key),
     "exp"/"nbf": SECONDS (optional),
     "wascap": {"name": …, "hash": "SHA-256 IN UPPER HEX", "tags": [...], "rev": N, "ver": "…",
                "prov": false},
     "wascap_revision": 3}

``wascap.hash`` is the hash of the artifact without its signature, so the signature
covers the artifact's content: a changed artifact no longer matches it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from trellis.interfaces.errors import ErrorCode, TrellisError

from .keys import ROLE_ACCOUNT, IssuerKey, KeyError_, new_module_key, verify

WASCAP_REVISION = 3
HEADER = {"typ": "jwt", "alg": "Ed25519"}


class SignatureError(TrellisError):
    """An artifact's signature is missing, broken, or not one this host trusts."""

    code = ErrorCode.FORBIDDEN


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    issuer: str
    subject: str
    hash: str
    name: str | None = None
    issued_at: int = 0
    expires: int | None = None
    not_before: int | None = None
    provider: bool = False
    tags: tuple[str, ...] = ()
    rev: int | None = None
    ver: str | None = None
    revision: int | None = WASCAP_REVISION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.name is not None:
            meta["name"] = self.name
        meta["hash"] = self.hash
        if self.tags:
            meta["tags"] = list(self.tags)
        if self.rev is not None:
            meta["rev"] = self.rev
        if self.ver is not None:
            meta["ver"] = self.ver
        meta["prov"] = self.provider
        out: dict[str, Any] = {}
        if self.expires is not None:
            out["exp"] = self.expires
        out.update({"jti": uuid.uuid4().hex, "iat": self.issued_at, "iss": self.issuer, "sub": self.subject})
        if self.not_before is not None:
            out["nbf"] = self.not_before
        out["wascap"] = meta
        if self.revision is not None:
            out["wascap_revision"] = self.revision
        return out

    @classmethod
    def from_json(cls, data: Any) -> Claims:
        if not isinstance(data, dict) or not isinstance(data.get("wascap"), dict):
            raise SignatureError("the signature's claims have no 'wascap' metadata")
        meta = data["wascap"]
        try:
            return cls(
                issuer=str(data["iss"]), subject=str(data.get("sub", "")), hash=str(meta.get("hash", "")),
                name=meta.get("name"), issued_at=int(data.get("iat", 0)),
                expires=None if data.get("exp") is None else int(data["exp"]),
                not_before=None if data.get("nbf") is None else int(data["nbf"]),
                provider=bool(meta.get("prov", False)), tags=tuple(meta.get("tags") or ()),
                rev=meta.get("rev"), ver=meta.get("ver"),
                revision=None if data.get("wascap_revision") is None else int(data["wascap_revision"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SignatureError(f"the signature's claims are malformed ({exc.__class__.__name__}: {exc})") from None

    def describe(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "subject": self.subject, "name": self.name, "hash": self.hash,
                "issued_at": self.issued_at, "expires": self.expires, "not_before": self.not_before,
                "provider": self.provider, "tags": list(self.tags), "rev": self.rev, "ver": self.ver}


def new_claims(content_hash: str, issuer: IssuerKey, *, name: str | None, provider: bool,
               tags: tuple[str, ...] = (), ver: str | None = None, rev: int | None = None,
               expires_in_days: float | None = None) -> Claims:
    now = int(time.time())
    return Claims(issuer=issuer.public_key, subject=new_module_key(), hash=content_hash, name=name,
                  issued_at=now, provider=provider, tags=tags, ver=ver, rev=rev,
                  expires=None if expires_in_days is None else now + int(expires_in_days * 86400))


def encode(claims: Claims, key: IssuerKey) -> str:
    if claims.issuer != key.public_key:
        raise ValueError("the claims name another issuer than the signing key")
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims.to_json(), separators=(",", ":")).encode())
    signed = f"{head}.{body}"
    return f"{signed}.{_b64(key.sign(signed.encode()))}"


def decode_verified(token: str, *, now: float | None = None) -> Claims:
    """The claims of ``token`` once its signature verifies against the issuer it names.

    Whether that issuer is trusted, and whether the hash matches the artifact, is the
    caller's to check.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise SignatureError("the embedded signature is not a JWT (expected three dot-separated parts)")
    try:
        header = json.loads(_unb64(parts[0]))
        body = json.loads(_unb64(parts[1]))
        sig = _unb64(parts[2])
    except ValueError:
        raise SignatureError("the embedded signature is not a readable JWT") from None
    if not isinstance(header, dict) or str(header.get("alg", "")).lower() != "ed25519":
        raise SignatureError("the embedded signature uses algorithm "
                             f"{header.get('alg') if isinstance(header, dict) else '?'!r}, "
                             "not Ed25519")
    claims = Claims.from_json(body)
    try:
        ok = verify(claims.issuer, f"{parts[0]}.{parts[1]}".encode(), sig, ROLE_ACCOUNT)
    except KeyError_ as exc:
        raise SignatureError(f"the signature's issuer is not usable: {exc}") from None
    if not ok:
        raise SignatureError(f"the signature does not verify against its issuer {claims.issuer}: "
                             "the claims were altered or forged")
    t = time.time() if now is None else now
    if claims.expires is not None and t > claims.expires:
        raise SignatureError(f"the signature by {claims.issuer} expired at "
                             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(claims.expires))}")
    if claims.not_before is not None and t < claims.not_before:
        raise SignatureError(f"the signature by {claims.issuer} is not valid before "
                             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(claims.not_before))}")
    return claims
