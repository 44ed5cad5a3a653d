"""Verdict model: clause-test records folded into one result per clause and profile, and the run's verdict."""

from __future__ import annotations

import fnmatch
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple

from contract_tests.contract.clause import Clause, Level
from contract_tests.contract.profiles import get_profile


class Outcome(Enum):
    """What happened to one clause test, or to one clause under one profile."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    XFAIL = "XFAIL"
    XPASS = "XPASS"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    NOT_RUN = "NOT-RUN"


# A clause checked by several tests takes the worst of their outcomes: harness trouble outranks a
# failure (the failure may be its consequence), and anything unfinished outranks a pass or a skip.
SEVERITY = {
    Outcome.PASS: 0, Outcome.SKIP: 1, Outcome.XFAIL: 2, Outcome.NOT_RUN: 3,
    Outcome.FAIL: 4, Outcome.XPASS: 5, Outcome.TIMEOUT: 6, Outcome.ERROR: 7,
}
# The worker broke the contract (a stale baseline entry counts, so baselines only shrink).
FAILING = frozenset({Outcome.FAIL, Outcome.TIMEOUT, Outcome.XPASS})
# The suite could not judge the clause, so the run cannot be called conformant.
UNJUDGED = frozenset({Outcome.ERROR, Outcome.NOT_RUN})
NOT_RUN_PREFIX = "not run: "
# Skips of clause tests under a profile their clause does not apply to: not part of any report.
NOT_APPLICABLE_PREFIX = "profile: "
LEVELS = {
    "must": frozenset({Level.MUST}),
    "should": frozenset({Level.MUST, Level.SHOULD}),
    "all": frozenset(Level),
}
LEVEL_LABELS = {"must": "MUST", "should": "MUST+SHOULD", "all": "MUST+SHOULD+MAY"}


class Verdict(Enum):
    """The run's conclusion; its value is the exit status of `snakepit-contract run`."""

    CONFORMANT = 0
    NOT_CONFORMANT = 1
    NO_VERDICT = 2


@dataclass(frozen=True)
class Evidence:
    """One titled block of evidence: worker argv, exit status, gRPC trace, output tail, thread dump."""

    title: str
    text: str


@dataclass
class CheckRecord:
    """One clause test through its phases (setup, call, teardown), as the plugin saw it."""

    nodeid: str
    clause: str
    profile: str
    outcome: Outcome = Outcome.PASS
    reason: str = ""
    duration_s: float = 0.0
    evidence: list[Evidence] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    finished: bool = False

    def add_phase(
        self, when: str, outcome: Outcome, reason: str, duration_s: float,
        evidence: Sequence[Evidence] = (), logs: dict[str, str] | None = None,
    ) -> None:
        self.duration_s += duration_s
        if SEVERITY[outcome] > SEVERITY[self.outcome]:
            self.outcome, self.reason = outcome, reason
        self.evidence.extend(evidence)
        self.logs.update(logs or {})
        # Only a teardown report proves the test ran to its end (an interrupt can stop it anywhere).
        self.finished = self.finished or when == "teardown"


def matches(clause_id: str, only: Sequence[str], skip: Sequence[str]) -> bool:
    """Whether --only/--skip globs select this clause id."""
    return (not only or any(fnmatch.fnmatchcase(clause_id, g) for g in only)) and not any(
        fnmatch.fnmatchcase(clause_id, g) for g in skip
    )


@dataclass(frozen=True)
class Plan:
    """The (clause, profile) pairs a run judges, and how many it leaves out and why."""

    pairs: tuple[tuple[Clause, str], ...]
    not_selected: int
    not_applicable: int


def plan(clauses: Iterable[Clause], profiles: Sequence[str], only: Sequence[str], skip: Sequence[str]) -> Plan:
    """Pair every clause with every chosen release (by label) it applies to, keeping those --only/--skip select."""
    pairs: list[tuple[Clause, str]] = []
    not_selected = not_applicable = 0
    rules = {label: get_profile(label) for label in profiles}
    for found in sorted(clauses, key=lambda c: c.id):
        for profile in profiles:
            if not found.applies_to(rules[profile]):
                not_applicable += 1
            elif not matches(found.id, only, skip):
                not_selected += 1
            else:
                pairs.append((found, profile))
    return Plan(tuple(pairs), not_selected, not_applicable)


@dataclass
class ClauseResult:
    """The outcome of one clause under one profile, with what a reader needs to act on it."""

    clause: Clause
    profile: str
    outcome: Outcome
    reason: str
    duration_s: float
    judged: bool
    repro: str
    tests: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    baseline_reason: str | None = None


_UNFINISHED = NOT_RUN_PREFIX + "the run was interrupted before this check finished"
_INTERRUPTED = NOT_RUN_PREFIX + "the run was interrupted first"
_NEVER_RAN = NOT_RUN_PREFIX + "no test of this clause ran (stopped by -x, deselected by -k, or a collection error)"


def fold(
    records: Iterable[CheckRecord], chosen: Plan, levels: frozenset[Level],
    repro: Callable[[Clause, str], str], interrupted: bool,
) -> list[ClauseResult]:
    """One result per planned pair; a pair with no finished test is NOT-RUN, never passed."""
    by_pair: defaultdict[tuple[str, str], list[CheckRecord]] = defaultdict(list)
    for record in records:
        by_pair[record.clause, record.profile].append(record)
    results = []
    for found, profile in chosen.pairs:
        mine = by_pair.get((found.id, profile), [])
        seen = [(r.outcome, r.reason) if r.finished else (Outcome.NOT_RUN, _UNFINISHED) for r in mine]
        outcome, reason = max(seen, key=lambda o: SEVERITY[o[0]]) if seen else (
            Outcome.NOT_RUN, _INTERRUPTED if interrupted else _NEVER_RAN)
        results.append(ClauseResult(
            clause=found, profile=profile, outcome=outcome, reason=reason,
            duration_s=round(sum(r.duration_s for r in mine), 3),
            # Emulator self-checks (subject host) are reported, never judged: they are not the worker's doing.
            judged=found.level in levels and found.judges_worker,
            repro=repro(found, profile), tests=[r.nodeid for r in mine],
            evidence=[e for r in mine for e in r.evidence], logs={k: v for r in mine for k, v in r.logs.items()},
        ))
    return results


class Group(NamedTuple):
    """A heading of the reports and the results under it."""

    key: str
    title: str
    results: list[ClauseResult]


@dataclass(frozen=True)
class WorkerInfo:
    """The worker under test: how it was reached, and what it says it implements."""

    kind: str  # "command" or "image" (launched by the suite), or "address" (attached)
    target: str
    tools: tuple[str, ...] | None = None
    tools_note: str = ""


@dataclass
class RunReport:
    """Everything one run established; every output format renders this and nothing else."""

    suite_version: str
    started_at: datetime
    finished_at: datetime
    worker: WorkerInfo
    profiles: list[str]
    level: str
    only: tuple[str, ...]
    skip: tuple[str, ...]
    not_selected: int
    not_applicable: int
    results: list[ClauseResult]
    interrupted: bool = False
    baseline: str | None = None
    problems: list[str] = field(default_factory=list)
    # Informational, never part of the verdict (report/extras.py): the suite's mutation score, a bench run.
    mutation_score: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None
    processes: int = 1  # pytest processes that ran the checks side by side (xdist)

    @property
    def wall_s(self) -> float:
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def checks_s(self) -> float:
        """The checks' own durations added up: above the wall time by as much as they overlapped."""
        return round(sum(r.duration_s for r in self.results), 3)

    def timing_line(self) -> str:
        return (f"Wall time {self.wall_s:.1f} s; the checks took {self.checks_s:.1f} s in all, "
                f"on {self.processes} process{'es' if self.processes != 1 else ''}")

    @property
    def judged(self) -> list[ClauseResult]:
        return [r for r in self.results if r.judged]

    @property
    def level_label(self) -> str:
        return LEVEL_LABELS[self.level]

    def verdict(self) -> Verdict:
        """Interrupted: no verdict. Then any judged failure or run problem; then anything unjudged."""
        judged = self.judged
        if self.interrupted:
            return Verdict.NO_VERDICT
        if self.problems or any(r.outcome in FAILING for r in judged):
            return Verdict.NOT_CONFORMANT
        if not judged or any(r.outcome in UNJUDGED for r in judged):
            return Verdict.NO_VERDICT
        return Verdict.CONFORMANT

    def exit_status(self) -> int:
        return self.verdict().value

    def groups(self) -> list[Group]:
        """The results a reader acts on, under the headings every report shows them with, in that order."""
        return [
            Group("failures", "Failures", [r for r in self.judged if r.outcome in FAILING]),
            Group("unjudged", "Not judged: harness errors and clauses not run",
                  [r for r in self.judged if r.outcome in UNJUDGED]),
            Group("warnings", f"Warnings: not judged at level {self.level_label}",
                  [r for r in self.results if r.clause.judges_worker and not r.judged
                   and r.outcome in FAILING | UNJUDGED]),
            Group("selfchecks", "Emulator self-checks that did not pass (the suite's Elixir side, not the worker)",
                  [r for r in self.results if not r.clause.judges_worker and r.outcome in FAILING | UNJUDGED]),
            Group("expected", "Expected failures (baseline)", [r for r in self.results if r.outcome is Outcome.XFAIL]),
            Group("skipped", "Skipped", [r for r in self.results if r.outcome is Outcome.SKIP]),
        ]

    def matrix(self) -> dict[tuple[str, Level], list[ClauseResult]]:
        """The worker's results by (area, level), the summary table of every report. Emulator self-checks are left
        out (self_check_line counts them apart), so the judged levels add up to the verdict's judged checks."""
        cells: defaultdict[tuple[str, Level], list[ClauseResult]] = defaultdict(list)
        for result in self.results:
            if result.clause.judges_worker:
                cells[result.clause.area, result.clause.level].append(result)
        return dict(cells)

    def in_reading_order(self) -> list[ClauseResult]:
        """Every result, the ones to act on first: judged failures, then unjudged, warnings, self-checks that did
        not pass, expected failures, skips, and the passes last."""
        rank = {id(r): i for i, group in enumerate(self.groups()) for r in group.results}
        return sorted(self.results, key=lambda r: rank.get(id(r), len(rank)))

    @property
    def areas(self) -> dict[str, str]:
        """Area code to title, for the areas this report has results in."""
        return {r.clause.area: r.clause.area_title for r in sorted(self.results, key=lambda r: r.clause.area)}

    @property
    def self_checks(self) -> list[ClauseResult]:
        """Results of host-subject clauses: the emulated Elixir side checked against Snakepit, not the worker."""
        return [r for r in self.results if not r.clause.judges_worker]

    def self_check_line(self) -> str | None:
        """One sentence on the emulator self-checks, or None when the run had none."""
        checks = self.self_checks
        if not checks:
            return None
        passed = sum(r.outcome is Outcome.PASS for r in checks)
        return (f"{passed}/{len(checks)} emulator self-checks passed (clauses with subject host judge the suite's "
                "emulated Elixir side, not the worker, and never decide the verdict)")

    def mutation_line(self) -> str | None:
        """The suite's own mutation score, as embedded with --mutation-score, in one sentence."""
        found = self.mutation_score
        if found is None:
            return None
        areas = ", ".join(f"{a} {r['caught']}/{r['total']}" for a, r in found["areas"].items())
        languages = ", ".join(f"{lang} {r['caught']}/{r['total']}" for lang, r in found.get("languages", {}).items())
        return (f"{found['caught']}/{found['total']} mutants caught ({100 * found['score']:.0f}%"
                f"{'' if found['complete'] else ', partial run'}) by snakepit-contract {found['suite_version']} "
                f"on {found['date'][:10]}: {areas}" + (f"; by language: {languages}" if languages else ""))

    def score(self) -> tuple[int, int]:
        """Judged results that passed, out of all judged results."""
        judged = self.judged
        return sum(r.outcome is Outcome.PASS for r in judged), len(judged)

    @staticmethod
    def counts(results: Iterable[ClauseResult]) -> Counter[Outcome]:
        return Counter(r.outcome for r in results)

    def summary(self) -> str:
        """One sentence: the verdict and why."""
        verdict = self.verdict()
        passed, judged = self.score()
        counts = self.counts(self.judged)
        others = ", ".join(f"{counts[o]} {o.value}" for o in Outcome if o is not Outcome.PASS and counts[o])
        tail = f"{passed}/{judged} judged checks passed" + (f"; {others}" if others else "")
        if verdict is Verdict.CONFORMANT:
            return f"conformant at level {self.level_label}: {tail}"
        if verdict is Verdict.NOT_CONFORMANT:
            return f"not conformant at level {self.level_label}: {tail}"
        if self.interrupted:
            return f"no verdict: the run was interrupted, this report is partial ({tail})"
        if not judged:
            return f"no verdict: no selected clause is judged at level {self.level_label}"
        return f"no verdict: some judged clauses could not be checked ({tail})"
