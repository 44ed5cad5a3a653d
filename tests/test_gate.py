"""Self-tests of the CI gate (ci/gate.sh): its exit statuses, baselines, summary and kit selection.

Each run goes through `bash ci/gate.sh` in a temporary directory standing in for a worker's
repository, exactly as a CI job calls it. The kit under test is the one installed in this
interpreter's environment (found on PATH); installing it from scratch needs the package index and
is shown in docs/gate.md instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "ci" / "gate.sh"
MUTANT = ROOT / "fixtures" / "mutants" / "ints_as_floats.py"
REFERENCE = shlex.join([sys.executable, "-m", "reference_worker"])
DIES_AT_START = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)"])
IMAGE = os.environ.get("SNAKEPIT_CONTRACT_TEST_IMAGE", "snakepit-contract/reference-worker:latest")
_spec = importlib.util.spec_from_file_location("gate", ROOT / "ci" / "gate.py")
assert _spec is not None and _spec.loader is not None
gate: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gate)


def _env(path: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["PATH"] = path if path is not None else f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SNAKEPIT_GATE_PYTHON"] = sys.executable
    return env


def _gate(repo: Path, *args: str, gate_script: Path = GATE, path: str | None = None) -> tuple[int, str]:
    """Run the gate from `repo` (a worker repository) with a step summary file; exit status and output."""
    done = subprocess.run(["bash", str(gate_script), "--step-summary", str(repo / "summary.md"), *args],
                          cwd=repo, env=_env(path), capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def _outcomes(repo: Path) -> dict[str, str]:
    document = json.loads((repo / "conformance-report" / "conformance.json").read_text())
    return {f"{c['id']} {c['profile']}": c["outcome"] for c in document["clauses"]}


def _write_baseline(path: Path) -> None:
    path.write_text('[[expected_failure]]\nclause = "TOOL-004"\nreason = "ints come back as floats (issue #1)"\n')


def test_reference_worker_passes_the_default_gate(tmp_path: Path) -> None:
    """Ensure a full default gate run (every clause, snakepit-0.13, level must) passes the reference worker."""
    status, output = _gate(tmp_path, "--worker-cmd", REFERENCE)
    assert status == 0, output[-3000:]
    assert "snakepit-contract gate: CONFORMANT (exit 0)" in output
    report = tmp_path / "conformance-report"
    assert {"conformance.json", "conformance.md", "conformance.html", "junit.xml", "badge.svg"} <= {
        p.name for p in report.iterdir()}
    assert json.loads((report / "conformance.json").read_text())["verdict"]["result"] == "conformant"
    assert "# snakepit-contract: ✅ conformant" in (tmp_path / "summary.md").read_text()


def test_a_broken_worker_fails_the_gate_with_its_clause(tmp_path: Path) -> None:
    """Ensure a mutant that breaks a MUST clause exits 1 and the summary names the clause and its repro."""
    status, output = _gate(tmp_path, "--worker-cmd", shlex.join([sys.executable, str(MUTANT)]),
                           "--", "--only", "TOOL-004", "-n", "0")
    assert status == 1, output[-3000:]
    assert _outcomes(tmp_path) == {"TOOL-004 snakepit-0.13": "FAIL"}
    assert "snakepit-contract gate: NOT CONFORMANT (exit 1)" in output
    assert "  FAIL     TOOL-004 [snakepit-0.13]  reproduce: snakepit-contract run --only TOOL-004" in output
    assert "not conformant" in (tmp_path / "summary.md").read_text()


def test_a_worker_that_cannot_start_is_no_verdict(tmp_path: Path) -> None:
    """Ensure a worker that dies before it is ready leaves the judged clauses unchecked: exit 2, not 0 or 1."""
    status, output = _gate(tmp_path, "--worker-cmd", DIES_AT_START, "--", "--only", "TOOL-004", "-n", "0")
    assert status == 2, output[-3000:]
    assert _outcomes(tmp_path) == {"TOOL-004 snakepit-0.13": "NOT-RUN"}  # PROC-001, not selected, judges the start
    assert "snakepit-contract gate: NO VERDICT (exit 2)" in output
    assert "  NOT-RUN  TOOL-004 [snakepit-0.13]" in output


def test_a_worker_command_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    """Ensure a worker command that is not executable exits 3 before anything runs, and no old report is summarised."""
    (tmp_path / "conformance-report").mkdir()
    (tmp_path / "conformance-report" / "conformance.json").write_text("{}")  # a previous run's leftover
    status, output = _gate(tmp_path, "--worker-cmd", str(tmp_path / "no-such-worker"))
    assert status == 3, output[-3000:]
    assert "is not an executable file" in output
    assert "snakepit-contract gate: USAGE ERROR (exit 3); no report was written" in output
    assert "No report was written" in (tmp_path / "summary.md").read_text()


def test_the_repository_baseline_turns_the_failure_into_xfail(tmp_path: Path) -> None:
    """Ensure snakepit-baseline.toml in the worker's repository is honoured: the listed FAIL is XFAIL, exit 0."""
    _write_baseline(tmp_path / "snakepit-baseline.toml")
    status, output = _gate(tmp_path, "--worker-cmd", shlex.join([sys.executable, str(MUTANT)]),
                           "--", "--only", "TOOL-004", "-n", "0")
    assert status == 0, output[-3000:]
    assert _outcomes(tmp_path) == {"TOOL-004 snakepit-0.13": "XFAIL"}
    assert "baseline: snakepit-baseline.toml" in output
    assert "1 expected failure(s) from the baseline (XFAIL)" in output


def test_a_stale_baseline_entry_fails_the_gate(tmp_path: Path) -> None:
    """Ensure a baseline entry for a clause the worker passes (XPASS) fails the gate, so baselines only shrink."""
    _write_baseline(tmp_path / "known.toml")
    status, output = _gate(tmp_path, "--worker-cmd", REFERENCE, "--baseline", "known.toml",
                           "--", "--only", "TOOL-004", "-n", "0")
    assert status == 1, output[-3000:]
    assert _outcomes(tmp_path) == {"TOOL-004 snakepit-0.13": "XPASS"}
    assert "  XPASS    TOOL-004 [snakepit-0.13]" in output


def test_gate_options_are_checked(tmp_path: Path) -> None:
    """Ensure the gate needs a worker and says so with the usage exit status."""
    status, output = _gate(tmp_path, "--profile", "snakepit-0.13")
    assert status == 3
    assert "give the worker: --worker-cmd or --worker-image (or --merge DIR)" in output


def test_without_a_kit_outside_a_checkout_the_gate_says_what_to_pass(tmp_path: Path) -> None:
    """Ensure a copied gate with no snakepit-contract on PATH and no --kit stops with exit 3 and names --kit."""
    copy = tmp_path / "ci"
    copy.mkdir()
    for name in ("gate.sh", "gate.py"):
        (copy / name).write_bytes((ROOT / "ci" / name).read_bytes())
    status, output = _gate(tmp_path, "--worker-cmd", "true", gate_script=copy / "gate.sh", path="/usr/bin:/bin")
    assert status == 3, output
    assert "pass --kit PATH-OR-REQUIREMENT" in output


def test_a_kit_installed_at_the_same_commit_is_reused(tmp_path: Path) -> None:
    """Ensure --kit CHECKOUT reuses the gate's venv when it holds that checkout's commit (nothing is reinstalled)."""
    kit = tmp_path / "kit"
    kit.mkdir()
    for command in (["init", "-q"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                                     "--allow-empty", "-m", "kit"]):
        subprocess.run(["git", "-C", str(kit), *command], check=True)
    commit = subprocess.run(["git", "-C", str(kit), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "snakepit-contract-gate.stamp").write_text(f"{kit.resolve()}@{commit}")
    cli = venv / "bin" / "snakepit-contract"
    cli.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m contract_tests.cli \"$@\"\n")
    cli.chmod(0o755)
    status, output = _gate(tmp_path, "--kit", str(kit), "--venv", str(venv), "--worker-cmd", REFERENCE,
                           "--", "--only", "TOOL-004", "-n", "0")
    assert status == 0, output[-3000:]
    assert f"is already installed in {venv}" in output
    assert f"gate: {cli} run " in output


def test_a_worker_image_is_gated_like_a_command(tmp_path: Path) -> None:
    """Ensure --worker-image reaches the suite: the reference worker's image passes (SKIP without engine or image)."""
    container = pytest.importorskip("contract_tests.driver.container", reason="the containers extra is missing")
    try:
        container.check_image(IMAGE)
    except container.ContainerEngineError as err:
        pytest.skip(f"no engine or no image: {err}")
    status, output = _gate(tmp_path, "--worker-image", IMAGE, "--", "--only", "TOOL-004,PROC-010", "-n", "0")
    assert status == 0, output[-3000:]
    assert _outcomes(tmp_path) == {"TOOL-004 snakepit-0.13": "PASS", "PROC-010 snakepit-0.13": "PASS"}
    assert f"worker:   {IMAGE} (image)" in output


@pytest.mark.parametrize(("target", "expected"), [
    (["--worker-cmd", "node index.js"], ["--worker-cmd", "node index.js"]),
    (["--worker-image", "example/worker:1"], ["--worker-image", "example/worker:1"]),
])
def test_the_worker_reaches_the_cli_unchanged(target: list[str], expected: list[str]) -> None:
    """Ensure a worker command or image, the profile, level and extra options reach `snakepit-contract run`."""
    args = gate._parser().parse_args([*target, "--profile", "all", "--level", "should",
                                      "--run-args", "--skip 'TOOL-*,RPC-*'", "--", "--only", "PROC-*"])
    argv = gate.run_argv(args, Path("/kit/snakepit-contract"), Path("known.toml"))
    assert argv == ["/kit/snakepit-contract", "run", "--profile", "all", "--level", "should",
                    "--report-dir", "conformance-report", *expected, "--baseline", "known.toml",
                    "--skip", "TOOL-*,RPC-*", "--only", "PROC-*"]


def test_reproduce_lines_name_the_cli_the_gate_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure a reproduce line stays runnable when the gate's CLI is not the `snakepit-contract` on PATH (the kit
    installed into the gate's own venv), and is left alone when it is."""
    cli = tmp_path / "gate venv" / "bin" / "snakepit-contract"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    repro = "snakepit-contract run --only TOOL-004 --profile snakepit-0.13 --worker-cmd 'node index.js'"
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert gate.reproducible(repro, cli) == f"'{cli}' run --only TOOL-004 --profile snakepit-0.13 --worker-cmd " \
                                            "'node index.js'"
    monkeypatch.setenv("PATH", str(cli.parent))
    assert gate.reproducible(repro, cli) == repro


def test_plan_prints_one_release_per_distinct_rule_set() -> None:
    """Ensure `gate.sh --plan RANGE` gives a CI job matrix (one release per rule set) without installing anything."""
    done = subprocess.run(["bash", str(GATE), "--plan", "0.9.0..0.13.0"], env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout) == ["0.9.0", "0.9.1", "0.12.0", "0.13.0"]
    bad = subprocess.run(["bash", str(GATE), "--plan", "0.99.0"], env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 3 and "known releases" in bad.stderr


def test_parallel_release_jobs_merge_into_one_matrix(tmp_path: Path) -> None:
    """Ensure per-release gate runs (the workflow's parallel jobs) merge through the gate into one matrix whose
    summary carries the headline, and that the gate passes --snakepit-version on to the CLI."""
    old_bridge = shlex.join([sys.executable, str(ROOT / "tests" / "data" / "pre_instance_flags_worker.py")])
    for release in ("0.9.1", "0.12.0"):
        status, output = _gate(tmp_path, "--worker-cmd", old_bridge, "--snakepit-version", release,
                               "--report-dir", f"runs/{release}", "--", "--only", "PROC-001", "-n", "0")
        assert status == (0 if release == "0.9.1" else 1), output[-2000:]
    status, output = _gate(tmp_path, "--merge", "runs", "--snakepit-version", "0.9.1..0.12.0",
                           "--report-dir", "matrix")
    assert status == 1, output[-2000:]
    assert "matrix:   conformant with Snakepit 0.9.1" in output
    assert "conformant with Snakepit 0.9.1" in (tmp_path / "summary.md").read_text()
    assert gate.main(["--merge", str(tmp_path / "nothing"), "--snakepit-version", "0.9.1"]) == 3
    assert gate.main(["--merge", str(tmp_path / "runs")]) == 3
