"""`run --worker-coverage`: the worker under coverage.py, and which of its lines the suite exercised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract_tests.driver import worker_coverage


def test_only_python_workers_with_a_module_or_script_are_measured(tmp_path: Path) -> None:
    """Ensure a non-Python worker or an unknown form is a clear error before anything runs."""
    with pytest.raises(worker_coverage.WorkerCoverageError, match="Python workers only"):
        worker_coverage.prepare(["node", "index.js"], tmp_path)
    with pytest.raises(worker_coverage.WorkerCoverageError, match="python -m PACKAGE"):
        worker_coverage.prepare([sys.executable, "-c", "pass"], tmp_path)


def test_wrap_runs_the_same_argv_under_coverage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure the wrapped command is `python -m coverage run --rcfile=... <the worker's own arguments>`."""
    command = [sys.executable, "-m", "reference_worker"]
    assert worker_coverage.wrap(command) == command
    worker_coverage.prepare(command, tmp_path)
    monkeypatch.setenv(worker_coverage.WORKER_COVERAGE_ENV, str(tmp_path))
    assert worker_coverage.wrap(command) == [sys.executable, "-m", "coverage", "run",
                                             f"--rcfile={tmp_path / 'coveragerc'}", "-m", "reference_worker"]


def test_run_reports_the_lines_the_selected_clauses_exercised(tmp_path: Path) -> None:
    """Ensure a real run writes coverage.json and html/ and prints one summary line."""
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", "--worker-coverage", "--only", "TOOL-003",
         "--profile", "snakepit-0.13", "-n", "0", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    summary = [line for line in run.stdout.splitlines() if line.startswith("Worker coverage: ")]
    assert len(summary) == 1 and "lines exercised by the suite" in summary[0], run.stdout[-2000:]
    files = json.loads((tmp_path / "worker-coverage" / "coverage.json").read_text())["files"]
    assert any(name.endswith("reference_worker/tools.py") for name in files), sorted(files)
    assert not [name for name in files if "_pb2" in name], sorted(files)  # its generated stubs are not measured
    assert (tmp_path / "worker-coverage" / "html" / "index.html").is_file()
