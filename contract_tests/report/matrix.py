"""The compatibility matrix: one suite run per distinct rule set, merged into releases x areas with a headline.

Releases whose rules are identical (contract_tests/contract/releases.toml) are judged identically, so one run judges
them all. `merge` reads per-release report directories (one `conformance.json` each, e.g. from parallel CI
jobs), gives every requested release the run of a release with the same rules, and writes one report:
conformance.json (the runs' clauses, plus `matrix`), conformance.md (the matrix), junit.xml and badge.svg.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract_tests.contract.profiles import RELEASES, Profile, distinct_rule_sets, get_profile, release_span, span_text
from contract_tests.report import badge
from contract_tests.report.model import FAILING, Outcome

NOT_RUN = "not run"
_VERDICTS = ("conformant", "not_conformant", "no_verdict")
_TALLY_KEYS = ("total", *(o.value for o in Outcome))


class MatrixError(ValueError):
    """A report directory cannot be merged; the message names it and why."""


@dataclass(frozen=True)
class ReleaseRow:
    """One release of the matrix: the run that judged it (a release with the same rules) and its verdicts."""

    release: str
    judged_by: str | None  # the release whose run stands for this one; None: no run had its rules
    verdict: str  # conformant | not_conformant | no_verdict | not run
    passed: int
    judged: int
    areas: dict[str, str]  # area -> PASS | FAIL | NO VERDICT | - (nothing judged there)


def representatives(releases: Iterable[Profile]) -> list[Profile]:
    """The release that runs for each distinct rule set: the newest of its group."""
    return [group[-1] for group in distinct_rule_sets(releases)]


def load_run(directory: Path) -> dict[str, Any]:
    """One run's conformance.json, which must judge exactly one release."""
    path = directory / "conformance.json"
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MatrixError(f"{path}: cannot read a conformance report: {err}") from None
    if len(document.get("profiles", ())) != 1:
        raise MatrixError(f"{path}: a matrix merges runs of one release each, not {document.get('profiles')}")
    return document


def _area_verdict(records: Sequence[dict[str, Any]]) -> str:
    judged = [r for r in records if r["judged"]]
    if not judged:
        return "-"
    outcomes = {r["outcome"] for r in judged}
    if outcomes & {o.value for o in FAILING}:
        return "FAIL"
    if outcomes <= {Outcome.PASS.value, Outcome.XFAIL.value}:
        return "PASS"
    return "NO VERDICT"


def rows(releases: Sequence[Profile], runs: Sequence[dict[str, Any]]) -> list[ReleaseRow]:
    """Each release with the run of a release that has the same rules (the newest such run)."""
    by_rules: dict[tuple[Any, ...], dict[str, Any]] = {}
    for run in runs:
        by_rules[get_profile(run["profiles"][0]).rule_values()] = run
    areas = sorted({r["area"] for run in runs for r in run["clauses"]})
    out = []
    for release in releases:
        found = by_rules.get(release.rule_values())
        if found is None:
            out.append(ReleaseRow(release.snakepit_version, None, NOT_RUN, 0, 0, dict.fromkeys(areas, "-")))
            continue
        verdict = found["verdict"]
        out.append(ReleaseRow(
            release.snakepit_version, get_profile(found["profiles"][0]).snakepit_version, verdict["result"],
            verdict["passed"], verdict["judged"],
            {a: _area_verdict([r for r in found["clauses"] if r["area"] == a]) for a in areas}))
    return out


def headline(matrix: Sequence[ReleaseRow]) -> str:
    """E.g. "conformant with Snakepit 0.8.1 - 0.13.0" (en dash), naming each run of consecutive conformant releases."""
    good = [get_profile(r.release) for r in matrix if r.verdict == "conformant"]
    if not good:
        return "conformant with no Snakepit release"
    return f"conformant with Snakepit {span_text(release_span(good))}"


def _sum_tallies(tallies: Iterable[dict[str, int]]) -> dict[str, int]:
    total = dict.fromkeys(_TALLY_KEYS, 0)
    for tally in tallies:
        for key in _TALLY_KEYS:
            total[key] += tally.get(key, 0)
    return total


def _merged_totals(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"all": _sum_tallies(r["totals"]["all"] for r in runs)}
    for key in ("by_level", "by_area", "by_profile", "by_subject"):
        names = sorted({n for r in runs for n in r["totals"][key]})
        totals[key] = {n: _sum_tallies(r["totals"][key][n] for r in runs if n in r["totals"][key]) for n in names}
    return totals


def document(releases: Sequence[Profile], runs: Sequence[dict[str, Any]], matrix: Sequence[ReleaseRow],
             run_dirs: Sequence[str]) -> dict[str, Any]:
    """conformance.json of the matrix: every run's clauses and totals, the worst verdict, and `matrix`."""
    worst = max((_VERDICTS.index(r["verdict"]["result"]) for r in runs), default=2)
    if any(row.verdict == NOT_RUN for row in matrix):
        worst = 2
    newest = runs[-1]
    text = headline(matrix)
    return {
        **{k: newest[k] for k in ("schema_version", "suite", "worker", "level", "baseline", "metadata", "bench")},
        "started_at": min(r["started_at"] for r in runs),
        "finished_at": max(r["finished_at"] for r in runs),
        "duration_s": round(sum(r["duration_s"] for r in runs), 3),
        "profiles": [r["profiles"][0] for r in runs],
        "releases": {r["profiles"][0]: r["releases"][r["profiles"][0]] for r in runs},
        "selection": {
            "only": newest["selection"]["only"], "skip": newest["selection"]["skip"],
            "not_selected": sum(r["selection"]["not_selected"] for r in runs),
            "not_applicable": sum(r["selection"]["not_applicable"] for r in runs),
        },
        "complete": all(r["complete"] for r in runs) and all(row.verdict != NOT_RUN for row in matrix),
        "verdict": {
            "result": _VERDICTS[worst], "exit_status": worst, "summary": text,
            "passed": sum(r["verdict"]["passed"] for r in runs), "judged": sum(r["verdict"]["judged"] for r in runs),
            "problems": [p for r in runs for p in r["verdict"]["problems"]],
        },
        "totals": _merged_totals(runs),
        "clauses": [c for r in runs for c in r["clauses"]],
        "snakepit_entries": {k: v for r in runs for k, v in r["snakepit_entries"].items()},
        "matrix": {
            "headline": text,
            "releases": [row.__dict__ for row in matrix],
            "runs": list(run_dirs),
        },
    }


def markdown(doc: dict[str, Any]) -> str:
    matrix = doc["matrix"]
    areas = sorted({a for row in matrix["releases"] for a in row["areas"]})
    lines = [
        "# snakepit-contract compatibility matrix", "",
        f"**{matrix['headline']}** (worker `{doc['worker']['target']}`, level {doc['level']}).", "",
        "| Release | Judged by the run of | Verdict | Passed | " + " | ".join(areas) + " |",
        "|---|---|---|---|" + "---|" * len(areas),
    ]
    for row in matrix["releases"]:
        lines.append(f"| {row['release']} | {row['judged_by'] or '-'} | {row['verdict'].replace('_', ' ')} | "
                     f"{row['passed']}/{row['judged']} | " + " | ".join(row["areas"].get(a, "-") for a in areas) + " |")
    lines += ["", "Releases with identical rules (contract_tests/contract/releases.toml) share one run."
              " Each run's full report:", "", *(f"* [{d}]({d}/conformance.md)" for d in matrix["runs"]), ""]
    return "\n".join(lines)


def junit(run_dirs: Sequence[Path]) -> str:
    """The runs' junit.xml testsuites under one root."""
    root = ET.Element("testsuites", name="snakepit-contract matrix")
    for directory in run_dirs:
        path = directory / "junit.xml"
        if path.is_file():
            root.extend(ET.parse(path).getroot())
    return ET.tostring(root, encoding="unicode") + "\n"


def badge_svg(doc: dict[str, Any]) -> str:
    text = doc["matrix"]["headline"]
    conformant = not text.endswith("no Snakepit release")
    return badge.draw("snakepit-contract", text.removeprefix("conformant with "),
                      "#4c1" if conformant else "#e05d44")


def merge(releases: Sequence[Profile], run_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    """Merge per-release report directories into the matrix report in `out`; returns its conformance.json."""
    runs = sorted((load_run(d) for d in run_dirs),
                  key=lambda run: RELEASES.index(get_profile(run["profiles"][0]).snakepit_version))
    if not runs:
        raise MatrixError("no report directories to merge")
    matrix = rows(releases, runs)
    out.mkdir(parents=True, exist_ok=True)
    relative = [_relative(d, out) for d in run_dirs]
    doc = document(releases, runs, matrix, relative)
    (out / "conformance.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "conformance.md").write_text(markdown(doc), encoding="utf-8")
    (out / "junit.xml").write_text(junit(run_dirs), encoding="utf-8")
    (out / "badge.svg").write_text(badge_svg(doc), encoding="utf-8")
    return doc


def _relative(directory: Path, out: Path) -> str:
    try:
        return str(directory.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(directory)
