"""Self-tests of the snakepit-contract command line and the plugin's options."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from contract_tests import cli
from contract_tests.clause import MUST, SHOULD


def test_list_names_every_clause_without_a_worker() -> None:
    """Ensure `list` prints id, level, profiles and requirement, plus counts per area."""
    out = io.StringIO()
    assert cli.main(["list"], out=out) == cli.EXIT_CONFORMANT
    lines = out.getvalue().splitlines()
    registry = cli.load_clauses()
    assert len(lines) == len(registry) + 1
    assert re.match(r"^PROC-010\s+MUST\s+all\s+On SIGTERM", next(line for line in lines if "PROC-010" in line))
    assert lines[-1].startswith(f"Total clauses: {len(registry)} (")


def test_catalogue_meets_the_foundation_floor() -> None:
    """Ensure the foundation's areas are present with at least 40 clauses, each a MUST or SHOULD or MAY."""
    registry = cli.load_clauses()
    assert len(registry) >= 40
    assert {c.area for c in registry.values()} >= {"PROC", "RPC", "TOOL", "STREAM", "CALLBACK"}
    assert sum(c.level is MUST for c in registry.values()) > sum(c.level is SHOULD for c in registry.values())


def test_list_filters_by_profile() -> None:
    """Ensure profile-specific clauses disappear from other profiles' listings."""
    out = io.StringIO()
    cli.main(["list", "--profile", "snakepit-0.6"], out=out)
    assert "PROC-005" in out.getvalue() and "PROC-004" not in out.getvalue()


@pytest.mark.parametrize("argv", [["list", "--profile", "snakepit-9"], ["frobnicate"], []])
def test_usage_errors_exit_3(argv: list[str]) -> None:
    """Ensure bad command lines exit with the usage code, kept apart from worker failures."""
    assert cli.main(argv, out=io.StringIO()) == cli.EXIT_USAGE


def test_run_writes_results_for_selected_clauses(tmp_path: Path) -> None:
    """Ensure `run --only` runs just those clauses and records them in conformance.json and JUnit."""
    code = cli.main(["run", "--only", "RPC-001,TOOL-008", "--profile", "all", "-n", "0",
                     "--report-dir", str(tmp_path), "--", "-q"])
    assert code == cli.EXIT_CONFORMANT
    report = json.loads((tmp_path / "conformance.json").read_text())
    seen = {(r["clause"], r["profile"], r["outcome"]) for r in report["results"]}
    assert seen == {(c, p, "passed") for c in ("RPC-001", "TOOL-008") for p in ("snakepit-0.6", "snakepit-0.13")}
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == 4


def test_bad_timeout_scale_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """Ensure invalid settings name their source and stop the run before any worker starts."""
    result = pytester.runpytest_subprocess("--timeout-scale", "fast")
    result.stderr.fnmatch_lines(["*Invalid timeout scale 'fast' from --timeout-scale*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_environment_setting_is_used_and_named(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure settings fall back to SNAKEPIT_CONTRACT_* variables, shown in the header."""
    monkeypatch.setenv("SNAKEPIT_CONTRACT_PROFILE", "nonsense")
    result = pytester.runpytest_subprocess()
    result.stderr.fnmatch_lines(["*Invalid profile from SNAKEPIT_CONTRACT_PROFILE*"])


def test_missing_worker_executable_is_a_usage_error(tmp_path: Path) -> None:
    """Ensure a worker command that cannot run stops the run at once with the usage code."""
    code = cli.main(["run", "--worker-cmd", "/nonexistent/worker --flag", "-n", "0", "--report-dir", str(tmp_path)])
    assert code == cli.EXIT_USAGE

