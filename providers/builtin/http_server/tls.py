"""HTTPS for the HTTP front: a server TLS context from the provider's secrets.

When the provider's manifest entry grants it secrets named ``tls_cert`` (a PEM
certificate chain) and ``tls_key`` (its PEM private key), every listener serves
HTTPS with them; HTTP/1.1 keep-alive works as over plain TCP. The PEM text comes
from the bootstrap (never a file the operator leaves around): it is written to
a private temporary directory only for ``load_cert_chain``, which reads files,
and removed at once. TLS connections are answered by the provider itself,
never handed to a worker (the worker would need the key).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any

CERT_SECRET = "tls_cert"
KEY_SECRET = "tls_key"


class TlsError(ValueError):
    """The certificate or key cannot be used; the message says which, never their content."""


def server_context(secrets: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The context for ``secrets`` (values with ``reveal_str()``), or None when neither is given."""
    cert, key = secrets.get(CERT_SECRET), secrets.get(KEY_SECRET)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = CERT_SECRET if cert is None else KEY_SECRET
        raise TlsError(f"HTTPS needs both secrets {CERT_SECRET} and {KEY_SECRET}; {missing} is missing")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="trellis-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, value in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value.reveal_str())
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise TlsError(f"the {CERT_SECRET}/{KEY_SECRET} secrets are not a matching PEM certificate and key "
                           f"({exc.reason or exc.__class__.__name__})") from None
    return ctx
