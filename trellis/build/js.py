"""Building JavaScript apps into components with componentize-js (`trellis build`).

A JavaScript app is a folder with ``app.js`` (an ES module) and ``wit/``, or a ``trellis.toml``
whose ``module`` is a ``.js`` file. componentize-js comes from the npm registry: the first JS
build installs the pinned version once into ``$TRELLIS_JS_TOOLCHAIN`` (default
``~/.cache/trellis/js/componentize-js-<version>``) with the machine's ``npm``, and every build
runs it through its JavaScript API (its ``jco componentize`` CLI fails here) with ``node``.

Which engine features the component carries follows its world: StarlingMonkey's ``fetch()``
(``http``) only when the world imports ``wasi:http/outgoing-handler``, its ``fetch`` event
handler only when the world exports ``wasi:http/incoming-handler``; the rest keep the component
free of imports Trellis would have to satisfy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from trellis.interfaces.wit_packages import wit_files

COMPONENTIZE_JS = "@bytecodealliance/componentize-js"
COMPONENTIZE_JS_VERSION = "0.23.0"
_SCRIPT = Path(__file__).with_name("componentize.mjs")
_NPM_TIMEOUT_S = 900.0


class JsBuildError(Exception):
    """Raised with a message for people; trellis.build turns it into its BuildError."""


def toolchain_dir() -> Path:
    env = os.environ.get("TRELLIS_JS_TOOLCHAIN")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "trellis" / "js" / \
        f"componentize-js-{COMPONENTIZE_JS_VERSION}"


def _which(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise JsBuildError(f"{name} not found on PATH: JavaScript components need Node.js 20 or newer and npm "
                           "(Debian: apt-get install nodejs npm)")
    return found


def tool_version() -> str:
    """What the build cache key records for the JS toolchain."""
    node = subprocess.run([_which("node"), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return f"componentize-js {COMPONENTIZE_JS_VERSION} node {node}"


def ensure_toolchain(say: Callable[[str], None]) -> Path:
    """The folder whose node_modules holds componentize-js; installed on first use."""
    root = toolchain_dir()
    marker = root / "node_modules" / "@bytecodealliance" / "componentize-js" / "package.json"
    if marker.is_file():
        return root
    npm = _which("npm")
    say(f"installing {COMPONENTIZE_JS}@{COMPONENTIZE_JS_VERSION} with npm (once; ~400 MB, about a minute)")
    staging = root.with_name(root.name + f".{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "package.json").write_text(json.dumps(
        {"name": "trellis-js-toolchain", "private": True, "type": "module",
         "dependencies": {COMPONENTIZE_JS: COMPONENTIZE_JS_VERSION}}, indent=2) + "\n")
    try:
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging,
                              capture_output=True, text=True, timeout=_NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        raise JsBuildError(f"npm install {COMPONENTIZE_JS} took longer than {_NPM_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-12:]
        raise JsBuildError(f"npm install {COMPONENTIZE_JS}@{COMPONENTIZE_JS_VERSION} failed:\n" + "\n".join(last))
    try:
        staging.rename(root)  # another build may have won the race: then use its copy
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def disabled_features(world_json: dict, world: str) -> list[str]:
    """StarlingMonkey features the world does not use (see the module's docstring)."""
    name = world.split("/", 1)[1].split("@", 1)[0]
    interfaces = world_json.get("interfaces", [])
    packages = world_json.get("packages", [])

    def names(items: dict) -> set[str]:
        out = set()
        for key, item in items.items():
            iface = item.get("interface") if isinstance(item, dict) else None
            if isinstance(iface, dict) and "id" in iface:
                info = interfaces[iface["id"]]
                pkg = packages[info["package"]]["name"].split("@", 1)[0] if info.get("package") is not None else ""
                out.add(f"{pkg}/{info.get('name')}")
            else:
                out.add(key)
        return out

    for w in world_json.get("worlds", []):
        pkg = packages[w["package"]]["name"]
        if w["name"] == name and world.startswith(pkg.split("@", 1)[0] + "/"):
            imports, exports = names(w.get("imports", {})), names(w.get("exports", {}))
            off = []
            if "wasi:http/outgoing-handler" not in imports:
                off.append("http")
            if "wasi:http/incoming-handler" not in exports:
                off.append("fetch-event")
            return off
    return ["http", "fetch-event"]


def check_syntax(source: Path) -> None:
    """``node --check`` the entry module, so a syntax error names its line (componentize-js only
    says how many errors it found)."""
    probe = source.with_name(f".trellis-check-{source.stem}.mjs")  # .mjs: parsed as an ES module
    shutil.copyfile(source, probe)
    try:
        proc = subprocess.run([_which("node"), "--check", str(probe)], capture_output=True, text=True, timeout=60)
    finally:
        probe.unlink(missing_ok=True)
    if proc.returncode == 0:
        return
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    where = next((line for line in lines if line.startswith(str(probe))), "")
    line_no = where.rsplit(":", 1)[-1] if ":" in where else "?"
    error = next((line.strip() for line in lines if "Error:" in line), lines[-1] if lines else "syntax error")
    raise JsBuildError(f"{source.name}:{line_no}: {error}")


def componentize(source: Path, wit: Path, world: str, out: Path, features_off: list[str], *,
                 timeout_s: float, say: Callable[[str], None]) -> Path:
    """Build ``source`` (an ES module in a copy of the app) for ``world`` into ``out``."""
    if not wit_files(wit):
        raise JsBuildError(f"{wit}: no .wit files")
    check_syntax(source)
    root = ensure_toolchain(say)
    script = root / "trellis-componentize.mjs"
    if not script.is_file() or script.read_bytes() != _SCRIPT.read_bytes():
        shutil.copyfile(_SCRIPT, script)  # beside node_modules, so its import resolves there
    say(f"componentize-js ({world})")
    args = {"sourcePath": str(source), "witPath": str(wit), "worldName": world, "out": str(out),
            "disableFeatures": features_off}
    try:
        proc = subprocess.run([_which("node"), str(script), json.dumps(args)], cwd=source.parent,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise JsBuildError(f"componentize-js took longer than {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not out.is_file():
        text = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        raise JsBuildError("componentize-js failed:\n" + "\n".join(text[-40:]))
    return out
