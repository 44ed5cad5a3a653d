"""Self-tests of the five report files, on a report holding every outcome; the HTML is loaded in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from contract_tests import report
from contract_tests.contract.clause import REGISTRY
from contract_tests.report import badge, html, json_report, junit, markdown
from contract_tests.report.model import ClauseResult, Evidence, Outcome, RunReport, WorkerInfo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# (clause, profile, outcome, judged): one result per outcome, plus a SHOULD failure that is only a warning.
SAMPLES = [
    ("PROC-010", "snakepit-0.13", Outcome.PASS, True),
    ("PROC-011", "snakepit-0.13", Outcome.FAIL, True),
    ("TOOL-001", "snakepit-0.6", Outcome.SKIP, True),
    ("TOOL-004", "snakepit-0.6", Outcome.XFAIL, True),
    ("TOOL-005", "snakepit-0.13", Outcome.XPASS, True),
    ("RPC-001", "snakepit-0.13", Outcome.ERROR, True),
    ("RPC-002", "snakepit-0.13", Outcome.TIMEOUT, True),
    ("STREAM-001", "snakepit-0.6", Outcome.NOT_RUN, True),
    ("PROC-002", "snakepit-0.6", Outcome.FAIL, False),
    ("SESSION-001", "snakepit-0.13", Outcome.FAIL, False),  # an emulator self-check: reported, never judged
]


def sample_report() -> RunReport:
    results = []
    for clause_id, profile, outcome, judged in SAMPLES:
        failing = outcome not in {Outcome.PASS, Outcome.SKIP}
        results.append(ClauseResult(
            clause=REGISTRY[clause_id], profile=profile, outcome=outcome,
            reason="" if outcome is Outcome.PASS else f"{outcome.value}: Expected: 0 or 143 | Actual: <none> & \x07",
            duration_s=0.25, judged=judged, repro=f"snakepit-contract run --only {clause_id} --profile {profile}",
            tests=[f"clauses/test_x.py::test_{clause_id}[{profile}]"],
            evidence=[Evidence("worker pid 4242", "exit status: -9\n--- gRPC trace ---\n-> Ping\n```\n<- Ping OK")]
            if failing else [],
            logs={f"{clause_id}-{profile}-4242.log": "worker output\n"} if outcome is Outcome.FAIL else {},
            baseline_reason="issue #12" if outcome in {Outcome.XFAIL, Outcome.XPASS} else None,
        ))
    started = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    return RunReport(
        suite_version="0.1.0", started_at=started, finished_at=started + timedelta(seconds=42),
        worker=WorkerInfo("command", "node my-worker.js", ("contract.echo", "contract.sleep")),
        profiles=["snakepit-0.6", "snakepit-0.13"], level="must", only=("PROC-*",), skip=(), not_selected=3,
        not_applicable=2, results=results, baseline="baseline.toml",
        problems=["baseline entry RPC-003 expired on 2026-05-31: fix the worker"],
    )


def test_write_all_writes_the_five_outputs_and_worker_logs(tmp_path: Path) -> None:
    """Ensure --report-dir gets JSON, Markdown, JUnit, HTML, the badge, and each failing worker's output."""
    written = report.write_all(sample_report(), tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == sorted([*report.OUTPUTS, "workers/PROC-011-snakepit-0.13-4242.log",
                            "workers/PROC-002-snakepit-0.6-4242.log", "workers/SESSION-001-snakepit-0.13-4242.log"])


def test_json_validates_against_the_versioned_schema() -> None:
    """Ensure conformance.json matches conformance.schema.json (draft 2020-12), and the schema rejects drift."""
    schema = json_report.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    document = json.loads(json_report.render(sample_report()))
    validator.validate(document)
    assert document["schema_version"] == 4 and document["verdict"]["exit_status"] == 1
    assert document["totals"]["by_level"]["MUST"]["total"] == 9 and document["totals"]["all"]["NOT-RUN"] == 1
    assert {c["id"]: c["outcome"] for c in document["clauses"]}["RPC-002"] == "TIMEOUT"
    assert document["totals"]["by_subject"]["host"] == {**dict.fromkeys(document["totals"]["all"], 0),
                                                          "total": 1, "FAIL": 1}
    assert {c["id"]: c["subject"] for c in document["clauses"]}["SESSION-001"] == "host"
    grace = document["snakepit_entries"]["shutdown-grace"]
    assert set(document["snakepit_entries"]) == {a for c in document["clauses"] for a in c["rests_on"]}
    assert grace["doc"] == "docs/snakepit/shutdown-grace.md" and grace["eras"][0]["since"] == "0.6.0"
    assert grace["eras"][0]["citations"][0]["url"].startswith("https://github.com/nshkrdotcom/snakepit/blob/v0.6.0/")
    document["clauses"][0]["outcome"] = "passed"
    assert not validator.is_valid(document)


def test_markdown_has_the_summary_table_then_failures_with_evidence() -> None:
    """Ensure conformance.md opens with the verdict and area x level table, then failures with repro and evidence."""
    text = markdown.render(sample_report())
    assert text.startswith("# snakepit-contract: ❌ not conformant")
    assert "| Area | MUST | SHOULD (warnings) | MAY (warnings) |" in text
    assert "| **PROC** Process contract | ❌ 1/2 · 1 FAIL | 🟡 0/1 · 1 FAIL | none |" in text
    failures = text.index("## Failures (3)")
    assert failures < text.index("### ❌ PROC-011 · snakepit-0.13 · MUST · FAIL") < text.index("## Not judged")
    assert "**Reproduce:** `snakepit-contract run --only PROC-011 --profile snakepit-0.13`" in text
    assert "- `shutdown-grace` Stopping a worker: SIGTERM, grace period, SIGKILL. 0.6.0 to 0.8.4: [v0.6.0 " in text
    assert "(https://github.com/nshkrdotcom/snakepit/blob/v0.8.5/lib/snakepit/grpc_worker.ex#L1053-L1054)" in text
    assert "<details><summary>worker pid 4242</summary>" in text and "````text" in text
    assert "[workers/PROC-011-snakepit-0.13-4242.log](workers/PROC-011-snakepit-0.13-4242.log)" in text
    assert "## Warnings: not judged at level MUST (1)" in text and "- ❌ baseline entry RPC-003 expired" in text
    assert "| TOOL-004 | snakepit-0.6 | MUST | issue #12 |" in text
    assert "| Emulator self-checks | 0/1 emulator self-checks passed" in text
    assert "## Emulator self-checks that did not pass (the suite's Elixir side, not the worker) (1)" in text
    assert "| SESSION-001 | snakepit-0.13 | MUST (host) |" in text


def test_junit_has_one_testcase_per_clause_and_profile_with_status_following_the_verdict() -> None:
    """Ensure JUnit names testcases by clause id with level/area properties; judged failures fail, warnings skip."""
    root = ET.fromstring(junit.render(sample_report()))
    cases = {(c.get("name"), c.get("classname")): c for c in root.iter("testcase")}
    assert len(cases) == len(SAMPLES)
    case = cases["PROC-011", "snakepit-contract.snakepit-0.13.PROC"]
    assert {p.get("name"): p.get("value") for p in case.iter("property")}["level"] == "MUST"
    status = {name: next((e.tag for e in c if e.tag != "properties"), "passed") for (name, _), c in cases.items()}
    assert status == {"PROC-010": "passed", "PROC-011": "failure", "TOOL-001": "skipped", "TOOL-004": "skipped",
                      "TOOL-005": "failure", "RPC-001": "error", "RPC-002": "failure", "STREAM-001": "error",
                      "PROC-002": "skipped", "SESSION-001": "skipped"}
    failure = case.find("failure")
    assert failure is not None and "Reproduce: snakepit-contract run --only PROC-011" in (failure.text or "")
    assert "\ufffd" in (failure.text or "")  # the BEL byte XML cannot carry
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("10", "3", "2", "4")


def test_badge_reads_like_shields_and_names_profiles_and_level() -> None:
    """Ensure badge.svg is valid SVG saying e.g. 'snakepit-contract 0.6+0.13: 1/8 MUST (not conformant)' in red."""
    svg = ET.fromstring(badge.render(sample_report()))
    assert svg.get("aria-label") == "snakepit-contract 0.6+0.13: 1/8 MUST (not conformant)"
    assert "#e05d44" in badge.render(sample_report())
    passing = sample_report()
    passing.results, passing.problems = passing.results[:1], []
    assert badge.texts(passing) == ("snakepit-contract 0.6+0.13", "1/1 MUST", "#4c1")


def test_html_is_self_contained() -> None:
    """Ensure conformance.html loads nothing from the network: no external src, links or imports.

    Plain `<a href>` links (to Snakepit's source lines) load nothing until followed, and are allowed.
    """
    page = html.render(sample_report())
    assert not re.search(r"""\bsrc\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""<(?!a\s)[^>]*\bhref\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert "<a href='https://github.com/nshkrdotcom/snakepit/blob/v" in page
    assert "<link" not in page and "@import" not in page and "<script src" not in page
    assert page.count("<tr data-outcome=") == len(SAMPLES)


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={cwd / 'profile'}", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is absent (Debian package 'chromium'; .ci/run installs it)")
def test_html_renders_in_headless_chromium_and_filters_by_outcome_and_area(tmp_path: Path) -> None:
    """Ensure the page renders (screenshot) and its script filters rows from the URL fragment."""
    page = tmp_path / "conformance.html"
    page.write_text(html.render(sample_report()), encoding="utf-8")
    shot = tmp_path / "conformance.png"
    ran = _chromium("--window-size=1280,1600", f"--screenshot={shot}", page.as_uri(), cwd=tmp_path)
    assert shot.is_file(), ran.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1280, 1600)
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few kB
    dom = _chromium("--dump-dom", page.as_uri() + "#outcome=FAIL,XPASS&area=PROC", cwd=tmp_path).stdout
    assert 'data-ready="true"' in dom and "Showing 2 of 10" in dom
    visible = re.findall(r"<tr data-outcome=\"(\w+)\" data-area=\"(\w+)\"(?: class=\"warn\")?>", dom)
    assert sorted(visible) == [("FAIL", "PROC"), ("FAIL", "PROC")]


def test_html_lists_failures_first_and_counts_that_reconcile() -> None:
    """Ensure the HTML results start with the judged failures (passes last), its area table counts the worker's
    checks only (emulator self-checks apart), and a multi-glob --only reads as it was given."""
    sample = sample_report()
    sample.only = ("PROC-*", "TOOL-00?")
    text = html.render(sample)
    rows = re.findall(r"<tr data-outcome='([A-Z-]+)' data-area='[A-Z]+'[^>]*><td><strong>([A-Z]+-\d+)</strong>", text)
    assert rows[0] == ("FAIL", "PROC-011") and rows[-1] == ("PASS", "PROC-010")
    assert [clause for _, clause in rows].index("SESSION-001") > [clause for _, clause in rows].index("STREAM-001")
    assert "--only PROC-*,TOOL-00?" in text and "--only PROC-* --only" not in text
    table = text.split("<h2>Summary by area and level</h2>", 1)[1].split("</table>", 1)[0]
    assert "SESSION" not in table  # the area holds only an emulator self-check here
    judged_cells = sum(len(v) for (_, level), v in sample.matrix().items() if level.value == "MUST")
    assert judged_cells == len([r for r in sample.results if r.clause.judges_worker and r.clause.level.value == "MUST"])
