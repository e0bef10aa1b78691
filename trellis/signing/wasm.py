"""Claims embedded in a WebAssembly module or component, exactly as wascap embeds them.

A signed artifact carries its JWT in a custom section named ``wasmcloud_jwt`` (wascap
≥ 0.9; older wascap wrote ``jwt``) at the end of the top-level binary, so it stays one
file that every runtime loads unchanged (custom sections do not affect execution).

The signed hash is wascap's ``compute_hash(strip_custom_section(bytes))``: the binary
re-encoded without any ``jwt``/``wasmcloud_jwt`` custom section, at every nesting level
(a component's core modules and nested components are rebuilt the same way, their sizes
re-encoded as minimal LEB128), then SHA-256 in upper-case hex. Signing twice replaces the
signature; any other change to the bytes changes the hash.
"""

from __future__ import annotations

import hashlib

from .claims import Claims, SignatureError, decode_verified, encode, new_claims
from .keys import IssuerKey

SECTIONS = ("wasmcloud_jwt", "jwt")
WRITE_SECTION = "wasmcloud_jwt"
_MAGIC = b"\x00asm"
_COMPONENT_NESTED = (1, 4)  # a component's core-module and component sections hold whole binaries


class WasmFormatError(SignatureError):
    pass


def _leb(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise WasmFormatError("malformed WebAssembly binary (bad LEB128 length)")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _enc_leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _sections(data: memoryview) -> tuple[bool, list[tuple[int, memoryview]]]:
    """(is a component, [(section id, content)]) of one binary; checks the framing."""
    if len(data) < 8 or bytes(data[:4]) != _MAGIC:
        raise WasmFormatError("not a WebAssembly binary")
    component = bytes(data[6:8]) == b"\x01\x00"
    out: list[tuple[int, memoryview]] = []
    pos = 8
    while pos < len(data):
        sid = data[pos]
        size, start = _leb(data, pos + 1)
        end = start + size
        if end > len(data):
            raise WasmFormatError("malformed WebAssembly binary (a section runs past the end)")
        out.append((sid, data[start:end]))
        pos = end
    return component, out


def _custom_name(content: memoryview) -> str | None:
    n, pos = _leb(content, 0)
    if pos + n > len(content):
        raise WasmFormatError("malformed WebAssembly binary (bad custom section name)")
    try:
        return bytes(content[pos:pos + n]).decode()
    except UnicodeDecodeError:
        return None


def _custom_data(content: memoryview) -> bytes:
    n, pos = _leb(content, 0)
    return bytes(content[pos + n:])


def _strip(data: memoryview, out: list[bytes]) -> None:
    component, sections = _sections(data)
    out.append(bytes(data[:8]))
    for sid, content in sections:
        if sid == 0 and _custom_name(content) in SECTIONS:
            continue
        if component and sid in _COMPONENT_NESTED:
            inner: list[bytes] = []
            _strip(content, inner)
            body = b"".join(inner)
            out += [bytes([sid]), _enc_leb(len(body)), body]
        else:
            out += [bytes([sid]), _enc_leb(len(content)), bytes(content)]


def strip_signature(wasm: bytes) -> bytes:
    """The binary without any embedded claims (wascap's ``strip_custom_section``)."""
    out: list[bytes] = []
    _strip(memoryview(wasm), out)
    return b"".join(out)


def content_hash(wasm: bytes) -> str:
    """What a signature over ``wasm`` covers: SHA-256 (upper hex) of it stripped of claims."""
    return hashlib.sha256(strip_signature(wasm)).hexdigest().upper()


def embedded_token(wasm: bytes) -> str | None:
    """The JWT in the top-level ``wasmcloud_jwt`` (or legacy ``jwt``) section, if any."""
    _, sections = _sections(memoryview(wasm))
    for sid, content in sections:
        if sid == 0 and _custom_name(content) in SECTIONS:
            try:
                return _custom_data(content).decode()
            except UnicodeDecodeError:
                raise SignatureError("the embedded signature section does not hold text") from None
    return None


def sign_wasm(wasm: bytes, key: IssuerKey, *, name: str | None = None, tags: tuple[str, ...] = (),
              ver: str | None = None, rev: int | None = None, expires_in_days: float | None = None) -> bytes:
    """``wasm`` with claims signed by ``key`` embedded (an earlier signature is replaced)."""
    stripped = strip_signature(wasm)
    claims = new_claims(hashlib.sha256(stripped).hexdigest().upper(), key, name=name, provider=False,
                        tags=tags, ver=ver, rev=rev, expires_in_days=expires_in_days)
    token = encode(claims, key).encode()
    name_bytes = WRITE_SECTION.encode()
    content = _enc_leb(len(name_bytes)) + name_bytes + token
    return stripped + b"\x00" + _enc_leb(len(content)) + content


def read_wasm_claims(wasm: bytes, *, now: float | None = None) -> Claims | None:
    """The verified claims embedded in ``wasm``, or None when it carries none.

    Raises `SignatureError` when the token does not verify against the issuer it names, or
    when the artifact was changed after signing (its hash is not the signed one). Tokens
    without a hash (wascap before revision 3) are refused: they would not cover the content.
    """
    token = embedded_token(wasm)
    if token is None:
        return None
    claims = decode_verified(token, now=now)
    if not claims.hash:
        raise SignatureError(f"the signature by {claims.issuer} carries no content hash (an old wascap "
                             "format that does not cover the module); sign it again")
    actual = content_hash(wasm)
    if actual != claims.hash.upper() and claims.revision is not None and claims.revision < 3:
        raise SignatureError(f"the signature by {claims.issuer} is in an old wascap format (revision "
                             f"{claims.revision}) whose hash does not cover the module as signed today; sign it again")
    if actual != claims.hash.upper():
        raise SignatureError(f"the artifact was changed after {claims.issuer} signed it: its content hash "
                             f"{actual[:16]}… is not the signed {claims.hash[:16]}…")
    return claims
