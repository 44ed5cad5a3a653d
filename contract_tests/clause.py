"""Clauses: stable ids, levels and one-sentence requirements, tied to test functions.

Adding a check is one small test function decorated with `@clause(...)`. The
decorator records the clause in `REGISTRY` (so clauses can be listed without
starting a worker) and marks the test so the plugin can select it by id, skip
it for other profiles and name it in every report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import pytest

from contract_tests.profiles import PROFILES

F = TypeVar("F", bound=Callable[..., object])
_ID = re.compile(r"^[A-Z]+-\d{3}$")
ALL_PROFILES = frozenset(PROFILES)


class Level(Enum):
    """Requirement levels, as in RFC 2119."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


MUST, SHOULD, MAY = Level.MUST, Level.SHOULD, Level.MAY


@dataclass(frozen=True)
class Clause:
    """One numbered requirement of the worker contract."""

    id: str
    level: Level
    requirement: str
    profiles: frozenset[str]
    facts: str
    test_name: str

    @property
    def area(self) -> str:
        return self.id.split("-")[0]


REGISTRY: dict[str, Clause] = {}


def clause(
    clause_id: str,
    level: Level,
    requirement: str,
    *,
    profiles: Iterable[str] = ALL_PROFILES,
    facts: str = "",
) -> Callable[[F], F]:
    """Declare the clause a test checks; ids are `AREA-NNN` and never reused."""
    if not _ID.match(clause_id):
        raise ValueError(f"clause id {clause_id!r} must look like AREA-NNN")
    chosen = frozenset(profiles)
    if unknown := chosen - ALL_PROFILES:
        raise ValueError(f"clause {clause_id}: unknown profiles {sorted(unknown)}")

    def mark(test: F) -> F:
        if clause_id in REGISTRY and REGISTRY[clause_id].test_name != test.__name__:
            raise ValueError(f"clause id {clause_id} used twice ({REGISTRY[clause_id].test_name})")
        REGISTRY[clause_id] = Clause(clause_id, level, requirement, chosen, facts, test.__name__)
        marked: F = pytest.mark.clause(clause_id)(test)
        return marked

    return mark


def requires_tools(*tools: str) -> pytest.MarkDecorator:
    """Skip (never pass) when the worker's contract.catalogue lacks one of these tools."""
    return pytest.mark.requires_tools(*tools)
