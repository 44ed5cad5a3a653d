"""Self-tests of the snakepit-contract command line: listing, dry runs, explain, runs and their exit statuses.

Runs that start workers go through a subprocess, exactly as a user types
them, so their worker cleanup and signal handling cannot touch this process.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract_tests import cli, errors, report
from contract_tests.contract.clause import MUST, SHOULD

MUTANT = Path(__file__).resolve().parent.parent / "fixtures" / "mutants" / "ints_as_floats.py"
CLI = [sys.executable, "-m", "contract_tests.cli"]


def _run(*args: str, report_dir: Path) -> tuple[int, str, dict[str, Any]]:
    """`snakepit-contract run ARGS -n 0 --report-dir DIR`: exit status, output, and conformance.json."""
    done = subprocess.run([*CLI, "run", *args, "-n", "0", "--report-dir", str(report_dir)],
                          capture_output=True, text=True, timeout=300)
    path = report_dir / "conformance.json"
    return done.returncode, done.stdout + done.stderr, json.loads(path.read_text()) if path.exists() else {}


def _outcomes(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["id"], c["profile"]): c["outcome"] for c in document["clauses"]}


def test_list_names_every_clause_without_a_worker() -> None:
    """Ensure `list` prints id, level, profiles and requirement, plus counts per area."""
    out = io.StringIO()
    assert cli.main(["list"], out=out) == errors.EXIT_CONFORMANT
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


def test_dry_run_lists_what_would_be_judged_with_counts() -> None:
    """Ensure `run --list` starts no worker and lists each clause-profile pair, judged or warning, with totals."""
    out = io.StringIO()
    assert cli.main(["run", "--list", "--only", "PROC-00?", "--skip", "PROC-003", "--profile", "all"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert re.match(r"^PROC-002\s+SHOULD\s+snakepit-0.6\s+warning\s+The worker SHOULD", lines[2])
    assert not any(line.startswith("PROC-003") for line in lines)
    chosen = [c for cid, c in cli.load_clauses().items() if re.fullmatch(r"PROC-00[0-9]", cid) and cid != "PROC-003"]
    pairs = sum(len(c.profiles) for c in chosen)
    judged = sum(len(c.profiles) for c in chosen if c.level is MUST)
    assert len(lines) == pairs + 1 and sum(" judged " in line for line in lines[:-1]) == judged
    assert re.match(rf"^Would run {pairs} clause-profile checks of {len(chosen)} clauses \(PROC \d+ MUST/\d+ SHOULD\); "
                    rf"{judged} judged at level must; \d+ not selected, \d+ not applicable to a profile$", lines[-1])


def test_explain_prints_requirement_checks_and_repro() -> None:
    """Ensure `explain` gives the requirement, what Snakepit does with source links, the check's source, repro."""
    out = io.StringIO()
    assert cli.main(["explain", "proc-011", "--worker-cmd", "./my-worker --fast"], out=out) == 0
    text = out.getvalue()
    assert text.startswith("PROC-011  MUST  (PROC: Process contract)\nRequirement: On SIGTERM during a running call")
    check = "contract_tests.clauses.test_process.test_sigterm_during_call_exits_within_grace"
    assert f"  {check}  (clauses/test_process.py:" in text and "needs contract tools: contract.sleep" in text
    assert "    | def test_sigterm_during_call" in text
    assert "  shutdown-grace: Stopping a worker: SIGTERM, grace period, SIGKILL  (docs/snakepit/shutdown-grace.md)\n" \
        in text
    assert "    Snakepit 0.8.5 and later: The grace period is 6 s" in text
    assert ("      v0.6.0 lib/snakepit/grpc_worker.ex:554-580  "
            "https://github.com/nshkrdotcom/snakepit/blob/v0.6.0/lib/snakepit/grpc_worker.ex#L554-L580") in text
    assert "  snakepit-contract run --only PROC-011 --profile snakepit-0.13 --worker-cmd './my-worker --fast'" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "--profile", "snakepit-9"], "unknown Snakepit release 'snakepit-9'"),
        (["frobnicate"], ""),
        ([], ""),
        (["run", "--worker-cmd", "w", "--worker-address", "127.0.0.1:1"], ""),
        (["run", "--only", "NOPE-*"], "--only 'NOPE-*' matches no clause"),
        (["run", "--level", "strict"], ""),
        (["explain", "PROC-999"], "no clause 'PROC-999'"),
    ],
)
def test_usage_errors_exit_3(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Ensure bad command lines exit with the usage code and say why, before any worker starts."""
    assert cli.main(argv, out=io.StringIO()) == errors.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_bad_baseline_is_a_usage_error(tmp_path: Path) -> None:
    """Ensure a baseline that skips a clause stops the run with the usage code and the reason."""
    baseline = tmp_path / "baseline.toml"
    baseline.write_text('[[expected_failure]]\nclause = "PROC-010"\nreason = "x"\nskip = true\n')
    code, output, document = _run("--baseline", str(baseline), "--only", "RPC-001", report_dir=tmp_path / "r")
    assert (code, document) == (errors.EXIT_USAGE, {}) and "no clause can be skipped" in output


def test_reference_worker_is_conformant_with_all_five_outputs_and_progress(tmp_path: Path) -> None:
    """Ensure a run against the reference worker exits 0, shows a line per check, and writes the five outputs."""
    code, output, document = _run("--only", "RPC-001,TOOL-008", "--profile", "all", report_dir=tmp_path)
    assert code == errors.EXIT_CONFORMANT, output[-3000:]
    assert _outcomes(document) == {(c, p): "PASS" for c in ("RPC-001", "TOOL-008")
                                   for p in ("snakepit-0.6", "snakepit-0.13")}
    assert {p.name for p in tmp_path.iterdir()} == set(report.OUTPUTS)
    assert (tmp_path / "junit.xml").read_text().count("<testcase ") == 4
    assert re.search(r"^\[1/4\] (RPC-001|TOOL-008) +snakepit-0\.1?[36] +PASS", output, re.MULTILINE), output
    assert output.rstrip().endswith(f"snakepit-contract: CONFORMANT (exit 0); report in {tmp_path}")


def test_broken_worker_fails_naming_the_clause_and_the_printed_command_reproduces_it(tmp_path: Path) -> None:
    """Ensure a mutant exits 1, its failing clause is named with a repro line, and that line fails alone."""
    worker = shlex.join([sys.executable, str(MUTANT)])
    code, output, document = _run("--worker-cmd", worker, "--only", "TOOL-00[45]", report_dir=tmp_path / "all")
    assert code == errors.EXIT_NOT_CONFORMANT, output[-3000:]
    assert _outcomes(document) == {("TOOL-004", "snakepit-0.13"): "FAIL", ("TOOL-005", "snakepit-0.13"): "PASS"}
    assert "FAIL     TOOL-004 [snakepit-0.13] MUST: Integers MUST come back as integers" in output
    [repro] = re.findall(r"reproduce: (snakepit-contract run .*)$", output, re.MULTILINE)
    assert repro == document["clauses"][0]["repro"]
    code, output, document = _run(*shlex.split(repro)[2:], report_dir=tmp_path / "one")
    assert code == errors.EXIT_NOT_CONFORMANT and _outcomes(document) == {("TOOL-004", "snakepit-0.13"): "FAIL"}


def test_baseline_entry_makes_it_xfail_and_a_stale_entry_fails_the_run(tmp_path: Path) -> None:
    """Ensure a listed failure turns into XFAIL (exit 0) and a listed clause that passes fails the run (exit 1)."""
    entry = '[[expected_failure]]\nclause = "{}"\nreason = "floats, issue #12"\nexpires = 2999-01-01\n'
    baseline, stale = tmp_path / "baseline.toml", tmp_path / "stale.toml"
    baseline.write_text(entry.format("TOOL-004"))
    stale.write_text(entry.format("TOOL-004") + entry.format("TOOL-005"))
    worker = shlex.join([sys.executable, str(MUTANT)])
    code, output, document = _run("--worker-cmd", worker, "--only", "TOOL-00[45]", "--baseline", str(baseline),
                                  report_dir=tmp_path / "xfail")
    assert code == errors.EXIT_CONFORMANT, output[-3000:]
    assert _outcomes(document)["TOOL-004", "snakepit-0.13"] == "XFAIL"
    code, output, document = _run("--worker-cmd", worker, "--only", "TOOL-00[45]", "--baseline", str(stale),
                                  report_dir=tmp_path / "stale")
    assert code == errors.EXIT_NOT_CONFORMANT
    assert _outcomes(document)["TOOL-005", "snakepit-0.13"] == "XPASS" and "stale baseline entry" in output


@pytest.fixture
def running_worker() -> Iterator[str]:
    """A reference worker started by hand (0.6 style), as attach mode expects to find one; its address."""
    proc = subprocess.Popen([sys.executable, "-m", "reference_worker", "--port", "0", "--elixir-address",
                             "127.0.0.1:1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        yield f"127.0.0.1:{line.strip().removeprefix('GRPC_READY:')}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_attach_mode_runs_rpc_clauses_and_marks_process_clauses_not_run(running_worker: str, tmp_path: Path) -> None:
    """Ensure --worker-address checks over gRPC and reports process clauses NOT-RUN, so there is no verdict."""
    code, output, document = _run("--worker-address", running_worker, "--profile", "snakepit-0.6",
                                  "--only", "RPC-001,TOOL-004,PROC-010", report_dir=tmp_path)
    assert code == errors.EXIT_HARNESS, output[-3000:]
    assert _outcomes(document) == {("PROC-010", "snakepit-0.6"): "NOT-RUN", ("RPC-001", "snakepit-0.6"): "PASS",
                                   ("TOOL-004", "snakepit-0.6"): "PASS"}
    assert "attached to a running worker" in document["clauses"][0]["reason"]
    assert document["worker"] == {"kind": "address", "target": running_worker, "contract_tools_note": "",
                                  "contract_tools": document["worker"]["contract_tools"]}
    assert "--worker-address " + running_worker in document["clauses"][1]["repro"]


def test_interrupted_run_is_partial_and_never_conformant(tmp_path: Path) -> None:
    """Ensure a run stopped by SIGTERM (as CI stops jobs) exits 2 with a partial report, even though all passed."""
    proc = subprocess.Popen([*CLI, "run", "--only", "PROC-010,PROC-012", "-n", "0", "--report-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[1/2]"):
            break
    proc.send_signal(signal.SIGTERM)  # PROC-012 watches the worker for 3.5 s: well inside it
    output = proc.stdout.read()
    assert proc.wait(60) == errors.EXIT_HARNESS, output[-3000:]
    document = json.loads((tmp_path / "conformance.json").read_text())
    assert document["complete"] is False and document["verdict"]["result"] == "no_verdict"
    assert _outcomes(document) == {("PROC-010", "snakepit-0.13"): "PASS", ("PROC-012", "snakepit-0.13"): "NOT-RUN"}


def test_a_hung_check_is_a_timeout_with_a_thread_dump(pytester: pytest.Pytester) -> None:
    """Ensure a check past its deadline is stopped and reported TIMEOUT, with the stacks it was stuck in."""
    pytester.makepyfile(test_hang="""
        import time
        from contract_tests.contract.clause import clause

        @clause("RPC-001")
        def test_hangs(profile):
            time.sleep(30)
    """)
    result = pytester.runpytest_subprocess("--only", "RPC-001", "--clause-timeout", "0.5", "--timeout-scale", "2",
                                           "--report-dir", "out", "-p", "no:cacheprovider")
    [clause] = json.loads((pytester.path / "out" / "conformance.json").read_text())["clauses"]
    assert clause["outcome"] == "TIMEOUT" and clause["reason"].startswith("no result within 1 s"), result.stdout.str()
    assert clause["duration_s"] < 10
    [dump] = [e["text"] for e in clause["evidence"] if e["title"] == "thread dump at the deadline"]
    assert "--- thread MainThread ---" in dump and "time.sleep(30)" in dump


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
    code, _, document = _run("--worker-cmd", "/nonexistent/worker --flag", report_dir=tmp_path)
    assert (code, document) == (errors.EXIT_USAGE, {})


def test_a_module_skipped_at_collection_does_not_break_the_tally(pytester: pytest.Pytester) -> None:
    """A module that skips itself at import (importorskip of a missing extra) reaches the tally, under xdist, as a
    CollectReport without user properties: the run must still end with its counts, not an INTERNALERROR."""
    pytester.makepyfile(test_needs_extra="""
        import pytest
        pytest.importorskip("a_module_that_is_not_installed", reason="the extra is missing")
    """)
    result = pytester.runpytest_subprocess("-n", "1", "-rs")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*1 skipped*"])


def test_run_groups_shared_worker_checks_only_when_parallel() -> None:
    """Ensure that `run` asks xdist for loadgroup with processes (not with -n 0), by default 4 per core, 2 to 8;
    the group suffix xdist puts on a grouped test's id never reaches the report."""
    from contract_tests.judging.verdicts import _without_group

    parallel = cli._pytest_argv(cli._parser().parse_args(["run"]))
    assert parallel[parallel.index("-n") + 1] == str(cli.default_processes())
    assert 2 <= cli.default_processes() <= 8 and "loadgroup" in parallel
    assert "loadgroup" not in cli._pytest_argv(cli._parser().parse_args(["run", "-n", "0"]))
    assert _without_group("clauses/test_tools.py::test_x[snakepit-0.13]@test_tools-snakepit-0.13") == \
        "clauses/test_tools.py::test_x[snakepit-0.13]"
    assert _without_group("clauses/test_tools.py::test_x[a@b]") == "clauses/test_tools.py::test_x[a@b]"


def test_parallel_run_shares_workers_and_scenario_runs(tmp_path: Path) -> None:
    """Ensure that, on 4 processes, the checks of a module's shared worker start it once, and the three clauses one
    scenario checks share one run of it (one pool of 2), while every check is still judged: counted by a worker
    command that notes which check launched it (pytest sets PYTEST_CURRENT_TEST, and workers inherit it)."""
    launches = tmp_path / "launches"
    wrapper = tmp_path / "worker.sh"
    wrapper.write_text(f'#!/bin/sh\necho "$PYTEST_CURRENT_TEST" >> {launches}\n'
                       f'exec {shlex.quote(sys.executable)} -m reference_worker "$@"\n')
    wrapper.chmod(0o755)
    done = subprocess.run([*CLI, "run", "--profile", "snakepit-0.13", "-n", "4", "--worker-cmd", str(wrapper),
                           "--only", "CLEANUP-00[123],TOOL-00[1-6]", "--report-dir", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == errors.EXIT_CONFORMANT, done.stdout + done.stderr
    outcomes = _outcomes(json.loads((tmp_path / "report" / "conformance.json").read_text()))
    assert len(outcomes) == 9 and set(outcomes.values()) == {"PASS"}, outcomes
    lines = launches.read_text().splitlines()
    # The scenario's pool of 2 starts in a check's body (the catalogue's worker may start in a cleanup check's set-up,
    # on whichever process asks first); the tools checks' shared worker starts once, in a set-up.
    pools = [line for line in lines if line.startswith("clauses/test_cleanup.py") and line.endswith("(call)")]
    tools = [line for line in lines if line.startswith("clauses/test_tools.py")]
    assert len(pools) == 2 and len(tools) == 1, lines
