"""`trellis up`: an embedded lattice on one machine, as one supervised process tree.

nats-server (JetStream, data under the state directory) and one host run as
children; the wadm controller (when present) runs in the host's process
(``trellis host --with-wadm``: one Python process fewer, ``--wadm-process`` for a
child of its own). Children that die are restarted
with backoff; Ctrl-C or SIGTERM stops them in reverse order, each along the
TERM → grace → KILL ladder.

With ``--deploy`` it also deploys an application once the lattice is up: a
manifest, or a folder of apps, which is built first and whose ``wadm.yaml`` is
deployed (``trellis up --deploy examples/platform-poc``).

Once the banner is out and a deploy has finished, the process replaces itself with the lean
keeper of ``upkeep.py`` (same pid, same children, same supervision): ~10 MiB instead of the
~39 the whole CLI holds (``TRELLIS_UP_LEAN=0``: it stays as it is).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from trellis.host.identity import Identity
from trellis.interfaces import subjects
from trellis.interfaces.connection import NatsSettings, connect
from trellis.interfaces.control import HostOp
from trellis.interfaces.policy import PolicySettings
from trellis.interfaces.wadm_api import ListApps, WadmOp
from trellis.kit import procs

from . import leftovers
from .natsserver import NatsServer, NatsServerError

#: how long ``trellis up`` waits for its host to answer before it says it is up anyway
HOST_READY_S = 60.0
#: how long it waits for wadm's API to answer before it gives up (``--ready-timeout``)
WADM_READY_S = 60.0


class UpError(RuntimeError):
    pass


@dataclass
class UpSettings:
    state_dir: Path
    nats_host: str = "127.0.0.1"
    nats_port: int = 4222
    lattice: str = "default"
    labels: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    with_wadm: bool = True
    #: the controller runs in the host's process (``trellis host --with-wadm``), not as a child of its own
    wadm_in_host: bool = True
    stop_grace_s: float = 15.0
    #: a manifest, or a folder of apps with a wadm.yaml, to deploy once the lattice is up
    deploy: Path | None = None
    #: ``NAME.KEY=VALUE`` overrides of the deployed manifest's inline configs (``--config``)
    deploy_config: list[str] = field(default_factory=list)
    #: how long the deploy may take: the host's first start of a Python component compiles it (~10 s each)
    deploy_timeout_s: float = 900.0
    #: issuer public keys the host trusts (it then runs only artifacts they signed)
    trusted_issuers: tuple[str, ...] = ()
    #: modules the host may run as python:MODULE providers
    allow_python_providers: tuple[str, ...] = ()
    #: the web dashboard (`trellis ui`): where it listens; None: not started
    ui_host: str = "127.0.0.1"
    ui_port: int | None = 3030
    #: the policy service host and wadm ask (off by default: see docs/operations.md, "Policy")
    policy: PolicySettings = field(default_factory=PolicySettings)
    #: serve the whole embedded lattice's Prometheus metrics here (the host gathers wadm's too)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: --log-format / --log-to for the host (and its workers and providers) and wadm (interfaces/logs.py)
    log_format: str | None = None
    log_to: str | None = None
    #: how long the banner waits for wadm's API to answer; past it, ``trellis up`` stops with an error
    wadm_ready_s: float = WADM_READY_S
    #: once up (and deployed), the process becomes the lean keeper of ``upkeep.py`` (False: it stays as it is)
    lean: bool = field(default_factory=lambda: os.environ.get("TRELLIS_UP_LEAN", "1").lower()
                       not in ("0", "false", "no", "off"))


class StateLock:
    """One `trellis up` per state directory; a second one learns who holds it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "up.lock"
        self._fh: TextIO | None = None

    def acquire(self, info: dict[str, object]) -> dict[str, Any] | None:
        """Hold the lock; returns what a run that ended without releasing it had recorded."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 (the open file holds the lock until release())
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            held = fh.read().strip()
            fh.close()
            try:
                other = json.loads(held)
                detail = f" (pid {other.get('pid')}, NATS at {other.get('nats_url')})"
            except ValueError:
                detail = ""
            raise UpError(
                f"trellis up is already running for {self.path.parent}{detail}; "
                "stop it first, or use another --state-dir and --nats-port"
            ) from None
        fh.seek(0)
        try:
            previous = json.loads(fh.read() or "null")
        except ValueError:
            previous = None
        self._fh = fh
        self.update(info)
        return previous if isinstance(previous, dict) else None

    def update(self, info: dict[str, object]) -> None:
        if self._fh:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.write(json.dumps(info))
            self._fh.flush()

    def fileno(self) -> int | None:
        return self._fh.fileno() if self._fh else None

    def release(self) -> None:
        if self._fh:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    name: str
    argv: list[str]
    #: where its output goes; None: our own stdout (--log-to stdout)
    log: Path | None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    done: bool = False

    def start(self) -> None:
        self.proc = procs.spawn(self.argv, log=self.log, inherit=self.log is None)  # it dies with us

    def backoff(self) -> float:
        return min(30.0, 0.5 * (2 ** min(self.restarts, 6)))


class Up:
    def __init__(self, settings: UpSettings, say: Callable[[str], None] = print) -> None:
        self.s = settings
        self.say = say
        self.state = settings.state_dir.expanduser()
        self.lock = StateLock(self.state)
        self.nats: NatsServer | None = None
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._deployer: subprocess.Popen[bytes] | None = None
        self._deploying: threading.Thread | None = None
        #: the banner is out: the lattice is up
        self._up = False

    @property
    def nats_url(self) -> str:
        host = "127.0.0.1" if self.s.nats_host in ("0.0.0.0", "") else self.s.nats_host
        return f"nats://{host}:{self.s.nats_port}"

    @property
    def metrics_url(self) -> str | None:
        if self.s.metrics_port is None:
            return None
        host = "127.0.0.1" if self.s.metrics_host in ("0.0.0.0", "") else self.s.metrics_host
        return f"http://{host}:{self.s.metrics_port}/metrics"

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def _info(self) -> dict[str, object]:
        """What the lock file says about this run: who holds it, and its children (for the next run)."""
        kids = [leftovers.record(c.name, c.proc.pid) for c in self.children if c.proc is not None]
        if self.nats is not None and self.nats.proc is not None:
            kids.insert(0, leftovers.record("nats-server", self.nats.proc.pid))
        return {"pid": os.getpid(), "nats_url": self.nats_url, "lattice": self.s.lattice,
                "children": [k.as_dict() for k in kids]}

    def run(self) -> int:
        previous = self.lock.acquire(self._info())
        try:
            if self.s.metrics_port is not None and not 0 < self.s.metrics_port < 65536:
                raise UpError(f"--metrics-port {self.s.metrics_port}: not a port number (1-65535)")
            if self.s.metrics_port is not None and not port_free(self.s.metrics_host, self.s.metrics_port):
                raise UpError(f"--metrics-port {self.s.metrics_port}: the port is already in use on "
                              f"{self.s.metrics_host}; pick another")
            leftovers.stop(self.state, previous, self.say)
            if not leftovers.wait_port_free(lambda: port_free(self.s.nats_host, self.s.nats_port), 2.0):
                raise UpError(
                    f"port {self.s.nats_port} on {self.s.nats_host} is already in use "
                    "(another NATS server?); pick another with --nats-port"
                )
            manifest = self._prepare_deploy()
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
            self._start_all()
            if manifest is not None and not self._stop.is_set():
                self._deploying = threading.Thread(target=self._deploy, args=(manifest,), name="deploy", daemon=True)
                self._deploying.start()
            self._supervise()
            return 0
        finally:
            self._stop_all()
            self.lock.release()

    def _start_all(self) -> None:
        logs = self.state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(
            host=self.s.nats_host, port=self.s.nats_port, store_dir=self.state / "nats",
            server_name="trellis-embedded", log_file=logs / "nats.log",
            pid_file=self.state / leftovers.NATS_PID_FILE,
        )
        try:
            self.nats.start()
        except NatsServerError as exc:
            raise UpError(str(exc)) from None
        seed_file = self.state / "host.seed"
        ident = Identity.load_or_create(seed_file)
        common = ["--nats-url", self.nats_url, "--lattice", self.s.lattice]
        logging_args = [*(["--log-format", self.s.log_format] if self.s.log_format else []),
                        *(["--log-to", self.s.log_to] if self.s.log_to else [])]
        # --log-to stdout: the children write to our stdout; files: their own rotated logs, and
        # what else they print (a crash) to NAME.stdout.log; neither: NAME.log as before
        def out(name: str) -> Path | None:
            if self.s.log_to == "stdout":
                return None
            return logs / (f"{name}.stdout.log" if self.s.log_to == "files" else f"{name}.log")

        host_argv = procs.trellis_argv("host", *common, "--seed-file", str(seed_file),
                                       "--state-dir", str(self.state), *logging_args)
        for label in self.s.labels:
            host_argv += ["--label", label]
        for registry in self.s.insecure_registries:
            host_argv += ["--allow-insecure-registries", registry]
        for key in self.s.trusted_issuers:
            host_argv += ["--trusted-issuer", key]
        for module in self.s.allow_python_providers:
            host_argv += ["--allow-python-provider", module]
        policy_args = self._policy_args()
        host_argv += policy_args
        wadm = self.s.with_wadm and _wadm_available()
        # wadm keeps the secrets keyholder's key here (0600): only this machine can open secrets
        secrets = ["--secrets-key", str(self.state / "secrets.nk")]
        if wadm and self.s.wadm_in_host:
            host_argv += ["--with-wadm", *secrets]
        if self.s.metrics_port is not None:
            host_argv += ["--metrics-port", str(self.s.metrics_port), "--metrics-host", self.s.metrics_host,
                          "--metrics-scope", "lattice"]
        self.children.append(Child("host", host_argv, out("host")))
        if wadm and not self.s.wadm_in_host:
            self.children.append(Child("wadm", procs.trellis_argv(
                "wadm", *common, *secrets, "--state-dir", str(self.state),
                *logging_args, *policy_args), out("wadm")))
        ui_line = ""
        if self.s.ui_port is not None:
            if port_free(self.s.ui_host, self.s.ui_port):
                self.children.append(Child("ui", procs.trellis_argv(
                    "ui", *common, "--host", self.s.ui_host, "--port", str(self.s.ui_port)), out("ui")))
                shown = "127.0.0.1" if self.s.ui_host in ("0.0.0.0", "") else self.s.ui_host
                ui_line = f"  dashboard  http://{shown}:{self.s.ui_port}\n"
            else:
                ui_line = (f"  dashboard  not started: port {self.s.ui_port} on {self.s.ui_host} is in use "
                           "(--ui-port picks another, --no-ui skips it)\n")
        for c in self.children:
            c.start()
        self.lock.update(self._info())
        host = self.children[0]
        if not self._wait_host(ident.public_key, host):
            self.say(f"warning: the host has not answered within {HOST_READY_S:.0f}s (see {logs / 'host.log'})")
        if wadm:  # in its own child, or in the host's process
            self._wait_wadm(next((c for c in self.children if c.name == "wadm"), host))
        if self._stop.is_set():  # Ctrl-C while starting: not up
            return
        self.say(
            f"Trellis is up (lattice {self.s.lattice!r}).\n"
            f"  NATS       {self.nats_url}  JetStream data in {self.state / 'nats'}\n"
            f"  host       {ident.friendly_name}  {ident.public_key}\n"
            + ("  wadm       controller running" + (" (in the host's process)" if self.s.wadm_in_host else "")
               + f"; secrets keyholder key in {self.state / 'secrets.nk'}\n" if wadm else "")
            + ui_line
            + (f"  metrics    {self.metrics_url}\n" if self.metrics_url else "")
            + f"  logs       {logs}\n"
            + (f"  join       on other machines: trellis host --nats-url nats://{socket.gethostname()}:"
               f"{self.s.nats_port}  (this machine's name or address)\n"
               if self.s.nats_host in ("0.0.0.0", "", "::") else "")
            + ("  warning    NATS is reachable beyond this machine with no TLS and no credentials: anyone who "
               "reaches it can run code on this host (docs/operations.md, \"Production setup\")\n"
               if self.s.nats_host not in ("127.0.0.1", "localhost", "::1") else "")
            + f"Try: trellis get hosts{'' if self.s.nats_port == 4222 else ' --nats-url ' + self.nats_url}\n"
            "Press Ctrl-C to stop."
        )
        self._up = True

    def _wait_host(self, host_id: str, host: Child) -> bool:
        """Wait until the host answers control requests (it does once its workers are ready): the
        banner then means ``trellis get hosts`` and ``trellis start`` find it. False: it did not
        within ``HOST_READY_S`` (or exited, or we were asked to stop)."""
        subject = subjects.host_op(self.s.lattice, host_id, HostOp.INVENTORY)
        try:
            return self._answers(subject, b"{}", host, HOST_READY_S) == "answered"
        except Exception as exc:  # NATS itself is unreachable: the supervisor's loop reports it
            self.say(f"warning: could not ask the host whether it is up: {exc!r}")
            return False

    def _wait_wadm(self, runner: Child) -> None:
        """Wait until wadm's API answers (its leader serves it once its view and records are loaded):
        the banner then means ``trellis app deploy`` finds it. ``runner``: the process wadm runs in (the
        host's, or a child of its own). Raises `UpError` when it does not answer within
        ``wadm_ready_s``, or that process exits first."""
        subject = subjects.wadm_api(self.s.lattice, WadmOp.LIST)
        # where its lines are: wadm.log of its own (--log-to files), its process's log, or our output
        log = self.state / "logs" / "wadm.log" if self.s.log_to == "files" else runner.log
        where = f"see {log}" if log is not None else "see the output above"
        try:
            outcome = self._answers(subject, ListApps().model_dump_json().encode(), runner, self.s.wadm_ready_s)
        except Exception as exc:
            raise UpError(f"could not ask wadm whether it is up: {exc!r}") from None
        if outcome == "exited":
            assert runner.proc is not None
            last = _last_line(runner.log)
            who = "wadm" if runner.name == "wadm" else f"the {runner.name} (wadm runs in its process)"
            raise UpError(f"{who} exited with code {runner.proc.returncode} while starting"
                          + (f": {last}" if last else "") + f" ({where})")
        if outcome == "timeout":
            raise UpError(f"wadm did not answer within {self.s.wadm_ready_s:g}s; stopping ({where}; "
                          "--ready-timeout waits longer)")

    def _answers(self, subject: str, body: bytes, child: Child, timeout_s: float) -> str:
        """Ask ``subject`` until it answers: ``answered``, ``exited`` (``child`` did first),
        ``timeout``, or ``stopped`` (we were asked to stop)."""

        async def ask() -> str:
            nc = await connect(NatsSettings(url=self.nats_url), name="trellis-up", max_reconnect_attempts=2)
            try:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if self._stop.is_set():
                        return "stopped"
                    if child.proc is not None and child.proc.poll() is not None:
                        return "exited"
                    try:  # any reply (a refusal by policy too) is the child answering
                        await nc.request(subject, body, timeout=max(0.05, min(1.0, deadline - time.monotonic())))
                        return "answered"
                    except NoRespondersError:  # not subscribed yet: asked again shortly
                        await asyncio.sleep(0.05)
                    except NatsTimeout:
                        pass
                return "timeout"
            finally:
                await nc.close()

        return asyncio.run(ask())

    def _policy_args(self) -> list[str]:
        p = self.s.policy
        if not p.enabled:
            return []
        return ["--policy-subject", str(p.subject), "--policy-timeout", f"{p.timeout_s:g}", "--policy-default",
                p.default]

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            if self._settled():
                self._hand_over()
            if self.nats and not self.nats.running():
                self.say("nats-server exited; restarting it")
                self.nats.start()
                self.lock.update(self._info())
            now = time.monotonic()
            for c in self.children:
                assert c.proc is not None
                if c.proc.poll() is None or c.done:
                    continue
                if c.proc.returncode == 0:
                    # asked to stop (e.g. 'trellis stop host'): respect it
                    c.done = True
                    self.say(f"{c.name} stopped (exit 0); not restarting it")
                    continue
                if c.next_start == 0.0:
                    c.next_start = now + c.backoff()
                    self.say(f"{c.name} exited with {c.proc.returncode}; restarting in {c.backoff():.1f}s "
                             f"(see {c.log})")
                elif now >= c.next_start:
                    c.restarts += 1
                    c.next_start = 0.0
                    c.start()
                    self.lock.update(self._info())

    def _settled(self) -> bool:
        """Up, deployed, every child running (or stopped for good) and none waiting to restart."""
        return (self.s.lean and self._up and not self._stop.is_set() and self.nats is not None
                and self.nats.running() and (self._deploying is None or not self._deploying.is_alive())
                and all(c.next_start == 0.0 and c.proc is not None and (c.done or c.proc.poll() is None)
                        for c in self.children))

    def _hand_over(self) -> None:
        """Become the lean keeper (``upkeep.py``): same pid, so the children, the lock and the output stay."""
        nats = self.nats
        lock = self.lock.fileno()
        if nats is None or nats.proc is None or nats.proc.stderr is None or lock is None:
            return
        err = nats.proc.stderr.fileno()
        state = {
            "lock_fd": lock, "info": {"nats_url": self.nats_url, "lattice": self.s.lattice},
            "grace_s": self.s.stop_grace_s,
            "nats": {"argv": nats.command(), "env": nats.environment(), "pid": nats.proc.pid, "stderr_fd": err,
                     "log_file": str(nats.log_file) if nats.log_file else None},
            "children": [{"name": c.name, "argv": c.argv, "log": str(c.log) if c.log else None,
                          "pid": c.proc.pid, "restarts": c.restarts, "done": c.done}
                         for c in self.children if c.proc is not None],
        }
        keeper = Path(__file__).with_name("upkeep.py")
        # a Ctrl-C from here on waits, blocked, for the keeper's handler (the mask survives the exec)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        if self._stop.is_set():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            return
        # the state (nats-server's environment among it) goes through an inherited memory file, not
        # the command line, which every user of the machine can read in `ps`
        state_fd = os.memfd_create("trellis-upkeep-state", 0)
        os.write(state_fd, json.dumps(state).encode())
        os.set_inheritable(lock, True)
        os.set_inheritable(err, True)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv(sys.executable, [sys.executable, "-P", str(keeper), f"--state-fd={state_fd}"])
        except OSError as exc:  # it stays as it is
            os.close(state_fd)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            self.s.lean = False
            self.say(f"warning: could not become the lean keeper ({exc}); supervising as before")

    def _prepare_deploy(self) -> Path | None:
        """``--deploy``: the manifest to deploy. A folder's apps are built first, before anything starts."""
        path = self.s.deploy
        if path is None:
            return None
        if not self.s.with_wadm:
            raise UpError(f"--deploy {path}: wadm deploys it, and --no-wadm does not start it; drop one of them")
        if path.is_dir():
            manifest = path / "wadm.yaml"
            if not manifest.is_file():
                raise UpError(f"--deploy {path}: the folder has no wadm.yaml to deploy")
            self.say(f"Building {path} ...")
            if subprocess.run(procs.trellis_argv("build", str(path)), preexec_fn=procs.death_signal()).returncode != 0:
                raise UpError(f"--deploy {path}: the build failed (see above)")
            return manifest
        if not path.is_file():
            raise UpError(f"--deploy {path}: no such manifest or folder")
        return path

    def _deploy(self, manifest: Path) -> None:
        """In a thread, after the banner (wadm answers by then): ``trellis app deploy MANIFEST --wait``, its
        output on ours."""
        common = ["--nats-url", self.nats_url, "--lattice", self.s.lattice]
        self.say(f"Deploying {manifest} ...")
        self._deployer = subprocess.Popen(
            procs.trellis_argv("app", "deploy", str(manifest), "--wait", "--timeout",
                               str(self.s.deploy_timeout_s), *common,
                               *(arg for item in self.s.deploy_config for arg in ("--config", item))),
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=procs.die_with_parent)  # this thread waits on it: it goes when we do
        code = self._deployer.wait()
        if code != 0 and not self._stop.is_set():
            # wadm retries what failed (a first compile can outlast a start's deadline on a slow machine)
            self.say("Not deployed yet (why is said above); wadm keeps trying. Waiting for it ... (a port in "
                     "use: --config NAME.address=127.0.0.1:PORT deploys on another)")
            code = self._wait_deployed(manifest, common)
        if not self._stop.is_set():
            self.say(f"Deployed {manifest}." if code == 0 else
                     f"Deploying {manifest} did not finish (exit {code}); the lattice keeps running: "
                     f"see 'trellis app status{'' if self.s.nats_port == 4222 else ' --nats-url ' + self.nats_url}'")

    def _wait_deployed(self, manifest: Path, common: list[str]) -> int:
        """0 once the manifest's application is deployed; 1 if it never was (refused) or the time ran out."""
        try:
            name = str(yaml.safe_load(manifest.read_text())["metadata"]["name"])
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            return 1
        deadline = time.monotonic() + self.s.deploy_timeout_s
        while not self._stop.wait(2.0) and time.monotonic() < deadline:
            r = subprocess.run(procs.trellis_argv("app", "status", name, "-o", "json", *common), capture_output=True,
                               preexec_fn=procs.die_with_parent)
            status = json.loads(r.stdout).get("status") if r.returncode == 0 else "undeployed"
            if status in ("deployed", "undeployed"):
                return 0 if status == "deployed" else 1
        return 1

    def _stop_all(self) -> None:
        if self._deployer is not None:
            procs.stop(self._deployer, 5.0)
        if self.nats is None:
            return
        for c in reversed(self.children):
            if c.proc is not None:
                procs.stop(c.proc, self.s.stop_grace_s)
        if self.nats:
            self.nats.stop()
        self.say("Trellis stopped.")


def _last_line(log: Path | None) -> str:
    """The last line a child wrote to its log (why it exited, usually); "" when there is none."""
    if log is None:
        return ""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _wadm_available() -> bool:
    """Is wadm's controller installed? (Found, not imported: this process would hold it for nothing.)"""
    import importlib.util

    try:
        return importlib.util.find_spec("trellis.wadm.controller") is not None
    except ImportError:
        return False
