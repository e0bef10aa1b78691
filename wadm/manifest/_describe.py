"""Turning pydantic errors and data locations into words a user understands."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

from .models import KNOWN_KEYS
from .problems import Problem, error


def describe_value(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {short!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _child(data: Any, key: Any) -> Any:
    if isinstance(data, Mapping):
        return data.get(key)
    if isinstance(data, list | tuple) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    return None


def describe_location(data: Any, loc: Sequence[Any]) -> str:
    """A readable path for a pydantic `loc` in manifest `data`, naming components and traits.

    ``('spec','components',1,'traits',0,'properties','instances')`` becomes
    ``component "ui" > spreadscaler trait (#1) > properties.instances``.
    """
    parts: list[str] = []
    plain: list[str] = []
    node = data
    i = 0
    loc = list(loc)
    while i < len(loc):
        key = loc[i]
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if key == "components" and isinstance(nxt, int):
            comp = _child(_child(node, key), nxt)
            name = _child(comp, "name")
            parts.extend(plain)
            plain = []
            parts.append(f'component "{name}"' if isinstance(name, str) else f"spec.components[{nxt}]")
            node = comp
            i += 2
            continue
        if key == "traits" and isinstance(nxt, int):
            trait = _child(_child(node, key), nxt)
            ttype = _child(trait, "type")
            parts.extend(plain)
            plain = []
            label = f"{ttype} trait" if isinstance(ttype, str) else "trait"
            parts.append(f"{label} (#{nxt + 1})")
            node = trait
            i += 2
            continue
        if isinstance(key, int):
            text = f"[{key}]"
            if plain:
                plain[-1] += text
            else:
                plain.append(text)
        elif key != "spec" or parts or plain:
            plain.append(str(key))
        node = _child(node, key)
        i += 1
    if plain:
        parts.append(".".join(plain))
    return " > ".join(parts)


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unquote_hint(value: Any) -> str:
    """A hint for a number written as text (``"30"``)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (write it without quotes)"
    return ""


def problem_from_error(
    data: Any, err: ErrorDetails, prefix: Sequence[Any] = (), where_prefix: str = ""
) -> Problem:
    """Turn one pydantic error into a `Problem` a user can act on.

    `data` is the input that was validated (used to name components and traits in
    the location); `prefix` is prepended to the error's loc; `where_prefix` to the
    readable location.
    """
    loc = [*prefix, *err["loc"]]
    kind = err["type"]
    value = err.get("input")
    # pydantic puts union member / tagged names in loc; drop them
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]

    def where_of(sub: Sequence[Any]) -> str:
        here = describe_location(data, sub)
        return " > ".join(x for x in (where_prefix, here) if x)

    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        return error(where_of(loc[:-1]), f"unknown key '{key}'{_suggest(str(key))}")
    if kind == "missing":
        field = loc[-1] if loc else ""
        return error(where_of(loc[:-1]), f"missing required key '{field}'")
    where = where_of(loc)
    if kind in ("string_type", "str_type"):
        if value is None:
            return error(where, "expected text, got nothing")
        hint = " (quote it)" if isinstance(value, int | float | bool) else ""
        return error(where, f"expected text, got {describe_value(value)}{hint}")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return error(where, f"expected a whole number, got {describe_value(value)}{_unquote_hint(value)}")
    if kind in ("float_type", "float_parsing"):
        return error(where, f"expected a number, got {describe_value(value)}{_unquote_hint(value)}")
    if kind == "finite_number":
        return error(where, f"expected a finite number, got {describe_value(value)}")
    if kind == "greater_than_equal":
        least = err.get("ctx", {}).get("ge", 0)
        if isinstance(least, float) and least.is_integer():
            least = int(least)
        return error(where, f"must be {least} or more, got {describe_value(value)}")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return error(where, f"expected a mapping, got {describe_value(value)}")
    if kind in ("list_type", "tuple_type"):
        return error(where, f"expected a list, got {describe_value(value)}")
    if kind == "too_short":
        return error(where, "must not be empty")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return error(where, f"must be one of {expected}, got {describe_value(value)}")
    if kind == "value_error":
        return error(where, err["msg"].removeprefix("Value error, "))
    return error(where, err["msg"])


def problems_from_errors(data: Any, errors: Sequence[ErrorDetails], prefix: Sequence[Any] = (),
                         where_prefix: str = "") -> list[Problem]:
    """`problem_from_error` for each of one validation's errors, a misspelt key said once: where an
    unknown key is close to a required key missing at the same place ('propertes', 'instancs'),
    the "missing required key" is the same mistake and is left out."""
    problems = [problem_from_error(data, e, prefix, where_prefix) for e in errors]
    meant = {(p.where, m.group(1)) for p in problems if (m := _MEANT.search(p.message))}
    return [p for p in problems if not ((m := _MISSING.fullmatch(p.message)) and (p.where, m.group(1)) in meant)]


_MEANT = re.compile(r"^unknown key '.*' \(did you mean '(.*)'\?\)$")
_MISSING = re.compile(r"missing required key '(.*)'")
