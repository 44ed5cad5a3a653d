"""conformance.html: one self-contained page (inline CSS and JS, no network), results filterable by outcome and area.

Rows are rendered on the server so the page reads without JavaScript; the
script only hides rows. Filters live in the URL fragment
(`#outcome=FAIL,ERROR&area=PROC`) so a filtered view can be linked.
"""

from __future__ import annotations

from html import escape

from contract_tests.contract.clause import Level
from contract_tests.contract.snakepit_sources import ENTRIES
from contract_tests.report.extras import bench_table
from contract_tests.report.model import FAILING, LEVELS, UNJUDGED, ClauseResult, Outcome, RunReport

_CSS = """
:root { --pass:#2e7d32; --fail:#c62828; --skip:#8d6e00; --xfail:#b26a00; --error:#6a1b9a; --notrun:#616161; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5rem; color: #1b1b1b; background: #fafafa; }
h1 { font-size: 1.6rem; margin: 0 0 .5rem; } h2 { font-size: 1.2rem; margin: 1.8rem 0 .6rem; }
.verdict { padding: .8rem 1rem; border-radius: 6px; color: #fff; font-weight: 600; }
.v-CONFORMANT { background: var(--pass); } .v-NOT_CONFORMANT { background: var(--fail); }
.v-NO_VERDICT { background: var(--notrun); }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } table.info th { width: 9rem; }
.o { display: inline-block; min-width: 4.6rem; text-align: center; border-radius: 3px; color: #fff;
     font-weight: 600; font-size: 12px; padding: 1px 4px; }
.o-PASS { background: var(--pass); } .o-FAIL, .o-XPASS, .o-TIMEOUT { background: var(--fail); }
.o-SKIP { background: var(--skip); } .o-XFAIL { background: var(--xfail); } .o-ERROR { background: var(--error); }
.o-NOT-RUN { background: var(--notrun); }
.cell-bad { background: #fdecea; } .cell-odd { background: #fff8e1; } .cell-ok { background: #e8f5e9; }
.filters { position: sticky; top: 0; background: #fafafa; padding: .6rem 0; border-bottom: 1px solid #ddd; }
.filters button { margin: 2px; padding: 3px 9px; border: 1px solid #999; border-radius: 12px; background: #fff;
                  cursor: pointer; font: inherit; }
.filters button[aria-pressed="true"] { background: #1b1b1b; color: #fff; border-color: #1b1b1b; }
.filters .label { display: inline-block; width: 5rem; font-weight: 600; }
#shown { margin-left: 1rem; color: #555; }
pre { white-space: pre-wrap; word-break: break-word; background: #f4f4f4; padding: .5rem; border-radius: 4px;
      max-height: 28rem; overflow: auto; font-size: 12px; }
code { background: #f0f0f0; padding: 0 3px; border-radius: 3px; }
#results td:nth-child(-n+5) { white-space: nowrap; }
details summary { cursor: pointer; } .muted { color: #666; } tr.warn td:first-child { border-left: 4px solid #f9a825; }
"""

_JS = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#results tbody tr"));
  var chosen = {outcome: new Set(), area: new Set()};
  function readHash() {
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var kv = part.split("=");
      if (!chosen[kv[0]] || !kv[1]) { return; }
      kv[1].split(",").forEach(function (v) { chosen[kv[0]].add(decodeURIComponent(v)); });
    });
  }
  function apply() {
    var shown = 0;
    rows.forEach(function (row) {
      var ok = (!chosen.outcome.size || chosen.outcome.has(row.dataset.outcome)) &&
               (!chosen.area.size || chosen.area.has(row.dataset.area));
      row.hidden = !ok; if (ok) { shown += 1; }
    });
    document.querySelectorAll(".filters button[data-kind]").forEach(function (b) {
      b.setAttribute("aria-pressed", chosen[b.dataset.kind].has(b.dataset.value) ? "true" : "false");
    });
    document.getElementById("shown").textContent = "Showing " + shown + " of " + rows.length;
    var parts = [];
    Object.keys(chosen).forEach(function (k) {
      if (chosen[k].size) { parts.push(k + "=" + Array.from(chosen[k]).join(",")); }
    });
    history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
  }
  document.querySelectorAll(".filters button[data-kind]").forEach(function (b) {
    b.addEventListener("click", function () {
      var set = chosen[b.dataset.kind];
      if (set.has(b.dataset.value)) { set.delete(b.dataset.value); } else { set.add(b.dataset.value); }
      apply();
    });
  });
  document.getElementById("clear").addEventListener("click", function () {
    chosen.outcome.clear(); chosen.area.clear(); apply();
  });
  readHash();
  apply();
  document.body.setAttribute("data-ready", "true");
})();
"""


def _badge(outcome: Outcome) -> str:
    return f'<span class="o o-{outcome.value}">{outcome.value}</span>'


def _cell(results: list[ClauseResult], judged: bool) -> str:
    if not results:
        return "<td class='muted'>none</td>"
    passed = sum(r.outcome is Outcome.PASS for r in results)
    others = [(o, sum(r.outcome is o for r in results)) for o in Outcome if o is not Outcome.PASS]
    bad = judged and any(n for o, n in others if o in FAILING | UNJUDGED)
    tone = "bad" if bad else "ok" if passed == len(results) else "odd"
    extra = "".join(f" {_badge(o)}&nbsp;{n}" for o, n in others if n)
    return f"<td class='cell-{tone}'>{passed}/{len(results)} passed{extra}</td>"


def _info(report: RunReport) -> str:
    worker = report.worker
    tools = (f"{len(worker.tools)} contract tools: {', '.join(worker.tools)}" if worker.tools is not None
             else worker.tools_note or "not asked")
    rows = [
        ("Worker", f"<code>{escape(worker.target)}</code> ({worker.kind})"),
        ("Contract tools", escape(tools)),
        ("Profiles", escape(", ".join(report.profiles))),
        ("Level", f"<code>{report.level}</code>: {report.level_label} clauses decide the verdict; others are warnings"),
        ("Baseline", f"<code>{escape(report.baseline)}</code>" if report.baseline else "none"),
        ("Selection", escape(" ".join([*([f"--only {','.join(report.only)}"] if report.only else []),
                                       *([f"--skip {','.join(report.skip)}"] if report.skip else [])])
                             or "every clause") + f" ({report.not_selected} not selected, "
                                                  f"{report.not_applicable} not applicable to a profile)"),
        ("Run", f"{report.started_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"{(report.finished_at - report.started_at).total_seconds():.1f} s, "
                + ("<strong>partial: interrupted</strong>" if report.interrupted else "complete")),
        ("Suite", f"snakepit-contract {escape(report.suite_version)}"),
        *([("Emulator self-checks", escape(line))] if (line := report.self_check_line()) else []),
        *([("Mutation score", escape(line))] if (line := report.mutation_line()) else []),
    ]
    return "<table class='info'>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _matrix(report: RunReport) -> str:
    matrix, judged = report.matrix(), LEVELS[report.level]
    head = "<tr><th>Area</th>" + "".join(
        f"<th>{level.value}{'' if level in judged else ' <span class=muted>(warnings)</span>'}</th>"
        for level in Level) + "</tr>"
    body = "".join(
        f"<tr><th>{area} <span class='muted'>{escape(title)}</span></th>"
        + "".join(_cell(matrix.get((area, level), []), level in judged) for level in Level) + "</tr>"
        for area, title in report.areas.items() if any(key[0] == area for key in matrix))
    return (f"<table>{head}{body}</table><p class='muted'>Checks of the worker only: the judged columns add up to "
            "the verdict's judged checks. Emulator self-checks are counted apart, above.</p>")


def _filters(report: RunReport) -> str:
    counts = report.counts(report.results)
    outcome_buttons = "".join(
        f"<button type='button' data-kind='outcome' data-value='{o.value}'>{o.value} {counts[o]}</button>"
        for o in Outcome if counts[o])
    area_buttons = "".join(
        f"<button type='button' data-kind='area' data-value='{a}'>{a} "
        f"{sum(r.clause.area == a for r in report.results)}</button>" for a in report.areas)
    return (f"<div class='filters'><div><span class='label'>Outcome</span>{outcome_buttons}</div>"
            f"<div><span class='label'>Area</span>{area_buttons}"
            f"<button type='button' id='clear'>Show all</button><span id='shown'></span></div></div>")


def _snakepit(result: ClauseResult) -> str:
    """What Snakepit does for the behaviours the clause rests on, with links to the source lines."""
    items = []
    for anchor in result.clause.rests_on:
        entry = ENTRIES[anchor]
        eras = "; ".join(f"{escape(era.releases)}: " + ", ".join(
            f"<a href='{escape(c.url)}'>{escape(c.tag)} {escape(c.path)}#L{c.first}-L{c.last}</a>"
            for c in era.citations) for era in entry.eras)
        items.append(f"<li><code>{escape(anchor)}</code> {escape(entry.title)}. {eras}</li>")
    return "<p>What Snakepit does (docs/snakepit/):</p><ul>" + "".join(items) + "</ul>"


def _details(result: ClauseResult) -> str:
    parts = [f"<pre>{escape(result.reason)}</pre>" if result.reason else ""]
    if result.outcome is not Outcome.PASS:
        parts.append(f"<p>Reproduce: <code>{escape(result.repro)}</code></p>")
    parts += [f"<details><summary>{escape(e.title)}</summary><pre>{escape(e.text)}</pre></details>"
              for e in result.evidence]
    parts += [f"<p>Full worker output: <a href='workers/{escape(n)}'>workers/{escape(n)}</a></p>" for n in result.logs]
    if result.outcome is not Outcome.PASS:
        parts.append(_snakepit(result))
    parts.append(f"<p class='muted'>Rests on {escape(', '.join(result.clause.rests_on))} · checked by "
                 f"{escape(', '.join(result.tests) or 'no test')}</p>")
    is_open = " open" if result.outcome in FAILING | {Outcome.ERROR} and result.judged else ""
    return (f"<details{is_open}><summary>{escape(result.clause.requirement)}</summary>"
            + "".join(parts) + "</details>")


def _judged_note(result: ClauseResult) -> str:
    if not result.clause.judges_worker:
        return " <span class=muted>(emulator self-check)</span>"
    return "" if result.judged else " <span class=muted>(not judged)</span>"


def _rows(report: RunReport) -> str:
    rows = []
    for r in report.in_reading_order():
        warn = " class='warn'" if not r.judged and r.outcome in FAILING | UNJUDGED else ""
        rows.append(
            f"<tr data-outcome='{r.outcome.value}' data-area='{r.clause.area}'{warn}>"
            f"<td><strong>{r.clause.id}</strong></td><td>{r.profile}</td><td>{r.clause.level.value}"
            f"{_judged_note(r)}</td><td>{_badge(r.outcome)}</td>"
            f"<td>{r.duration_s:.2f}&nbsp;s</td><td>{_details(r)}</td></tr>")
    return ("<table id='results'><thead><tr><th>Clause</th><th>Profile</th><th>Level</th><th>Outcome</th>"
            "<th>Time</th><th>Requirement and evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _bench(report: RunReport) -> str:
    if report.bench is None:
        return ""
    header, rows, note = bench_table(report.bench)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<h2 id='bench'>Benchmark <span class='muted'>(informational)</span></h2>"
            f"<table id='bench-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p class='muted'>{escape(note)}</p>")


def render(report: RunReport) -> str:
    verdict = report.verdict()
    problems = "".join(f"<li>{escape(p)}</li>" for p in report.problems)
    title = f"snakepit-contract: {verdict.name.replace('_', ' ').lower()}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="verdict v-{verdict.name}">{escape(report.summary())} (exit status {verdict.value})</p>
{f"<h2>Problems</h2><ul>{problems}</ul>" if problems else ""}
{_info(report)}
<h2>Summary by area and level</h2>
{_matrix(report)}
<h2>Results</h2>
{_filters(report)}
{_rows(report)}
{_bench(report)}
<script>{_JS}</script>
</body></html>
"""

