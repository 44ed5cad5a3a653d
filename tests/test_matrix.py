"""Self-tests of the compatibility matrix: one run per distinct rule set, merging, the headline."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema

from contract_tests import cli
from contract_tests.contract.profiles import RELEASES, RULES, distinct_rule_sets, select_releases
from contract_tests.report.json_report import load_schema
from contract_tests.report.matrix import ReleaseRow, headline, representatives

DATA = Path(__file__).with_name("data")
# Snakepit 0.8.1 … 0.9.1's own bridge rejects --snakepit-instance-name, which Snakepit appends from 0.10.0.
OLD_BRIDGE = [sys.executable, str(DATA / "pre_instance_flags_worker.py")]


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "contract_tests.cli", *argv], capture_output=True, text=True,
                          timeout=600)


def test_releases_with_identical_rules_share_one_run() -> None:
    """Ensure the 38 releases fall into groups of equal rules, consecutive, each run once by its newest release."""
    groups = distinct_rule_sets(RULES.values())
    assert [p.snakepit_version for g in groups for p in g] == list(RELEASES)
    for group in groups:
        assert len({p.rule_values() for p in group}) == 1
    assert all(a[-1].rule_values() != b[0].rule_values() for a, b in itertools.pairwise(groups))
    chosen = [p.snakepit_version for p in representatives(select_releases("0.10.0..0.13.0"))]
    assert chosen == ["0.12.0", "0.13.0"]
    out = io.StringIO()
    assert cli.main(["releases", "--snakepit-version", "0.9.0..0.12.0", "--json"], out=out) == 0
    assert json.loads(out.getvalue()) == ["0.9.0", "0.9.1", "0.12.0"]


def test_headline_names_each_run_of_conformant_releases() -> None:
    """Ensure the headline spans consecutive conformant releases and names a gap as two spans."""
    def row(release: str, verdict: str) -> ReleaseRow:
        return ReleaseRow(release, release, verdict, 1, 1, {})

    assert headline([row("0.8.0", "not_conformant"), row("0.8.1", "conformant"), row("0.8.2", "conformant")]) \
        == "conformant with Snakepit 0.8.1 \u2013 0.8.2"
    assert headline([row("0.8.0", "conformant"), row("0.8.1", "no_verdict"), row("0.8.2", "conformant")]) \
        == "conformant with Snakepit 0.8.0, 0.8.2"
    assert headline([row("0.8.0", "not run")]) == "conformant with no Snakepit release"


def test_matrix_of_a_worker_conformant_with_some_releases_only(tmp_path: Path) -> None:
    """Ensure a range runs once per rule set and says exactly where a worker is conformant: an old-bridge-like
    worker that rejects the instance flags passes up to 0.9.1 and fails from 0.10.0, which appends them."""
    run = _cli("run", "--snakepit-version", "0.9.0..0.10.1", "--only", "PROC-001", "-n", "0",
               "--report-dir", str(tmp_path), "--worker-cmd", " ".join(OLD_BRIDGE))
    assert run.returncode == 1, run.stdout + run.stderr
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["0.10.1", "0.9.0", "0.9.1"]
    document = json.loads((tmp_path / "conformance.json").read_text())
    jsonschema.validate(document, load_schema())
    assert document["matrix"]["headline"] == "conformant with Snakepit 0.9.0 \u2013 0.9.1"
    rows = {r["release"]: r for r in document["matrix"]["releases"]}
    assert {r: rows[r]["verdict"] for r in rows} == {"0.9.0": "conformant", "0.9.1": "conformant",
                                                     "0.10.0": "not_conformant", "0.10.1": "not_conformant"}
    assert rows["0.10.0"]["judged_by"] == "0.10.1" and rows["0.10.0"]["areas"] == {"PROC": "FAIL"}
    assert "conformant with Snakepit 0.9.0 \u2013 0.9.1" in run.stdout
    assert "0.9.0 \u2013 0.9.1" in (tmp_path / "badge.svg").read_text()
    assert "| 0.10.0 | 0.10.1 | not conformant | 0/1 | FAIL |" in (tmp_path / "conformance.md").read_text()
    assert len(ET.parse(tmp_path / "junit.xml").getroot()) == 3


def test_merge_of_parallel_runs_and_a_release_no_run_covers(tmp_path: Path) -> None:
    """Ensure per-release report directories (parallel CI jobs) merge into the same matrix, and a release whose
    rules no merged run had is NOT RUN, which leaves the matrix without a verdict (exit 2)."""
    for release in ("0.9.1", "0.10.1"):
        run = _cli("run", "--snakepit-version", release, "--only", "PROC-001", "-n", "0",
                   "--report-dir", str(tmp_path / release), "--worker-cmd", " ".join(OLD_BRIDGE))
        assert (tmp_path / release / "conformance.json").is_file(), run.stdout + run.stderr
    out = io.StringIO()
    code = cli.main(["merge", "--snakepit-version", "0.9.0..0.11.0", "--report-dir", str(tmp_path / "matrix"),
                     str(tmp_path / "0.9.1"), str(tmp_path / "0.10.1")], out=out)
    document = json.loads((tmp_path / "matrix" / "conformance.json").read_text())
    jsonschema.validate(document, load_schema())
    verdicts = {r["release"]: r["verdict"] for r in document["matrix"]["releases"]}
    assert verdicts == {"0.9.0": "not run", "0.9.1": "conformant", "0.10.0": "not_conformant",
                        "0.10.1": "not_conformant", "0.11.0": "not_conformant"}
    assert document["matrix"]["headline"] == "conformant with Snakepit 0.9.1"
    assert code == 2 and document["verdict"]["result"] == "no_verdict" and not document["complete"]
    assert "conformant with Snakepit 0.9.1" in out.getvalue()


def test_merge_refuses_a_report_of_several_releases(tmp_path: Path) -> None:
    """Ensure merge names a directory that is not one release's report, with exit 3 and nothing written."""
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "conformance.json").write_text(json.dumps({"profiles": ["snakepit-0.6", "snakepit-0.13"]}))
    assert cli.main(["merge", "--snakepit-version", "0.6.0..0.13.0", "--report-dir", str(tmp_path / "out"),
                     str(tmp_path / "both"), str(tmp_path / "missing")]) == 3
    assert not (tmp_path / "out").exists()
