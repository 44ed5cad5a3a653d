"""Self-tests of the verdict model: folding tests into clause results, and the exit status table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contract_tests.contract.clause import REGISTRY, Clause
from contract_tests.report.model import (
    LEVELS,
    CheckRecord,
    ClauseResult,
    Outcome,
    RunReport,
    Verdict,
    WorkerInfo,
    fold,
    plan,
)

MUST_CLAUSE = REGISTRY["PROC-010"]
SHOULD_CLAUSE = REGISTRY["PROC-002"]
ONLY_013 = REGISTRY["PROC-004"]


def _record(clause: Clause, *phases: tuple[str, Outcome], profile: str = "snakepit-0.13") -> CheckRecord:
    record = CheckRecord(f"test_{clause.id}[{profile}]", clause.id, profile)
    for when, outcome in phases:
        record.add_phase(when, outcome, f"{outcome.value} in {when}", 0.1)
    return record


def _done(clause: Clause, outcome: Outcome, profile: str = "snakepit-0.13") -> CheckRecord:
    return _record(clause, ("setup", Outcome.PASS), ("call", outcome), ("teardown", Outcome.PASS), profile=profile)


def _fold(*records: CheckRecord, clauses: tuple[Clause, ...] = (MUST_CLAUSE,), interrupted: bool = False,
          level: str = "must") -> list[ClauseResult]:
    chosen = plan(clauses, ["snakepit-0.13"], (), ())
    return fold(records, chosen, LEVELS[level], lambda c, p: f"repro {c.id} {p}", interrupted)


def _report(*outcomes: tuple[Clause, Outcome], level: str = "must", interrupted: bool = False,
            problems: tuple[str, ...] = ()) -> RunReport:
    results = _fold(*(_done(c, o) for c, o in outcomes), clauses=tuple(c for c, _ in outcomes),
                    interrupted=interrupted, level=level)
    now = datetime.now(UTC)
    return RunReport("0", now, now, WorkerInfo("command", "w"), ["snakepit-0.13"], level, (), (), 0, 0, results,
                     interrupted=interrupted, problems=list(problems))


def test_plan_pairs_clauses_with_applicable_profiles_and_counts_the_rest() -> None:
    """Ensure a profile-specific clause is paired only with its profile, and --only/--skip leave out the rest."""
    chosen = plan([MUST_CLAUSE, ONLY_013], ["snakepit-0.6", "snakepit-0.13"], ("PROC-0*",), ("PROC-010",))
    assert [(c.id, p) for c, p in chosen.pairs] == [("PROC-004", "snakepit-0.13")]
    assert (chosen.not_selected, chosen.not_applicable) == (2, 1)


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([("setup", Outcome.PASS), ("call", Outcome.FAIL), ("teardown", Outcome.ERROR)], Outcome.ERROR),
        ([("setup", Outcome.TIMEOUT), ("teardown", Outcome.PASS)], Outcome.TIMEOUT),
        ([("setup", Outcome.SKIP), ("teardown", Outcome.PASS)], Outcome.SKIP),
        ([("setup", Outcome.PASS), ("call", Outcome.PASS)], Outcome.NOT_RUN),
    ],
    ids=["teardown-error-outranks-fail", "timeout-in-setup", "skip", "no-teardown-means-unfinished"],
)
def test_a_test_takes_its_worst_phase(phases: list[tuple[str, Outcome]], expected: Outcome) -> None:
    """Ensure phases fold worst-first, and a test that never reached teardown is NOT-RUN, never a pass."""
    [result] = _fold(_record(MUST_CLAUSE, *phases))
    assert result.outcome is expected


def test_a_clause_takes_its_worst_test() -> None:
    """Ensure one failing test of a clause fails the clause even when its other tests pass."""
    [result] = _fold(_done(MUST_CLAUSE, Outcome.PASS), _done(MUST_CLAUSE, Outcome.FAIL),
                     _done(MUST_CLAUSE, Outcome.SKIP))
    assert (result.outcome, result.reason, len(result.tests)) == (Outcome.FAIL, "FAIL in call", 3)


@pytest.mark.parametrize(("interrupted", "why"), [(True, "interrupted"), (False, "no test of this clause ran")])
def test_a_clause_without_results_is_not_run_with_the_reason(interrupted: bool, why: str) -> None:
    """Ensure planned clauses that never ran are listed as NOT-RUN, saying why."""
    [result] = _fold(interrupted=interrupted)
    assert result.outcome is Outcome.NOT_RUN and why in result.reason and result.repro == "repro PROC-010 snakepit-0.13"


@pytest.mark.parametrize(
    ("outcomes", "level", "expected"),
    [
        ([(MUST_CLAUSE, Outcome.PASS), (SHOULD_CLAUSE, Outcome.PASS)], "must", Verdict.CONFORMANT),
        ([(MUST_CLAUSE, Outcome.SKIP)], "must", Verdict.CONFORMANT),
        ([(MUST_CLAUSE, Outcome.PASS), (SHOULD_CLAUSE, Outcome.FAIL)], "must", Verdict.CONFORMANT),
        ([(MUST_CLAUSE, Outcome.PASS), (SHOULD_CLAUSE, Outcome.FAIL)], "should", Verdict.NOT_CONFORMANT),
        ([(MUST_CLAUSE, Outcome.FAIL)], "must", Verdict.NOT_CONFORMANT),
        ([(MUST_CLAUSE, Outcome.TIMEOUT)], "must", Verdict.NOT_CONFORMANT),
        ([(MUST_CLAUSE, Outcome.FAIL), (ONLY_013, Outcome.ERROR)], "must", Verdict.NOT_CONFORMANT),
        ([(MUST_CLAUSE, Outcome.ERROR)], "must", Verdict.NO_VERDICT),
        ([(MUST_CLAUSE, Outcome.PASS), (SHOULD_CLAUSE, Outcome.ERROR)], "must", Verdict.CONFORMANT),
        ([(SHOULD_CLAUSE, Outcome.PASS)], "must", Verdict.NO_VERDICT),
    ],
    ids=["all-pass", "capability-skip", "should-fail-is-a-warning-at-must", "should-fail-counts-at-should",
         "must-fail", "timeout", "failure-outranks-harness-error", "harness-error", "unjudged-error-is-a-warning",
         "nothing-judged"],
)
def test_exit_status_table(outcomes: list[tuple[Clause, Outcome]], level: str, expected: Verdict) -> None:
    """Ensure the documented table: 0 conformant, 1 a judged failure, 2 no verdict (docs/report.md)."""
    report = _report(*outcomes, level=level)
    assert (report.verdict(), report.exit_status()) == (expected, expected.value)


def test_interrupted_or_problem_runs_are_never_conformant() -> None:
    """Ensure a partial run has no verdict even when all it saw passed, and a run problem fails the run."""
    assert _report((MUST_CLAUSE, Outcome.PASS), interrupted=True).exit_status() == 2
    assert "partial" in _report((MUST_CLAUSE, Outcome.PASS), interrupted=True).summary()
    assert _report((MUST_CLAUSE, Outcome.PASS), problems=("expired",)).exit_status() == 1


def test_groups_put_each_result_under_the_heading_that_matters() -> None:
    """Ensure judged failures, unjudged clauses and warnings are told apart for every output."""
    report = _report((MUST_CLAUSE, Outcome.FAIL), (ONLY_013, Outcome.ERROR), (SHOULD_CLAUSE, Outcome.FAIL))
    groups = {g.key: [r.clause.id for r in g.results] for g in report.groups()}
    assert groups == {"failures": ["PROC-010"], "unjudged": ["PROC-004"], "warnings": ["PROC-002"],
                      "selfchecks": [], "expected": [], "skipped": []}
    assert report.score() == (0, 2)


def test_host_clauses_are_self_checks_outside_the_verdict() -> None:
    """Ensure a failing emulator self-check (subject host) is reported apart and never decides the verdict."""
    host_clause = REGISTRY["SESSION-001"]
    assert host_clause.subject == "host" and MUST_CLAUSE.subject == "worker"
    report = _report((MUST_CLAUSE, Outcome.PASS), (host_clause, Outcome.FAIL))
    assert report.verdict() is Verdict.CONFORMANT and report.score() == (1, 1)
    groups = {g.key: [r.clause.id for r in g.results] for g in report.groups()}
    assert groups["selfchecks"] == ["SESSION-001"] and groups["failures"] == [] and groups["warnings"] == []
    assert (report.self_check_line() or "").startswith("0/1 emulator self-checks")
    assert _report((MUST_CLAUSE, Outcome.PASS)).self_check_line() is None
