"""Which issuers a host trusts, and the checks it makes before running an artifact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .claims import Claims, SignatureError
from .folder import verified_copy
from .keys import KeyError_, check_issuer
from .pyfile import read_py_claims
from .wasm import read_wasm_claims


def parse_issuers(values: Iterable[str]) -> tuple[str, ...]:
    """Issuer public keys from flags or ``TRELLIS_TRUSTED_ISSUERS`` (comma/space separated)."""
    out: list[str] = []
    for value in values:
        for item in value.replace(",", " ").split():
            try:
                key = check_issuer(item)
            except KeyError_ as exc:
                raise ValueError(f"--trusted-issuer: {exc}") from None
            if key not in out:
                out.append(key)
    return tuple(out)


def short(key: str) -> str:
    return f"{key[:8]}…{key[-4:]}"


@dataclass(frozen=True)
class Trust:
    """The issuers whose signatures a host accepts; empty = signatures are not required."""

    issuers: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return bool(self.issuers)

    def _accept(self, claims: Claims | None, what: str) -> Claims:
        if claims is None:
            raise SignatureError(f"{what} is not signed, and this host runs only artifacts signed by a trusted "
                                 "issuer (sign it with 'trellis sign')")
        if claims.issuer not in self.issuers:
            trusted = ", ".join(short(k) for k in self.issuers)
            raise SignatureError(f"{what} is signed by issuer {claims.issuer}, which this host does not trust "
                                 f"(trusted: {trusted})")
        return claims

    def check_component(self, wasm: bytes, what: str) -> Claims | None:
        """The accepted claims of a component (None when signatures are not required)."""
        if not self.required:
            return None
        try:
            claims = read_wasm_claims(wasm)
        except SignatureError as exc:
            raise SignatureError(f"{what} refused: {exc}") from None
        return self._accept(claims, what)

    def check_python_file(self, source: bytes, what: str) -> Claims | None:
        if not self.required:
            return None
        try:
            claims = read_py_claims(source)
        except SignatureError as exc:
            raise SignatureError(f"{what} refused: {exc}") from None
        return self._accept(claims, what)

    def copy_checked_folder(self, src: Path, dest: Path, what: str) -> Claims:
        """Copy a provider folder to ``dest`` and accept the copy's signature (signatures required)."""
        try:
            return verified_copy(src, dest, lambda claims: self._accept(claims, what))
        except SignatureError as exc:
            if exc.message.startswith(what):
                raise
            raise SignatureError(f"{what} refused: {exc}") from None
