"""Clauses: the catalogue (catalogue.toml) and the decorator that ties test functions to it.

The catalogue is data: id, level, applicability (a condition over the release rules),
requirement, the docs/snakepit/ entries it rests on and subject of every clause (what it
judges: the worker, or the suite's emulated Elixir side).
Adding a check is one entry there plus one small test function decorated with
`@clause("AREA-NNN")`; the decorator records which tests check which clause (for
traceability) and marks the test so the plugin can select it by id, skip it for
releases it does not apply to and name it in every report.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import pytest

from contract_tests.contract.profiles import PROFILES, Profile, RulesError, check_condition, holds

F = TypeVar("F", bound=Callable[..., object])
CATALOGUE_PATH = Path(__file__).with_name("catalogue.toml")
_ID = re.compile(r"^([A-Z]+)-\d{3}$")


class Level(Enum):
    """Requirement levels, as in RFC 2119."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


MUST, SHOULD, MAY = Level.MUST, Level.SHOULD, Level.MAY
# What a clause judges. "worker": the worker under test, decides the verdict. "host": the suite's emulated
# Elixir side (pool, session store, launcher) as Snakepit behaves: a self-check of the emulator, reported
# apart and never part of the worker's verdict; the live Elixir tier judges real Snakepit on the same ids.
WORKER, HOST = "worker", "host"
SUBJECTS = (WORKER, HOST)


@dataclass(frozen=True)
class Clause:
    """One numbered requirement of the worker contract."""

    id: str
    level: Level
    requirement: str
    applies: str  # condition over the release rules (profiles.holds); "always" for every release
    rests_on: tuple[str, ...]
    area: str
    area_title: str
    subject: str = WORKER

    @property
    def judges_worker(self) -> bool:
        return self.subject == WORKER

    def applies_to(self, profile: Profile) -> bool:
        """Whether the release's rules make this clause part of its contract."""
        return holds(self.applies, profile)

    @property
    def profiles(self) -> frozenset[str]:
        """The named profiles (snakepit-0.6, snakepit-0.13) the clause applies to."""
        return frozenset(name for name, profile in PROFILES.items() if self.applies_to(profile))


class CatalogueError(ValueError):
    """The catalogue file is malformed; names the clause and the problem."""


def _parse_clause(clause_id: str, entry: dict[str, Any], areas: dict[str, str]) -> Clause:
    match = _ID.match(clause_id)
    if not match:
        raise CatalogueError(f"clause id {clause_id!r} must look like AREA-NNN")
    area = match.group(1)
    if area not in areas:
        raise CatalogueError(f"{clause_id}: area {area!r} is not listed in [areas]")
    try:
        level = Level(entry["level"])
        applies = str(entry["applies"])
        requirement = str(entry["requirement"])
        rests_on = tuple(str(anchor) for anchor in entry["rests_on"])
        subject = str(entry.get("subject", WORKER))
    except (KeyError, ValueError) as err:
        raise CatalogueError(f"{clause_id}: needs level (MUST/SHOULD/MAY), applies, requirement, rests_on: {err}") \
            from None
    if not rests_on or isinstance(entry["rests_on"], str):
        raise CatalogueError(f"{clause_id}: rests_on must list the anchors of one or more docs/snakepit/ entries")
    try:
        check_condition(applies)
    except RulesError as err:
        raise CatalogueError(f"{clause_id}: applies: {err}") from None
    if subject not in SUBJECTS:
        raise CatalogueError(f"{clause_id}: subject must be one of {', '.join(SUBJECTS)}, not {subject!r}")
    if level.value not in requirement:
        raise CatalogueError(f"{clause_id}: the requirement sentence must say {level.value}")
    return Clause(clause_id, level, requirement, applies, rests_on, area, areas[area], subject)


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Clause]:
    """Parse and validate the catalogue; raise CatalogueError on the first problem."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    areas = data.get("areas", {})
    return {cid: _parse_clause(cid, entry, areas) for cid, entry in sorted(data.get("clauses", {}).items())}


REGISTRY: dict[str, Clause] = load_catalogue()
# Which test functions check each clause, filled in as clause modules are imported.
TESTS: defaultdict[str, list[str]] = defaultdict(list)


def clause(clause_id: str) -> Callable[[F], F]:
    """Declare the catalogue clause a test checks."""
    if clause_id not in REGISTRY:
        raise CatalogueError(f"@clause({clause_id!r}) names no clause in {CATALOGUE_PATH.name}")

    def mark(test: F) -> F:
        name = f"{test.__module__}.{getattr(test, '__name__', repr(test))}"
        if name not in TESTS[clause_id]:
            TESTS[clause_id].append(name)
        marked: F = pytest.mark.clause(clause_id)(test)
        return marked

    return mark


def requires_tools(*tools: str) -> pytest.MarkDecorator:
    """Skip (never pass) when the worker's contract.catalogue lacks one of these tools."""
    return pytest.mark.requires_tools(*tools)
