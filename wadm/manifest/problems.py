"""Problems found in a manifest, and the exception that carries them.

A `Problem` is plain data: a level (error or warning), where in the manifest it
is (written for a person: ``component "ui" › link to "db"``), and a message that
says what is wrong and, when we can tell, how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Component, LinkProperties


class Level(StrEnum):
    """How bad a problem is. Errors make a manifest invalid; warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a manifest."""

    level: Level
    where: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.level is Level.ERROR

    def __str__(self) -> str:
        if self.where:
            return f"{self.level.value}: {self.where}: {self.message}"
        return f"{self.level.value}: {self.message}"


def error(where: str, message: str) -> Problem:
    return Problem(Level.ERROR, where, message)


def warning(where: str, message: str) -> Problem:
    return Problem(Level.WARNING, where, message)


def where_component(comp: Component) -> str:
    return f'component "{comp.name}"'


def where_link(comp: Component, link: LinkProperties) -> str:
    ifaces = ",".join(link.interfaces)
    named = f' "{link.name}"' if link.name is not None else ""
    return f'component "{comp.name}" > link{named} to "{link.target.name}" ({link.namespace}:{link.package}/{ifaces})'


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


def errors_in(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.level is Level.ERROR]


def warnings_in(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.level is Level.WARNING]


class ManifestError(Exception):
    """A manifest could not be read, parsed or validated.

    `problems` holds every problem found (errors first, then warnings), so a
    caller can show them all at once instead of one per attempt.
    """

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        probs = list(problems)
        self.problems: list[Problem] = errors_in(probs) + warnings_in(probs)
        self.source = source
        super().__init__(self._summary())

    @property
    def errors(self) -> list[Problem]:
        return errors_in(self.problems)

    @property
    def warnings(self) -> list[Problem]:
        return warnings_in(self.problems)

    def _summary(self) -> str:
        errs = self.errors
        head = f"invalid manifest {self.source}" if self.source else "invalid manifest"
        if not errs:
            return head
        more = f" (and {len(errs) - 1} more error(s))" if len(errs) > 1 else ""
        return f"{head}: {errs[0]}{more}"
