"""conformance.md: the verdict, a summary table by area and level, then each failure with its evidence."""

from __future__ import annotations

from contract_tests.contract.clause import Level
from contract_tests.contract.snakepit_sources import ENTRIES
from contract_tests.report.extras import bench_table
from contract_tests.report.model import FAILING, LEVELS, UNJUDGED, ClauseResult, Outcome, RunReport, Verdict

ICONS = {
    Outcome.PASS: "✅", Outcome.FAIL: "❌", Outcome.XPASS: "❌", Outcome.TIMEOUT: "⏱️", Outcome.ERROR: "💥",
    Outcome.NOT_RUN: "⛔", Outcome.XFAIL: "🟡", Outcome.SKIP: "⚪",
}
_VERDICT_ICONS = {Verdict.CONFORMANT: "✅", Verdict.NOT_CONFORMANT: "❌", Verdict.NO_VERDICT: "⛔"}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fence(text: str) -> str:
    """A code block whose fence cannot be closed by the text inside it."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text.rstrip()}\n{fence}"


def _matrix_cell(results: list[ClauseResult], judged: bool) -> str:
    if not results:
        return "none"
    passed = sum(r.outcome is Outcome.PASS for r in results)
    others: dict[Outcome, int] = {o: sum(r.outcome is o for r in results) for o in Outcome if o is not Outcome.PASS}
    bad = any(others[o] for o in FAILING | UNJUDGED)
    icon = ("❌" if any(others[o] for o in FAILING) else "⛔") if bad and judged else (
        "✅" if passed == len(results) else "🟡")
    extra = "".join(f" · {n} {o.value}" for o, n in others.items() if n)
    return f"{icon} {passed}/{len(results)}{extra}"


def _header(report: RunReport) -> list[str]:
    verdict = report.verdict()
    worker = report.worker
    tools = (f"{len(worker.tools)} contract tools" if worker.tools is not None
             else worker.tools_note or "not asked (no check needed contract tools)")
    selection = (f"--only {','.join(report.only)} " if report.only else "") + (
        f"--skip {','.join(report.skip)} " if report.skip else "")
    return [
        f"# snakepit-contract: {_VERDICT_ICONS[verdict]} {verdict.name.replace('_', ' ').lower()}",
        "",
        f"**{report.summary()}** (exit status {verdict.value})",
        "",
        "| | |",
        "|---|---|",
        f"| Worker | `{_cell(worker.target)}` ({'attached at' if worker.kind == 'address' else 'launched as'} "
        f"{worker.kind}); {_cell(tools)} |",
        f"| Profiles | {', '.join(report.profiles)} |",
        f"| Level | `{report.level}`: {report.level_label} clauses decide the verdict; others are warnings |",
        f"| Baseline | {f'`{report.baseline}`' if report.baseline else 'none'} |",
        f"| Selection | {selection or 'every clause '}({report.not_selected} clause-profile pairs not selected, "
        f"{report.not_applicable} not applicable to a profile) |",
        f"| Run | {report.started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"{(report.finished_at - report.started_at).total_seconds():.1f} s, "
        f"{'**partial: interrupted**' if report.interrupted else 'complete'} |",
        f"| Suite | snakepit-contract {report.suite_version} |",
        *([f"| Emulator self-checks | {line} |"] if (line := report.self_check_line()) else []),
        *([f"| Mutation score | {_cell(line)} |"] if (line := report.mutation_line()) else []),
        "",
    ]


def _summary_table(report: RunReport) -> list[str]:
    matrix = report.matrix()
    judged = LEVELS[report.level]
    heads = " | ".join(level.value + ("" if level in judged else " (warnings)") for level in Level)
    lines = ["## Summary by area and level", "", f"| Area | {heads} |", "|---|---|---|---|"]
    for area, title in report.areas.items():
        if not any(key[0] == area for key in matrix):
            continue  # an area of emulator self-checks only
        cells = " | ".join(_matrix_cell(matrix.get((area, level), []), level in judged) for level in Level)
        lines.append(f"| **{area}** {title} | {cells} |")
    counts = report.counts(r for r in report.results if r.clause.judges_worker)
    lines += ["", "Checks of the worker only (emulator self-checks are counted apart, above). Outcomes: "
              + ", ".join(f"{ICONS[o]} {o.value} {counts[o]}" for o in Outcome if counts[o]), ""]
    return lines


def _snakepit_lines(result: ClauseResult) -> list[str]:
    lines = []
    for anchor in result.clause.rests_on:
        entry = ENTRIES[anchor]
        eras = "; ".join(f"{era.releases}: " + ", ".join(f"[{c.tag} {c.path}#L{c.first}-L{c.last}]({c.url})"
                                                         for c in era.citations) for era in entry.eras)
        lines.append(f"- `{anchor}` {entry.title}. {eras}")
    return lines


def _detailed(result: ClauseResult) -> list[str]:
    lines = [
        f"### {ICONS[result.outcome]} {result.clause.id} · {result.profile} · {result.clause.level.value} · "
        f"{result.outcome.value}",
        "",
        f"**Requirement**: {result.clause.requirement}",
        "",
        "**What Snakepit does** (docs/snakepit/):",
        *_snakepit_lines(result),
        "",
        _fence(result.reason or "(no reason recorded)"),
        "",
        f"**Reproduce:** `{result.repro}`",
        "",
    ]
    for evidence in result.evidence:
        lines += [f"<details><summary>{evidence.title}</summary>", "", _fence(evidence.text), "", "</details>", ""]
    lines += [f"Full worker output: [workers/{name}](workers/{name})" for name in result.logs]
    return [*lines, ""] if result.logs else lines


def _short_table(results: list[ClauseResult], column: str) -> list[str]:
    lines = [f"| Clause | Profile | Level | {column} |", "|---|---|---|---|"]
    for r in results:
        text = r.baseline_reason if column == "Baseline reason" and r.baseline_reason else r.reason
        lines.append(f"| {r.clause.id} | {r.profile} | {r.clause.level.value} | {_cell(text)} |")
    return [*lines, ""]


def render(report: RunReport) -> str:
    lines = _header(report) + _summary_table(report)
    if report.problems:
        lines += ["## Problems", "", *(f"- ❌ {p}" for p in report.problems), ""]
    for group in report.groups():
        if not group.results:
            continue
        lines += [f"## {group.title} ({len(group.results)})", ""]
        if group.key == "skipped":
            lines += _short_table(group.results, "Reason")
        elif group.key == "expected":
            lines += _short_table(group.results, "Baseline reason")
        else:
            # Clauses that never ran have no evidence to show: one table row each is enough.
            lines += [line for r in group.results if r.outcome is not Outcome.NOT_RUN for line in _detailed(r)]
            not_run = [r for r in group.results if r.outcome is Outcome.NOT_RUN]
            lines += _short_table(not_run, "Why not run") if not_run else []
            for evidence in {e.text: e for r in not_run for e in r.evidence}.values():  # a cause shown once
                lines += [f"<details><summary>{evidence.title}</summary>", "", _fence(evidence.text), "", "</details>",
                          ""]
    if report.bench is not None:
        header, rows, note = bench_table(report.bench)
        lines += ["## Benchmark (informational)", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header), *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
                  "", note, ""]
    lines += [f"<details><summary>All {len(report.results)} results</summary>", "",
              "| Clause | Profile | Level | Outcome | Time | Requirement |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.clause.id} | {r.profile} | {r.clause.level.value}{'' if r.clause.judges_worker else ' (host)'} | "
              f"{ICONS[r.outcome]} {r.outcome.value} | "
              f"{r.duration_s:.2f} s | {_cell(r.clause.requirement)} |" for r in report.results]
    return "\n".join([*lines, "", "</details>", ""])
