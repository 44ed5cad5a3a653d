"""conformance.json: the machine-readable report, versioned by conformance.schema.json (schema_version 4)."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from typing import Any

from contract_tests.contract.clause import SUBJECTS, Level
from contract_tests.contract.profiles import get_profile
from contract_tests.contract.snakepit_sources import ENTRIES, Entry
from contract_tests.report.model import ClauseResult, Outcome, RunReport

SCHEMA_VERSION = 4


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every conformance.json validates against."""
    text = resources.files("contract_tests.report").joinpath("conformance.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _tally(results: list[ClauseResult]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {"total": len(results), **{o.value: counts[o] for o in Outcome}}


def _clause(result: ClauseResult) -> dict[str, Any]:
    return {
        "id": result.clause.id,
        "profile": result.profile,
        "level": result.clause.level.value,
        "area": result.clause.area,
        "subject": result.clause.subject,
        "judged": result.judged,
        "requirement": result.clause.requirement,
        "rests_on": list(result.clause.rests_on),
        "outcome": result.outcome.value,
        "reason": result.reason,
        "duration_s": result.duration_s,
        "repro": result.repro,
        "tests": result.tests,
        "baseline_reason": result.baseline_reason,
        "evidence": [{"title": e.title, "text": e.text} for e in result.evidence],
        "worker_logs": [f"workers/{name}" for name in result.logs],
    }


def _entry(entry: Entry) -> dict[str, Any]:
    return {
        "title": entry.title,
        "doc": entry.doc,
        "eras": [{"since": era.since, "until": era.until, "summary": era.summary,
                  "citations": [{"tag": c.tag, "path": c.path, "lines": [c.first, c.last], "url": c.url}
                                for c in era.citations]} for era in entry.eras],
    }


def document(report: RunReport) -> dict[str, Any]:
    """The report as plain JSON data, in the schema's shape."""
    verdict = report.verdict()
    passed, judged = report.score()
    areas = sorted({r.clause.area for r in report.results})
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": {"name": "snakepit-contract", "version": report.suite_version},
        "started_at": report.started_at.isoformat(timespec="seconds"),
        "finished_at": report.finished_at.isoformat(timespec="seconds"),
        "duration_s": report.wall_s,
        "timing": {"wall_s": report.wall_s, "checks_s": report.checks_s, "processes": report.processes},
        "worker": {
            "kind": report.worker.kind,
            "target": report.worker.target,
            "contract_tools": list(report.worker.tools) if report.worker.tools is not None else None,
            "contract_tools_note": report.worker.tools_note,
        },
        "profiles": report.profiles,
        "releases": {label: get_profile(label).snakepit_version for label in report.profiles},
        "level": report.level,
        "selection": {
            "only": list(report.only),
            "skip": list(report.skip),
            "not_selected": report.not_selected,
            "not_applicable": report.not_applicable,
        },
        "baseline": report.baseline,
        "complete": not report.interrupted,
        "verdict": {
            "result": verdict.name.lower(),
            "exit_status": verdict.value,
            "summary": report.summary(),
            "passed": passed,
            "judged": judged,
            "problems": report.problems,
        },
        "totals": {
            "all": _tally(report.results),
            "by_level": {lvl.value: _tally([r for r in report.results if r.clause.level is lvl]) for lvl in Level},
            "by_area": {a: _tally([r for r in report.results if r.clause.area == a]) for a in areas},
            "by_profile": {p: _tally([r for r in report.results if r.profile == p]) for p in report.profiles},
            "by_subject": {s: _tally([r for r in report.results if r.clause.subject == s]) for s in SUBJECTS},
        },
        "clauses": [_clause(r) for r in report.results],
        # What Snakepit does for each behaviour the listed clauses rest on, with links to its source lines.
        "snakepit_entries": {anchor: _entry(ENTRIES[anchor])
                             for anchor in sorted({a for r in report.results for a in r.clause.rests_on})},
        # Informational inputs (run --mutation-score, --bench-results): never clauses, never the verdict.
        "metadata": {"mutation_score": report.mutation_score},
        "bench": report.bench,
    }


def render(report: RunReport) -> str:
    return json.dumps(document(report), indent=2, ensure_ascii=False) + "\n"
