"""Claims on a provider written as one Python file.

A signed ``provider.py`` ends with one line::

    # trellis-signature: <JWT>

holding wascap claims (see `claims`) with ``prov: true`` whose ``hash`` is the SHA-256
(upper hex) of every byte of the file before that line. Python reads the line as a
comment, so the signed file runs as before and stays one file. The line must be the
file's last: anything after it, or a second signature line, makes the file refused.
Signing again replaces the line.
"""

from __future__ import annotations

import hashlib

from .claims import Claims, SignatureError, decode_verified, encode, new_claims
from .keys import IssuerKey

MARKER = b"# trellis-signature: "


def split(source: bytes) -> tuple[bytes, str | None]:
    """(the content a signature covers, the token) of a .py file; token None when unsigned."""
    body = source[:-1] if source.endswith(b"\n") else source
    cut = body.rfind(b"\n") + 1
    last = body[cut:]
    if not last.startswith(MARKER):
        if MARKER in source:
            raise SignatureError("the file has a signature line that is not its last line (changed after signing?)")
        return source, None
    content = source[:cut]
    if MARKER in content:
        raise SignatureError("the file has more than one signature line")
    try:
        return content, last[len(MARKER):].decode("ascii").strip()
    except UnicodeDecodeError:
        raise SignatureError("the file's signature line is not a JWT") from None


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest().upper()


def sign_py(source: bytes, key: IssuerKey, *, name: str | None = None, tags: tuple[str, ...] = (),
            ver: str | None = None, rev: int | None = None, expires_in_days: float | None = None) -> bytes:
    content, _ = split(source)
    if content and not content.endswith(b"\n"):
        content += b"\n"
    claims = new_claims(content_hash(content), key, name=name, provider=True, tags=tags, ver=ver, rev=rev,
                        expires_in_days=expires_in_days)
    return content + MARKER + encode(claims, key).encode() + b"\n"


def read_py_claims(source: bytes, *, now: float | None = None) -> Claims | None:
    """The verified claims of a .py provider, None when unsigned; `SignatureError` when they
    do not verify or the file was changed after signing."""
    content, token = split(source)
    if token is None:
        return None
    claims = decode_verified(token, now=now)
    actual = content_hash(content)
    if actual != claims.hash.upper():
        raise SignatureError(f"the file was changed after {claims.issuer} signed it: its content hash "
                             f"{actual[:16]}… is not the signed {claims.hash[:16]}…")
    return claims
