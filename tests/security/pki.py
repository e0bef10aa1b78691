"""Test PKI and NATS decentralised auth, made in the test: certificates with `cryptography`,
operator/account/user JWTs and `.creds` files with nkeys. Nothing is downloaded or reused."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    cert_pem: str
    key_pem: str

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
        cert.write_text(self.cert_pem)
        key.write_text(self.key_pem)
        key.chmod(0o600)
        return cert, key


class CertificateAuthority:
    def __init__(self, name: str = "Trellis test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, common_name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(),
                      key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode())


# --- NATS JWTs ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, object]) -> str:
    """A NATS JWT (ed25519-nkey) signed by ``issuer``."""
    claims: dict[str, object] = {"iat": int(time.time()), "iss": issuer.public_key.decode(), "name": name,
                                 "sub": subject, "nats": {"version": 2, **nats}}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
                                     ).decode().rstrip("=")
    head = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64url(issuer.sign(f'{head}.{body}'.encode()))}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
             "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass
class Account:
    key: nkeys.KeyPair
    jwt: str

    @property
    def public(self) -> str:
        return self.key.public_key.decode()

    def user_creds(self, name: str, signer: Account | None = None) -> str:
        """A ``.creds`` file's text for a new user of this account (signed by ``signer``'s key if given:
        another account's key makes a user this account does not trust)."""
        user = new_key(nkeys.PREFIX_BYTE_USER)
        token = jwt((signer or self).key, user.public_key.decode(), name,
                    {"type": "user", "issuer_account": self.public, "subs": -1, "data": -1, "payload": -1,
                     "pub": {}, "sub": {}})
        return (f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
                f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n")


class Operator:
    """An operator with accounts, for nats-server's `resolver: MEMORY`."""

    def __init__(self) -> None:
        self.key = new_key(nkeys.PREFIX_BYTE_OPERATOR)
        self.jwt = jwt(self.key, self.key.public_key.decode(), "trellis-test", {"type": "operator"})
        self.accounts: dict[str, Account] = {}

    def account(self, name: str, *, jetstream: bool = True) -> Account:
        key = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        limits = dict(UNLIMITED) if jetstream else {k: v for k, v in UNLIMITED.items()
                                                      if k not in ("mem_storage", "disk_storage", "streams",
                                                                   "consumer")}
        acct = Account(key, jwt(self.key, key.public_key.decode(), name, {"type": "account", "limits": limits}))
        self.accounts[name] = acct
        return acct

    def server_config(self, system: Account) -> str:
        preload = "\n".join(f"  {a.public}: {a.jwt}" for a in self.accounts.values())
        return (f"operator: {self.jwt}\nsystem_account: {system.public}\nresolver: MEMORY\n"
                f"resolver_preload: {{\n{preload}\n}}\n")
