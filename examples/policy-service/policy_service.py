"""A sample Trellis policy service: allow-lists in a YAML file, everything else denied.

Run it next to the lattice (it needs only NATS)::

    python examples/policy-service/policy_service.py --policy policy.yaml \
        --subject trellis-policy.default --nats-url nats://127.0.0.1:4222

then start hosts and wadm with ``--policy-subject trellis-policy.default``. The file is
read again when it changes, so edits take effect on the next request. Each decision is
logged as one JSON line on stdout. See README.md for the file's format.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("policy-service")


def _patterns(data: dict[str, Any], key: str) -> list[str] | None:
    """A list of glob patterns, or None when the key is absent (= no restriction)."""
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a list of strings")
    return value


def _match(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass
class Policy:
    issuers: list[str] | None = None
    components: list[str] | None = None
    providers: list[str] | None = None
    python_modules: list[str] = field(default_factory=list)
    links: list[dict[str, str]] | None = None
    control: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Policy:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError("the policy file must be a mapping")
        unknown = set(data) - {"issuers", "components", "providers", "python_modules", "links", "control"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        links = data.get("links")
        if links is not None and (not isinstance(links, list) or not all(isinstance(x, dict) for x in links)):
            raise ValueError("'links' must be a list of {source, target, interface} patterns")
        return cls(issuers=_patterns(data, "issuers"), components=_patterns(data, "components"),
                   providers=_patterns(data, "providers"), python_modules=_patterns(data, "python_modules") or [],
                   links=links, control=_patterns(data, "control") or [])

    # --- decisions: (permitted, message) ----------------------------------------------

    def _issuer(self, claims: dict[str, Any] | None, what: str) -> tuple[bool, str] | None:
        if self.issuers is None:
            return None
        if not claims:
            return False, f"{what} is unsigned; policy requires an issuer in {self.issuers}"
        if claims.get("issuer") not in self.issuers:
            return False, f"{what} is signed by {claims.get('issuer')}, not an allowed issuer"
        return None

    def start_component(self, req: dict[str, Any]) -> tuple[bool, str]:
        what = f"component {req.get('componentId')}"
        refused = self._issuer(req.get("claims"), what)
        if refused:
            return refused
        image = str(req.get("imageRef", ""))
        if self.components is not None and not _match(image, self.components):
            return False, f"image {image} is not in the allowed components"
        return True, "allowed"

    def start_provider(self, req: dict[str, Any]) -> tuple[bool, str]:
        ref = str(req.get("providerRef", ""))
        if ref.startswith("python:"):
            module = ref[len("python:"):]
            if not _match(module, self.python_modules):
                return False, f"python:{module} is not in python_modules"
            return True, "allowed python module"
        if not ref.startswith("builtin:"):
            refused = self._issuer(req.get("claims"), f"provider {req.get('providerId')}")
            if refused:
                return refused
        if self.providers is not None and not _match(ref, self.providers):
            return False, f"provider {ref} is not in the allowed providers"
        return True, "allowed"

    def put_link(self, req: dict[str, Any]) -> tuple[bool, str]:
        if self.links is None:
            return True, "links are not restricted"
        interfaces = req.get("interfaces") or ["*"]
        for iface in interfaces:
            full = f"{req.get('witNamespace')}:{req.get('witPackage')}/{iface}"
            if not any(fnmatch.fnmatchcase(str(req.get("sourceId")), rule.get("source", "*"))
                       and fnmatch.fnmatchcase(str(req.get("target")), rule.get("target", "*"))
                       and fnmatch.fnmatchcase(full, rule.get("interface", "*")) for rule in self.links):
                return False, f"link {req.get('sourceId')} -> {req.get('target')} ({full}) is not allowed"
        return True, "allowed"

    def control_request(self, req: dict[str, Any]) -> tuple[bool, str]:
        op = f"{req.get('area')}.{req.get('operation')}"
        if _match(op, self.control):
            return True, "allowed"
        return False, f"{op} is not an allowed control operation"

    def decide(self, kind: str, req: dict[str, Any]) -> tuple[bool, str]:
        handler = {"startComponent": self.start_component, "startProvider": self.start_provider,
                   "putLink": self.put_link, "control": self.control_request}.get(kind)
        if handler is None:
            return False, f"unknown request kind {kind!r}"
        return handler(req)


class Service:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.policy = Policy.load(path)
        self._mtime = path.stat().st_mtime
        #: a new policy is in force that hosts have not been told about yet
        self.unannounced = False

    def reload(self) -> bool:
        """Read the file again if it changed; True when a new policy is in force."""
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return False
            self._mtime = mtime
            self.policy = Policy.load(self.path)
            self.unannounced = True
            log.info("reloaded %s", self.path)
            return True
        except (OSError, ValueError, yaml.YAMLError) as exc:  # keep the last good policy
            log.error("cannot reload %s: %s (keeping the previous policy)", self.path, exc)
            return False

    def current(self) -> Policy:
        self.reload()
        return self.policy

    def answer(self, data: bytes) -> dict[str, Any]:
        try:
            req = json.loads(data)
            rid, kind, body = req.get("requestId", ""), req["kind"], req.get("request") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            return {"requestId": "", "permitted": False, "message": "malformed policy request"}
        permitted, message = self.current().decide(kind, body)
        print(json.dumps({"requestId": rid, "kind": kind, "permitted": permitted, "message": message,
                          "requester": req.get("requester", {}).get("publicKey")}), flush=True)
        return {"requestId": rid, "permitted": permitted, "message": message}


async def serve(args: argparse.Namespace) -> int:
    from trellis.interfaces.connection import NatsSettings, connect

    service = Service(Path(args.policy))
    nc = await connect(NatsSettings.from_env(url=args.nats_url), name="trellis-policy-service")

    async def on_request(msg: Any) -> None:
        if msg.reply:
            await msg.respond(json.dumps(service.answer(msg.data)).encode())

    await nc.subscribe(args.subject, queue="trellis-policy", cb=on_request)
    await nc.flush()
    print(json.dumps({"event": "policy_service_ready", "subject": args.subject}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # tell hosts when the file changes, so they ask again about what they keep (links)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), args.watch_interval)
        except TimeoutError:
            service.reload()
            if service.unannounced:
                service.unannounced = False
                await nc.publish(f"{args.subject}.changed", b"{}")
                print(json.dumps({"event": "policy_changed", "subject": f"{args.subject}.changed"}), flush=True)
    await nc.drain()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--policy", required=True, help="the allow-list YAML file")
    p.add_argument("--subject", required=True, help="the NATS subject hosts and wadm ask (--policy-subject)")
    p.add_argument("--nats-url", default=None, help="NATS URL (default TRELLIS_NATS_URL or nats://127.0.0.1:4222)")
    p.add_argument("--watch-interval", type=float, default=1.0, help="seconds between checks of the file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        Policy.load(Path(args.policy))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {args.policy}: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
