"""What the terminal shows: a line per clause test as it finishes, and the verdict with repro commands at the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from contract_tests.report.model import (
    NOT_APPLICABLE_PREFIX,
    SEVERITY,
    ClauseResult,
    Outcome,
    RunReport,
    Verdict,
)

Markup = dict[str, bool]
COLOURS: dict[Outcome, Markup] = {
    Outcome.PASS: {"green": True}, Outcome.XFAIL: {"yellow": True}, Outcome.SKIP: {"yellow": True},
    Outcome.FAIL: {"red": True, "bold": True}, Outcome.XPASS: {"red": True, "bold": True},
    Outcome.TIMEOUT: {"red": True, "bold": True}, Outcome.ERROR: {"purple": True, "bold": True},
    Outcome.NOT_RUN: {"purple": True},
}
_VERDICT_COLOURS: dict[Verdict, Markup] = {
    Verdict.CONFORMANT: {"green": True, "bold": True}, Verdict.NOT_CONFORMANT: {"red": True, "bold": True},
    Verdict.NO_VERDICT: {"purple": True, "bold": True},
}


def _first_line(text: str, limit: int = 110) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _detailed(result: ClauseResult) -> list[tuple[str, Markup]]:
    head = f"  {result.outcome.value:<8} {result.clause.id} [{result.profile}] {result.clause.level.value}: "
    lines = [(head + result.clause.requirement, COLOURS[result.outcome])]
    lines += [(f"           {line}", {}) for line in result.reason.strip().splitlines()[:4]]
    return [*lines, (f"           reproduce: {result.repro}", {})]


def _brief(result: ClauseResult) -> tuple[str, Markup]:
    return (f"  {result.outcome.value:<8} {result.clause.id} [{result.profile}] {result.clause.level.value}: "
            f"{_first_line(result.baseline_reason or result.reason)}", COLOURS[result.outcome])


def _tallied(results: list[ClauseResult]) -> list[tuple[str, Markup]]:
    """Results that share a reason (NOT-RUN, SKIP) as one line per reason, then the evidence one of them carries
    (a worker that never started: its exit status and last output), once."""
    reasons = Counter((r.outcome, _first_line(r.reason)) for r in results)
    lines = []
    for (outcome, reason), n in reasons.items():
        lines.append((f"  {outcome.value:<8} {n} x {reason}", COLOURS[outcome]))
        shown = next((e for r in results if (r.outcome, _first_line(r.reason)) == (outcome, reason)
                      for e in r.evidence), None)
        if shown is not None:
            lines += [(f"           {line}", {}) for line in shown.text.strip().splitlines()[-12:]]
    return lines


def summary_lines(report: RunReport, report_dir: Path | None) -> list[tuple[str, Markup]]:
    """The verdict first, then each group of results that needs a look: failures in full, the rest briefly."""
    verdict = report.verdict()
    lines: list[tuple[str, Markup]] = [
        (f"{verdict.name.replace('_', ' ')}: {report.summary()}", _VERDICT_COLOURS[verdict])]
    lines += [(f"Problem: {problem}", {"red": True}) for problem in report.problems]
    if line := report.self_check_line():
        lines.append((line, {}))
    if line := report.mutation_line():
        lines.append((f"Mutation score of this suite: {line}", {}))
    if report.bench is not None:
        lines.append(("Benchmark figures (informational) are in the report's bench section", {}))
    for group in report.groups():
        if not group.results:
            continue
        lines.append((f"{group.title} ({len(group.results)}):", {"bold": True}))
        shared = [r for r in group.results if r.outcome in {Outcome.NOT_RUN, Outcome.SKIP}]
        for result in group.results:
            if result not in shared:
                lines += _detailed(result) if group.key in {"failures", "unjudged", "selfchecks"} else [_brief(result)]
        lines += _tallied(shared)
    lines.append((report.timing_line(), {}))
    if report_dir is not None:
        lines.append((f"Report: {report_dir / 'conformance.md'} (and .json, .html, junit.xml, badge.svg)", {}))
    return lines


class Progress:
    """Live progress for `snakepit-contract run`: one line per clause test as it finishes, instead of dots."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self._worst: dict[str, tuple[Outcome, str, float]] = {}
        self._causes: set[str] = set()
        self._terminal: Any = None

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self._terminal = config.pluginmanager.get_plugin("terminalreporter")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = self.total or len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        self.total = self.total or len(ids)

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> Generator[None, tuple[str, str, str], tuple[str, str, str]]:
        status = yield
        # Clause tests get our line instead of pytest's letter; the category still feeds pytest's summary.
        return (status[0], "", "") if "outcome" in dict(report.user_properties) else status

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "outcome" not in props or self._terminal is None:
            return
        outcome, reason = Outcome(props["outcome"]), str(props["reason"])
        worst = self._worst.get(report.nodeid, (Outcome.PASS, "", 0.0))
        if SEVERITY[outcome] > SEVERITY[worst[0]]:
            worst = (outcome, reason, worst[2])
        worst = (worst[0], worst[1], worst[2] + report.duration)
        self._worst[report.nodeid] = worst
        if report.when == "teardown":
            self.done += 1
            if worst[1].startswith(NOT_APPLICABLE_PREFIX):
                return  # counted, not shown: the clause is not part of this profile's contract
            count = f"[{self.done:>{len(str(self.total))}}/{self.total}]" if self.total else f"[{self.done}]"
            detail = f"  {_first_line(worst[1])}" if worst[0] is not Outcome.PASS else ""
            if worst[0] is Outcome.NOT_RUN:  # one cause that stops many checks is spelled out once
                detail = "  (the same cause)" if worst[1] in self._causes else detail
                self._causes.add(worst[1])
            self._terminal.write_line(
                f"{count} {props['clause']:<12} {props['profile']:<14} {worst[0].value:<8} {worst[2]:6.2f} s{detail}",
                **COLOURS[worst[0]])
            # Live progress must reach a CI log (a pipe, block-buffered) as it happens.
            self._terminal.flush()
