"""Reading a manifest: bytes → YAML/JSON data → `Manifest` (+ `Problem`s).

The only I/O in the manifest package is here: reading the manifest file and, for
`check_manifest`/`validation_report`, checking that local ``file://`` images exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ._describe import describe_value, problems_from_errors
from .images import ImageError, looks_like_path, parse_image
from .local_checks import LOCAL_CHECKS
from .models import Manifest
from .problems import ManifestError, Problem, error, errors_in, warnings_in
from .repair import best_effort
from .validate import validate

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Larger inputs are refused: a manifest is a few kilobytes, and YAML parsing is not cheap."""
MAX_NODES = 200_000
"""Refuse documents with more values than this (guards against YAML alias bombs)."""

Source = str | bytes | os.PathLike[str]


# --- text → data --------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"key {key!r} appears twice in the same mapping (line {line})")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last; wadm refuses)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable key; the base constructor reports it properly
            continue
        if duplicate:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _count_nodes(data: Any, limit: int) -> int:
    """Count values in `data`, stopping once `limit` is passed (shared YAML aliases count each time)."""
    count = 0
    stack = [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count


def parse_data(text: str | bytes) -> Any:
    """Parse manifest text (YAML, or JSON which is also accepted) into plain data.

    Raises `ManifestError` for text that is not one well-formed document.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError([error("", f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")])
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ManifestError([error("", f"manifest is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError([error("", f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")])
    if not text.strip():
        raise ManifestError([error("", "manifest is empty")])
    stripped = text.lstrip()
    try:
        if stripped.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(
                    [error(f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg}")]
                ) from None
        else:
            docs = [d for d in yaml.load_all(text, Loader=_StrictLoader)]  # noqa: S506 - SafeLoader subclass
            docs = [d for d in docs if d is not None]
            if len(docs) > 1:
                raise ManifestError([error("", f"expected one YAML document, found {len(docs)} (separated by ---)")])
            data = docs[0] if docs else None
    except _DuplicateKey as exc:
        raise ManifestError([error("", str(exc))]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([error(_yaml_where(exc), f"not valid YAML: {_yaml_message(exc)}")]) from None
    except RecursionError:
        raise ManifestError([error("", "manifest is nested too deeply")]) from None
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise ManifestError([error("", f"cannot read manifest: {exc}")]) from None
    if _count_nodes(data, MAX_NODES) > MAX_NODES:
        raise ManifestError([error("", f"manifest has more than {MAX_NODES} values (YAML aliases expanded)")])
    if not isinstance(data, dict):
        raise ManifestError([error("",
                                   "a manifest is a mapping with apiVersion, kind, metadata and spec; got "
                                   f"{describe_value(data)}")])
    return data


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}"
    return ""


def _yaml_message(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        return f"{problem} ({context})" if context else str(problem)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- data → Manifest ------------------------------------------------------------------------


def manifest_from_data(data: Any) -> Manifest:
    """Build a `Manifest` from plain data; raises `ManifestError` if its shape is wrong.

    This checks shape only (keys and types); `validate()` checks meaning.
    """
    if not isinstance(data, dict):
        raise ManifestError([error("", f"a manifest is a mapping, got {describe_value(data)}")])
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(problems_from_errors(data, exc.errors())) from None
    except RecursionError:
        raise ManifestError([error("", "manifest is nested too deeply")]) from None


# --- sources -----------------------------------------------------------------------------------


def _read_source(source: Source) -> tuple[str | bytes, Path | None, str | None]:
    """Return (text, directory of the file or None, display name or None)."""
    if isinstance(source, bytes):
        return source, None, None
    if isinstance(source, os.PathLike) or "\n" not in source and source.strip() and (
        source.endswith((".yaml", ".yml", ".json")) or os.path.isfile(source)
    ):
        path = Path(source)
    else:
        return source, None, None
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError([error("", f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")], str(path))
        return path.read_bytes(), path.resolve().parent, str(path)
    except FileNotFoundError:
        raise ManifestError([error("", f"no such file: {path}")], str(path)) from None
    except IsADirectoryError:
        raise ManifestError([error("", f"{path} is a directory, not a manifest file")], str(path)) from None
    except OSError as exc:
        raise ManifestError([error("", f"cannot read {path}: {exc.strerror or exc}")], str(path)) from None


def _resolve_images(data: dict[str, Any], base_dir: Path) -> None:
    """Rewrite relative file images to absolute ``file://`` URIs, in place."""
    spec = data.get("spec")
    comps = spec.get("components") if isinstance(spec, dict) else None
    if not isinstance(comps, list):
        return
    for comp in comps:
        props = comp.get("properties") if isinstance(comp, dict) else None
        if not isinstance(props, dict):
            continue
        image = props.get("image")
        if not isinstance(image, str):
            continue
        if not (image.startswith("file://") or looks_like_path(image)):
            continue
        try:
            ref = parse_image(image, base_dir)
        except ImageError:
            continue  # validate() reports it
        props["image"] = ref.as_uri()


def parse_manifest(source: Source, *, base_dir: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and parse a manifest without checking its meaning.

    `source` is a path (``Path``, or a ``str`` naming an existing file or ending in
    ``.yaml``/``.yml``/``.json``), manifest text, or bytes. Relative image paths are
    resolved against `base_dir`, which defaults to the manifest file's directory.
    Raises `ManifestError`.
    """
    text, file_dir, name = _read_source(source)
    try:
        data = parse_data(text)
        base = Path(base_dir) if base_dir is not None else file_dir
        if base is not None:
            _resolve_images(data, base)
        return manifest_from_data(data)
    except ManifestError as exc:
        if name and exc.source is None:
            raise ManifestError(exc.problems, name) from None
        raise


def check_manifest(
    source: Source, *, base_dir: str | os.PathLike[str] | None = None
) -> tuple[Manifest | None, list[Problem]]:
    """Parse and validate; never raises `ManifestError`.

    Returns the manifest (None if it could not be parsed) and every problem found,
    errors first: a manifest whose shape is wrong is patched just enough to check
    the rest of it too (:mod:`.repair`), so one pass reports everything. Also runs
    the checks that read this machine (`local_checks.LOCAL_CHECKS`: image files exist,
    links name interfaces their target exports).
    """
    try:
        text, file_dir, _ = _read_source(source)
        data = parse_data(text)
    except ManifestError as exc:
        return None, exc.problems
    base = Path(base_dir) if base_dir is not None else file_dir
    if base is not None:
        _resolve_images(data, base)
    shape: list[Problem] = []
    try:
        manifest: Manifest | None = manifest_from_data(data)
        checked = manifest
    except ManifestError as exc:
        shape = exc.problems
        manifest, checked = None, best_effort(data)
    problems = list(shape)
    if checked is not None:
        seen = {str(p) for p in shape}
        more = validate(checked)
        for check in LOCAL_CHECKS:
            more += check(checked)
        problems += [p for p in more if str(p) not in seen]
    return manifest, errors_in(problems) + warnings_in(problems)


def load_manifest(source: Source, *, base_dir: str | os.PathLike[str] | None = None) -> Manifest:
    """Read, parse and validate a manifest. Raises `ManifestError` if it has any error.

    Warnings do not stop loading; get them with `validate(manifest)` or `check_manifest`.
    """
    text, file_dir, name = _read_source(source)
    try:
        data = parse_data(text)
        base = Path(base_dir) if base_dir is not None else file_dir
        if base is not None:
            _resolve_images(data, base)
        manifest = manifest_from_data(data)
    except ManifestError as exc:
        raise ManifestError(exc.problems, exc.source or name) from None
    problems = validate(manifest)
    if errors_in(problems):
        raise ManifestError(problems, name)
    return manifest


def validation_report(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """What ``trellis app validate FILE`` prints: (valid, text).

    Valid manifests give ``True`` and a summary followed by any warnings; invalid
    ones give ``False`` and every error (then warnings), one per line.
    """
    manifest, problems = check_manifest(Path(path))
    errs = errors_in(problems)
    lines: list[str] = []
    if manifest is None or errs:
        lines.append(f"{path}: invalid manifest ({len(errs)} error(s))")
    else:
        comps = sum(1 for c in manifest.components if not c.is_capability)
        caps = sum(1 for c in manifest.components if c.is_capability)
        links = sum(len(c.links) for c in manifest.components)
        version = manifest.declared_version or "unversioned"
        lines.append(
            f"{path}: valid manifest for application '{manifest.name}' ({version}): "
            f"{comps} component(s), {caps} capability provider(s), {links} link(s)"
        )
    lines.extend(f"  {p}" for p in problems)
    return not errs and manifest is not None, "\n".join(lines)


def validation_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``trellis app validate FILE -o json`` prints.

    ``{"file", "valid", "name", "version", "components", "providers", "links",
    "errors": [{"level", "where", "message"}], "warnings": [...]}``; ``name`` and the
    counts are null when the manifest could not be read at all.
    """
    manifest, problems = check_manifest(Path(path))
    errs = errors_in(problems)

    def plain(p: Problem) -> dict[str, str]:
        return {"level": p.level.value, "where": p.where, "message": p.message}

    return {
        "file": str(path),
        "valid": manifest is not None and not errs,
        "name": manifest.name if manifest is not None else None,
        "version": manifest.declared_version if manifest is not None else None,
        "components": sum(1 for c in manifest.components if not c.is_capability) if manifest else None,
        "providers": sum(1 for c in manifest.components if c.is_capability) if manifest else None,
        "links": sum(len(c.links) for c in manifest.components) if manifest else None,
        "errors": [plain(p) for p in errs],
        "warnings": [plain(p) for p in warnings_in(problems)],
    }
