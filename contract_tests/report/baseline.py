"""Baselines: a worker's known failures (TOML), which turn FAIL into XFAIL until they pass or expire.

A baseline can only list expected failures. Nothing in it can skip a clause or
lower its level: a listed clause still runs, a listed clause that passes is a
stale entry (XPASS, the run fails so the baseline shrinks), and an entry past
its `expires` date fails the run. TIMEOUT, ERROR and NOT-RUN are never hidden.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from contract_tests.contract.clause import Clause
from contract_tests.contract.profiles import get_profile
from contract_tests.report.model import ClauseResult, Outcome

TABLE = "expected_failure"
_KEYS = {"clause", "profile", "reason", "expires"}
# Keys someone might reach for to declare a clause optional; each gets the same explanation.
_SKIP_WORDS = {"skip", "skipped", "optional", "status", "outcome", "level", "ignore"}
_NO_SKIPPING = "a baseline lists expected failures only: no clause can be skipped or made optional by declaration"


class BaselineError(ValueError):
    """The baseline file is malformed; names the entry and the problem."""


@dataclass(frozen=True)
class BaselineEntry:
    """One expected failure: a clause, optionally for one profile only, with why and until when."""

    clause: str
    profile: str | None
    reason: str
    expires: date | None = None

    def covers(self, clause_id: str, profile: str) -> bool:
        return self.clause == clause_id and self.profile in (None, profile)

    def label(self) -> str:
        return self.clause + (f" [{self.profile}]" if self.profile else "")


@dataclass(frozen=True)
class Baseline:
    """The parsed file; `apply` rewrites results and returns the problems that fail the run."""

    path: Path
    entries: tuple[BaselineEntry, ...]

    def apply(self, results: list[ClauseResult], today: date) -> list[str]:
        problems = []
        for entry in self.entries:
            mine = [r for r in results if entry.covers(r.clause.id, r.profile)]
            expired = entry.expires is not None and entry.expires < today
            if expired:
                problems.append(
                    f"baseline entry {entry.label()} expired on {entry.expires}: fix the worker, "
                    f"or renew the entry in {self.path.name} with a new date and reason"
                )
            for result in mine:
                result.baseline_reason = entry.reason
                if result.outcome is Outcome.PASS:
                    result.outcome = Outcome.XPASS
                    result.reason = (f"stale baseline entry: {entry.label()} passes now; "
                                     f"remove it from {self.path.name} (it said: {entry.reason})")
                elif result.outcome is Outcome.FAIL and not expired:
                    result.outcome = Outcome.XFAIL
                    result.reason = f"expected failure (baseline: {entry.reason}); it failed with: {result.reason}"
        return problems


def _entry(index: int, raw: Any, registry: dict[str, Clause]) -> BaselineEntry:
    where = f"[[{TABLE}]] #{index}"
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: expected a table")
    unknown = set(raw) - _KEYS
    if unknown & _SKIP_WORDS:
        raise BaselineError(f"{where}: {_NO_SKIPPING} (found {sorted(unknown & _SKIP_WORDS)})")
    if unknown:
        raise BaselineError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    clause_id, profile, reason, expires = (raw.get(k) for k in ("clause", "profile", "reason", "expires"))
    if clause_id not in registry:
        raise BaselineError(f"{where}: clause {clause_id!r} is not in the catalogue")
    where = f"{where} ({clause_id})"
    if not isinstance(reason, str) or not reason.strip():
        raise BaselineError(f"{where}: needs a reason (why it fails, ideally an issue link)")
    if profile is not None:
        try:
            rules = get_profile(str(profile))
        except ValueError as err:
            raise BaselineError(f"{where}: {err}") from None
        if not registry[clause_id].applies_to(rules):
            raise BaselineError(f"{where}: profile {profile!r} is not one of the releases the clause applies to "
                                f"({registry[clause_id].applies})")
        profile = rules.name
    if expires is not None and (not isinstance(expires, date) or hasattr(expires, "hour")):
        raise BaselineError(f"{where}: expires must be a TOML date like 2026-12-31, not {expires!r}")
    return BaselineEntry(clause_id, profile, reason.strip(), expires)


def load_baseline(path: Path, registry: dict[str, Clause]) -> Baseline:
    """Parse and check a baseline file; raise BaselineError on the first problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise BaselineError(f"baseline {path} is not UTF-8 text (byte {err.start} of it); it must be TOML") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BaselineError(f"cannot read baseline {path}: {err}") from None
    unknown = set(data) - {TABLE}
    if unknown:
        raise BaselineError(f"{path.name}: unknown tables {sorted(unknown)}; {_NO_SKIPPING}")
    raw = data.get(TABLE, [])
    if not isinstance(raw, list):
        raise BaselineError(f"{path.name}: {TABLE} must be an array of tables ([[{TABLE}]])")
    entries = tuple(_entry(i, item, registry) for i, item in enumerate(raw, 1))
    for i, entry in enumerate(entries):
        if any(e.clause == entry.clause and (e.profile == entry.profile or None in (e.profile, entry.profile))
               for e in entries[:i]):
            raise BaselineError(f"{path.name}: {entry.label()} is listed more than once")
    return Baseline(path, entries)
