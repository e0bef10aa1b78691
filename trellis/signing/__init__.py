"""Signed artifacts: issuer keys, wascap claims embedded in Wasm, signed provider files,
and the trusted-issuer check hosts make before running anything.

A library layer (docs/architecture.md): the format is wasmCloud's (wascap), the code that signs
and verifies it is used by the host (admission) and the CLI (`trellis sign`, `--trusted-issuer`);
``secrets.py`` holds the keys that sign, seal and open secrets and the calls to the keyholder.
It imports only the contracts."""

from .claims import Claims, SignatureError, decode_verified
from .keys import IssuerKey, KeyError_, check_issuer
from .pyfile import read_py_claims, sign_py
from .trust import Trust, parse_issuers
from .wasm import content_hash, embedded_token, read_wasm_claims, sign_wasm, strip_signature

__all__ = [
    "Claims", "IssuerKey", "KeyError_", "SignatureError", "Trust", "check_issuer", "content_hash",
    "decode_verified", "embedded_token", "parse_issuers", "read_py_claims", "read_wasm_claims",
    "sign_py", "sign_wasm", "strip_signature",
]
