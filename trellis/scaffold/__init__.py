"""`trellis new`: a working project to start from, like `wash new`.

* ``trellis new component NAME --lang python|js``: an HTTP component that keeps a counter in
  key-value (Python: ``trellis:http`` with componentize-py; JavaScript: a standard
  ``wasi:http`` handler with componentize-js), with its WIT, a manifest and a README;
* ``trellis new provider NAME``: a capability provider written with the SDK, with its WIT,
  a unit test, a manifest and a README.

Templates live in ``templates/<kind>/``; ``$name``-style placeholders are filled in
(``string.Template``), file names too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).with_name("templates")
LANGUAGES = ("python", "js")
#: a WIT identifier, a manifest name and a folder name at once
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class ScaffoldError(Exception):
    """Said to the user as it is."""


def _check(name: str, parent: Path) -> Path:
    if not _NAME.match(name):
        raise ScaffoldError(f"name {name!r}: use lower-case letters, digits and single dashes, starting with a "
                            "letter (it becomes a WIT identifier), e.g. my-app")
    target = parent / name
    if target.exists():
        raise ScaffoldError(f"{target} already exists: pick another name or remove it")
    return target


def _fill(template: Path, target: Path, values: dict[str, str], rename: dict[str, str]) -> list[Path]:
    written: list[Path] = []
    for src in sorted(template.rglob("*")):
        if src.is_dir() or "__pycache__" in src.parts:
            continue
        rel = src.relative_to(template)
        dest = target / Path(*[rename.get(part, part) for part in rel.parts])
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix in (".py", ".js", ".wit", ".yaml", ".md", ".toml") and "deps" not in rel.parts:
            dest.write_text(Template(src.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        else:
            shutil.copyfile(src, dest)
        written.append(dest)
    return written


def _values(name: str, port: int = 8080) -> dict[str, str]:
    module = name.replace("-", "_")
    return {"name": name, "world": name, "package": "example", "module": module, "port": str(port),
            "klass": "".join(part.capitalize() for part in name.split("-"))}


def new_component(name: str, lang: str = "python", parent: Path = Path("."), port: int = 8080) -> Path:
    """Write a component project ``parent/name`` that serves HTTP on ``port``; return its folder."""
    if lang not in LANGUAGES:
        raise ScaffoldError(f"--lang {lang!r}: choose one of {', '.join(LANGUAGES)}")
    if not 0 < port < 65536:
        raise ScaffoldError(f"--port {port}: not a TCP port")
    target = _check(name, parent)
    values = {**_values(name, port), "http_namespace": "wasi" if lang == "js" else "trellis"}
    _fill(TEMPLATES / f"component-{lang}", target, values, {})
    return target


def new_provider(name: str, parent: Path = Path(".")) -> Path:
    """Write a provider project ``parent/name``; return its folder."""
    target = _check(name, parent)
    values = _values(name)
    _fill(TEMPLATES / "provider", target, values, {"provider.py": f"{values['module']}.py"})
    return target
