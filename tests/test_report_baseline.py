"""Self-tests of baselines: expected failures only, stale and expired entries fail the run, no clause is skippable."""

from __future__ import annotations

import importlib
import re
from datetime import date
from pathlib import Path

import pytest

from contract_tests import cli
from contract_tests.contract.clause import MUST, REGISTRY, TESTS
from contract_tests.report.baseline import BaselineError, load_baseline
from contract_tests.report.model import ClauseResult, Outcome

TODAY = date(2026, 6, 1)


def _baseline(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "baseline.toml"
    path.write_text(text)
    return path


def _result(clause_id: str, outcome: Outcome, profile: str = "snakepit-0.13") -> ClauseResult:
    return ClauseResult(REGISTRY[clause_id], profile, outcome, f"it went {outcome.value}", 0.1, True, "repro")


def _entry(clause_id: str, extra: str = "") -> str:
    return f'[[expected_failure]]\nclause = "{clause_id}"\nreason = "known, issue #1"\n{extra}\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[expected_failure]]\nclause = "TOOL-004"\n', "needs a reason"),
        ('[[expected_failure]]\nclause = "TOOL-004"\nreason = " "\n', "needs a reason"),
        (_entry("TOOL-999"), "not in the catalogue"),
        (_entry("PROC-004", 'profile = "snakepit-0.6"'), "is not one of"),
        (_entry("TOOL-004", 'expires = "soon"'), "TOML date"),
        (_entry("TOOL-004", "expires = 2026-01-01T10:00:00"), "TOML date"),
        (_entry("TOOL-004", 'owner = "me"'), "unknown keys ['owner']"),
        (_entry("TOOL-004") + _entry("TOOL-004", 'profile = "snakepit-0.6"'), "listed more than once"),
        ("clause = 1", "unknown tables"),
        ("expected_failure = 1", "array of tables"),
        ("[[expected_failure", "cannot read baseline"),
    ],
)
def test_malformed_baselines_are_rejected_with_the_entry_named(tmp_path: Path, text: str, problem: str) -> None:
    """Ensure baseline mistakes are usage errors that say what is wrong and where."""
    with pytest.raises(BaselineError, match=re.escape(problem)):
        load_baseline(_baseline(tmp_path, text), REGISTRY)


@pytest.mark.parametrize(
    "text",
    [
        _entry("PROC-010", "skip = true"),
        _entry("PROC-010", 'status = "optional"'),
        _entry("PROC-010", 'level = "SHOULD"'),
        '[[skip]]\nclause = "PROC-010"\nreason = "not for us"\n',
        '[optional]\nclauses = ["PROC-010"]\n',
    ],
    ids=["skip-key", "optional-status", "lowered-level", "skip-table", "optional-table"],
)
def test_no_must_is_skippable_by_declaration_in_a_baseline(tmp_path: Path, text: str) -> None:
    """Ensure a baseline can list a MUST clause only as an expected failure, never skip it or lower its level."""
    assert REGISTRY["PROC-010"].level is MUST
    with pytest.raises(BaselineError, match="no clause can be skipped"):
        load_baseline(_baseline(tmp_path, text), REGISTRY)


def test_no_clause_test_declares_a_skip() -> None:
    """Ensure clause tests carry no static skip/skipif/xfail: skips come only from the profile or the worker's tools.

    not_in_container and reads_process_environments are no skips: where the worker runs in a container, or the OS
    hides other processes' environments, the plugin makes the check NOT-RUN (never passed), with its reason; watches
    only orders the work (the checks that wait longest start first).
    """
    cli.load_clauses()
    allowed = {"clause", "requires_tools", "parametrize", "not_in_container", "reads_process_environments", "watches"}
    for clause_id, names in TESTS.items():
        for name in names:
            module_name, function_name = name.rsplit(".", 1)
            function = getattr(importlib.import_module(module_name), function_name)
            marks = {m.name for m in getattr(function, "pytestmark", [])}
            assert marks <= allowed, (clause_id, name, marks - allowed)


def test_entries_turn_failures_into_xfail_and_passes_into_stale_xpass(tmp_path: Path) -> None:
    """Ensure a listed failure is XFAIL with both reasons, a listed pass is XPASS, and the run has no problem."""
    baseline = load_baseline(_baseline(tmp_path, _entry("TOOL-004") + _entry("TOOL-005", 'profile = "snakepit-0.6"')),
                             REGISTRY)
    results = [_result("TOOL-004", Outcome.FAIL), _result("TOOL-004", Outcome.FAIL, "snakepit-0.6"),
               _result("TOOL-005", Outcome.PASS, "snakepit-0.6"), _result("TOOL-005", Outcome.PASS)]
    assert baseline.apply(results, TODAY) == []
    assert [r.outcome for r in results] == [Outcome.XFAIL, Outcome.XFAIL, Outcome.XPASS, Outcome.PASS]
    assert "known, issue #1" in results[0].reason and "it went FAIL" in results[0].reason
    assert results[2].reason.startswith("stale baseline entry: TOOL-005 [snakepit-0.6] passes now; remove it")


@pytest.mark.parametrize("outcome", [Outcome.TIMEOUT, Outcome.ERROR, Outcome.NOT_RUN, Outcome.SKIP])
def test_entries_never_hide_what_is_not_a_failure(tmp_path: Path, outcome: Outcome) -> None:
    """Ensure an expected-failure entry leaves TIMEOUT, ERROR, NOT-RUN and SKIP as they are."""
    results = [_result("TOOL-004", outcome)]
    load_baseline(_baseline(tmp_path, _entry("TOOL-004")), REGISTRY).apply(results, TODAY)
    assert results[0].outcome is outcome


def test_expired_entries_fail_the_run_and_stop_covering(tmp_path: Path) -> None:
    """Ensure an entry past its date is a run problem naming the clause, and its failure stays a FAIL."""
    baseline = load_baseline(_baseline(tmp_path, _entry("TOOL-004", "expires = 2026-05-31")), REGISTRY)
    results = [_result("TOOL-004", Outcome.FAIL)]
    [problem] = baseline.apply(results, TODAY)
    assert "TOOL-004 expired on 2026-05-31" in problem and results[0].outcome is Outcome.FAIL
    assert load_baseline(_baseline(tmp_path, _entry("TOOL-004", "expires = 2026-06-01")), REGISTRY).apply(
        [_result("TOOL-004", Outcome.FAIL)], TODAY) == []
