"""The secrets keyholder: the one process that can open the lattice's secrets.

It runs inside the wadm controller when wadm has a secrets key
(``trellis wadm --secrets-key FILE``; ``trellis up`` makes one in its state
directory). Secrets live in the KV bucket ``TRELLIS_<lattice>_secrets``, each
sealed to the keyholder's curve key; members that read the bucket see
ciphertext. The key file never leaves this machine.

It answers (queue group: replicas that share the key file share the work):

* ``xkey``: its public curve key, for ``trellis secret put`` to seal to;
* ``put`` / ``del`` / ``list``: store, delete, and list names (never values);
* ``get``: from a host, with the grant wadm signed when it placed a part on it.
  Refused unless the request is signed by the host the grant names, recent,
  and the grant is signed by a trusted issuer (this wadm's key); the answer is
  sealed to the curve key the host named in the request.

Nothing here logs or publishes a value.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from trellis.interfaces import secrets as sx
from trellis.interfaces import subjects
from trellis.interfaces.control import CtlReply, parse_request
from trellis.interfaces.errors import ErrorCode
from trellis.interfaces.store import StoreSettings
from trellis.signing import secrets as sealed

log = logging.getLogger(__name__)

#: versions of each secret kept (a manifest's ``version`` names a KV revision)
HISTORY = 10


class Denied(Exception):
    """A request refused, with a reason safe to return (names no value)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.FORBIDDEN) -> None:
        super().__init__(message)
        self.code = code


class Keyholder:
    def __init__(self, nc: Client, lattice: str, key: sealed.NKey, trusted_issuers: frozenset[str],
                 store_settings: StoreSettings | None = None) -> None:
        self.nc = nc
        self.lattice = lattice
        self.key = key
        self.trusted = trusted_issuers | {key.public_key}
        self.store_settings = store_settings or StoreSettings.from_env()
        self._subs: list[Any] = []
        self._kv: Any = None

    async def start(self) -> None:
        await self.kv()
        handlers: dict[str, Callable[[bytes], Awaitable[Any]]] = {
            sx.Op.XKEY: self._xkey, sx.Op.PUT: self._put, sx.Op.DEL: self._del,
            sx.Op.LIST: self._list, sx.Op.GET: self._get,
        }
        for op, handler in handlers.items():
            self._subs.append(await self.nc.subscribe(sx.subject(self.lattice, op), queue=subjects.SECRETS_QUEUE,
                                                      cb=self._answer(op, handler)))
        log.info("secrets keyholder %s serving lattice %s", self.key.public_key, self.lattice)

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        self._subs.clear()

    async def kv(self) -> Any:
        if self._kv is None:
            js = self.nc.jetstream(timeout=self.store_settings.timeout_s)
            name = subjects.bucket(self.lattice, sx.SECRETS_BUCKET)
            try:
                self._kv = await js.key_value(name)
            except Exception:
                from nats.js.api import KeyValueConfig

                self._kv = await js.create_key_value(config=KeyValueConfig(
                    bucket=name, history=HISTORY, replicas=self.store_settings.replicas,
                    description="Trellis secrets, sealed to the keyholder's key"))
        return self._kv

    def _answer(self, op: str, handler: Callable[[bytes], Awaitable[Any]]) -> Callable[[Msg], Awaitable[None]]:
        async def cb(msg: Msg) -> None:
            try:
                reply = CtlReply.ok(await handler(msg.data))
            except Denied as exc:
                reply = CtlReply.fail(exc.code, str(exc))
            except ValueError as exc:
                reply = CtlReply.fail(ErrorCode.BAD_REQUEST, str(exc))
            except Exception as exc:  # never the request's content: it may hold a sealed value
                log.exception("secrets %s failed", op)
                reply = CtlReply.fail(ErrorCode.INTERNAL, f"secrets {op} failed: {exc.__class__.__name__}")
            if msg.reply:
                await self.nc.publish(msg.reply, reply.encode())

        return cb

    # --- the API -------------------------------------------------------------------------

    async def _xkey(self, _: bytes) -> dict[str, str]:
        return {"xkey": self.key.xkey, "public_key": self.key.public_key, "backend": sx.BACKEND}

    async def _put(self, data: bytes) -> dict[str, Any]:
        req = parse_request(sx.PutSecret, data)
        try:
            plain = self.key.unseal(req.sealed)
            value = sx.SecretValue.from_wire(json.loads(plain))
        except Exception:
            raise ValueError("the value is not sealed to this keyholder's key (ask 'xkey' first)") from None
        raw = value.reveal()
        if len(raw) > sx.MAX_SECRET_BYTES:
            raise ValueError(f"a secret is at most {sx.MAX_SECRET_BYTES} bytes")
        stored = {"sealed": sealed.seal(self.key.xkey, plain), "kind": "bytes" if isinstance(raw, bytes) else "string",
                  "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        kv = await self.kv()
        revision = await kv.put(req.name, json.dumps(stored).encode())
        log.info("secret %s stored (revision %d)", req.name, revision)
        return {"name": req.name, "revision": revision}

    async def _del(self, data: bytes) -> dict[str, Any]:
        req = parse_request(sx.DelSecret, data)
        kv = await self.kv()
        try:
            await kv.get(req.name)
        except KeyNotFoundError:
            raise Denied(f"secret {req.name!r} not found", ErrorCode.NOT_FOUND) from None
        await kv.purge(req.name)  # every version goes, not only the latest
        log.info("secret %s deleted", req.name)
        return {"name": req.name, "deleted": True}

    async def _list(self, _: bytes) -> list[dict[str, Any]]:
        kv = await self.kv()
        try:
            keys = await kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        out = []
        for name in sorted(keys):
            try:
                entry = await kv.get(name)
            except KeyNotFoundError:
                continue
            meta = json.loads(entry.value or b"{}")
            out.append({"name": name, "revision": entry.revision, "updated_at": meta.get("updated_at", ""),
                        "kind": meta.get("kind", "")})
        return out

    async def _get(self, data: bytes) -> dict[str, str]:
        req = parse_request(sx.GetSecrets, data)
        if not sealed.verify(req.host_id, req.body.encode(), req.signature):
            log.warning("secrets get refused: request not signed by host %s", req.host_id)
            raise Denied("the request is not signed by the host it names")
        body = sx.GetBody.model_validate_json(req.body)
        if body.host_id != req.host_id:
            raise Denied("the request is not signed by the host it names")
        if abs(time.time() - body.at) > sx.MAX_CLOCK_SKEW_S:
            raise Denied(f"the request is older than {sx.MAX_CLOCK_SKEW_S:g}s (or the clocks disagree)")
        try:
            grant = sealed.open_grant(body.grant, frozenset(self.trusted))
        except ValueError as exc:
            log.warning("secrets get refused for host %s: %s", req.host_id, exc)
            raise Denied(str(exc)) from None
        if grant.host != req.host_id:
            log.warning("secrets get refused: host %s presented a grant for host %s (%s %s of %s)",
                        req.host_id, grant.host, grant.kind, grant.part, grant.app)
            raise Denied(f"the grant is for another host, not {req.host_id}")
        values = {ref.name: await self._read(ref) for ref in grant.secrets}
        log.info("secrets %s given to host %s for %s %s of %s", ",".join(sorted(values)), req.host_id,
                 grant.kind, grant.part, grant.app)
        return {"sealed": sealed.seal(body.reply_xkey, sx.encode_values(values))}

    async def _read(self, ref: sx.SecretRef) -> sx.SecretValue:
        kv = await self.kv()
        try:
            revision = int(ref.version) if ref.version else None
        except ValueError:
            raise Denied(f"secret {ref.key!r}: version {ref.version!r} is not a revision number",
                         ErrorCode.BAD_REQUEST) from None
        try:
            entry = await kv.get(ref.key, revision=revision)
        except KeyNotFoundError:
            raise Denied(f"secret {ref.key!r} is not stored (trellis secret put {ref.key} …)",
                         ErrorCode.NOT_FOUND) from None
        if not entry.value:
            raise Denied(f"secret {ref.key!r} is not stored (trellis secret put {ref.key} …)", ErrorCode.NOT_FOUND)
        try:
            value = sx.SecretValue.from_wire(json.loads(self.key.unseal(json.loads(entry.value)["sealed"])))
        except Exception:
            raise Denied(f"secret {ref.key!r} cannot be opened with this keyholder's key "
                         "(stored under another key?)", ErrorCode.INTERNAL) from None
        if ref.field is None:
            return value
        try:
            fields = json.loads(value.reveal())
            picked = fields[ref.field]
        except (ValueError, TypeError, KeyError):
            raise Denied(f"secret {ref.key!r} has no field {ref.field!r} (a field needs a JSON object value)",
                         ErrorCode.NOT_FOUND) from None
        return sx.SecretValue(picked if isinstance(picked, str) else json.dumps(picked))
