"""`trellis sign`: sign a component (.wasm) or a provider (.py) with an issuer key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .output import fail, print_json

if TYPE_CHECKING:
    from trellis.signing import IssuerKey


def issuer_key(key_file: Path | None, new_key_file: Path | None) -> IssuerKey | None:
    """The key named by ``--issuer-key`` or made by ``--new-issuer-key`` (one line on failure)."""
    from trellis.signing import IssuerKey, KeyError_

    if key_file and new_key_file:
        raise fail("give --issuer-key KEYFILE or --new-issuer-key KEYFILE, not both")
    try:
        if new_key_file is not None:
            key = IssuerKey.create(new_key_file)
            typer.echo(f"created issuer key {new_key_file} (keep it secret); public key {key.public_key}", err=True)
            return key
        if key_file is not None:
            return IssuerKey.load(key_file)
    except KeyError_ as exc:
        raise fail(str(exc)) from None
    return None


def sign_bytes(data: bytes, kind: str, key: IssuerKey, *, name: str | None, tags: tuple[str, ...] = (),
               ver: str | None = None, rev: int | None = None, expires_in_days: float | None = None) -> bytes:
    from trellis.signing import SignatureError, sign_py, sign_wasm

    sign = sign_wasm if kind == "wasm" else sign_py
    try:
        return sign(data, key, name=name, tags=tags, ver=ver, rev=rev, expires_in_days=expires_in_days)
    except SignatureError as exc:
        raise fail(f"cannot sign: {exc}") from None


def artifact_kind(path: Path, data: bytes) -> str:
    if path.is_dir():
        return "folder"
    if data.startswith(b"\x00asm"):
        return "wasm"
    if path.suffix == ".py":
        return "py"
    raise fail(f"{path} is neither a WebAssembly binary, a provider .py file nor a provider folder")


def sign_command(
    file: Path | None = typer.Argument(None, exists=True,
                                          help="a component (.wasm), a provider (.py) or a provider folder to sign"),
    output: Path | None = typer.Option(None, "-o", "--output", help="where the signed artifact goes"),
    key_file: Path | None = typer.Option(None, "--issuer-key", envvar="TRELLIS_ISSUER_KEY",
                                            help="the issuer's seed file (nkeys account seed, SA…)"),
    new_key_file: Path | None = typer.Option(None, "--new-issuer-key",
                                                help="create a new issuer key in this file and sign with it"),
    public_key: Path | None = typer.Option(None, "--public-key", metavar="KEYFILE",
                                              help="print the public key (A…) of this issuer key file, for "
                                                   "--trusted-issuer, and exit"),
    inspect: bool = typer.Option(False, "--inspect", help="print FILE's signature (verified) as JSON and exit"),
    name: str | None = typer.Option(None, "--name", help="name in the claims (default: the file's stem)"),
    tag: list[str] = typer.Option([], "--tag", help="tag in the claims (repeatable)"),
    ver: str | None = typer.Option(None, "--ver", help="version string in the claims"),
    rev: int | None = typer.Option(None, "--rev", help="revision number in the claims"),
    expires_in_days: float | None = typer.Option(None, "--expires-in-days", help="the signature's lifetime"),
) -> None:
    """Sign a component or provider artifact so hosts with --trusted-issuer run it.

    A component gets wasmCloud's claims (a JWT in its `wasmcloud_jwt` custom section); a
    provider .py gets them on a last comment line. The signature covers the content hash.
    """
    from trellis.signing import IssuerKey, KeyError_, SignatureError, read_py_claims, read_wasm_claims
    from trellis.signing.folder import read_folder_claims, sign_folder

    if public_key is not None:
        try:
            typer.echo(IssuerKey.load(public_key).public_key)
        except KeyError_ as exc:
            raise fail(str(exc)) from None
        return
    if file is None:
        raise fail("name the FILE to sign (or give --public-key KEYFILE)")
    data = b"" if file.is_dir() else file.read_bytes()
    kind = artifact_kind(file, data)
    if inspect:
        try:
            claims = (read_folder_claims(file) if kind == "folder" else
                      read_wasm_claims(data) if kind == "wasm" else read_py_claims(data))
        except SignatureError as exc:
            raise fail(f"{file}: {exc}") from None
        if claims is None:
            raise fail(f"{file} is not signed")
        print_json(claims.describe())
        return
    if output is None:
        raise fail("give -o SIGNED: where the signed artifact goes")
    key = issuer_key(key_file, new_key_file)
    if key is None:
        raise fail("give --issuer-key KEYFILE (or --new-issuer-key KEYFILE to create one)")
    if kind == "folder":
        try:
            sign_folder(file, output, key, name=name or file.name, tags=tuple(tag), ver=ver, rev=rev,
                        expires_in_days=expires_in_days)
        except (SignatureError, OSError) as exc:
            raise fail(f"cannot sign {file}: {exc}") from None
        typer.echo(f"signed {file}/ -> {output}/ (issuer {key.public_key})")
        return
    signed = sign_bytes(data, kind, key, name=name or file.stem, tags=tuple(tag), ver=ver, rev=rev,
                        expires_in_days=expires_in_days)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(signed)
    if kind == "py":
        tmp.chmod(file.stat().st_mode & 0o777)
    tmp.replace(output)
    typer.echo(f"signed {file} -> {output} (issuer {key.public_key})")
