"""Meta-tests: the suite must FAIL each mutant worker on the clauses that mutant breaks, and only those.

A check that cannot fail certifies broken workers. Each entry of fixtures/mutants/catalogue.json is the
reference worker with one defect (kind worker), or the suite's emulated Elixir side with one defect (kind host,
a plugin loaded with `-p`, for the emulator's self-checks); the suite is run exactly as a user would
(`snakepit-contract run`) on its targets, a short smoke set and its declared blast radius, and

* (a) every target clause must come out FAIL (not skipped or errored) under every listed profile it applies to;
* (b) no MUST clause outside targets + blast radius may FAIL or TIMEOUT (else the suite blames the wrong clause).

Each result is recorded; when the last xdist worker finishes, the mutation score (caught/total per area) is
written to conformance-report/mutants/mutation-score.json (or $SNAKEPIT_MUTANT_REPORT_DIR). It is printed
in the terminal summary when fixtures/mutants/score.py is loaded as a plugin (`tox -e mutants`), or, without
xdist, by the last finalizer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract_tests import cli, errors

ROOT = Path(__file__).resolve().parent.parent
MUTANT_DIR = ROOT / "fixtures" / "mutants"
_spec = importlib.util.spec_from_file_location("mutant_score", MUTANT_DIR / "score.py")
assert _spec is not None and _spec.loader is not None
score: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score)

CATALOGUE: list[dict[str, Any]] = score.load_catalogue()["mutants"]
REPORT_DIR: Path = score.report_dir()
FAILED = {"FAIL", "TIMEOUT"}
# The tier takes minutes (tests/ alone: 30 s without it, 4.5 min with it on 2 cores): it runs in `tox -e mutants`
# (in tox's env_list, so CI runs it), which sets SNAKEPIT_MUTANTS=1, not in every default pytest run.
RUN_MUTANTS = os.environ.get("SNAKEPIT_MUTANTS", "") == "1"


def _clauses() -> dict[str, dict[str, Any]]:
    return {cid: {"level": c.level.value, "profiles": list(c.profiles)} for cid, c in cli.load_clauses().items()}


@pytest.fixture(scope="session")
def results_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """One folder per test run (shared by its xdist workers); the last worker to finish prints the score."""
    workerinput = getattr(request.config, "workerinput", None)
    run_id = os.environ.get(score.RUN_ENV) or (workerinput["testrunuid"] if workerinput else uuid.uuid4().hex)
    folder = REPORT_DIR / "results" / run_id
    score.prune(folder.parent)
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    worker = workerinput["workerid"] if workerinput else "main"
    (folder / f".done-{worker}").touch()
    if len(list(folder.glob(".done-*"))) < (workerinput["workercount"] if workerinput else 1):
        return
    try:
        os.close(os.open(folder / ".printed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    lines = score.write_score(folder, REPORT_DIR)
    if not request.config.pluginmanager.has_plugin("score"):
        score.announce([*lines, f"(written to {REPORT_DIR / score.SCORE_FILE})"])


def test_catalogue_targets_are_real_clauses() -> None:
    """Ensure every mutant names existing clauses and an existing script."""
    registry = cli.load_clauses()
    for mutant in CATALOGUE:
        assert score.script(mutant).is_file(), mutant["name"]
        assert set(mutant["targets"]) <= set(registry), mutant


@pytest.mark.skipif(not RUN_MUTANTS, reason="mutant tier: run `tox -e mutants` (or set SNAKEPIT_MUTANTS=1)")
@pytest.mark.parametrize("mutant", CATALOGUE, ids=[score.entry_id(m) for m in CATALOGUE])
def test_suite_fails_the_mutant_on_its_targets(mutant: dict[str, Any], tmp_path: Path, results_dir: Path) -> None:
    """Ensure the suite fails the mutant on each target clause, and on no MUST clause outside its blast radius."""
    clauses = _clauses()
    profiles_of = {cid: c["profiles"] for cid, c in clauses.items()}
    host = score.kind(mutant) == "host"
    env = {**os.environ, "MUTANT_STATE_DIR": str(tmp_path)}
    if host:
        # The reference worker, under a suite whose emulated Elixir side the plugin broke.
        target = ["--", "-p", mutant["name"]]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(MUTANT_DIR / "host"), env.get("PYTHONPATH")) if p)
    else:
        target = ["--worker-cmd", shlex.join(score.worker_command(mutant, sys.executable))]
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run",
         "--profile", ",".join(mutant["profiles"]), "--only", ",".join(score.only_globs(mutant, profiles_of)),
         "--level", "all", "--timeout-scale", str(mutant.get("timeout_scale", 1)), "-n", "0",
         "--report-dir", str(tmp_path), *target],
        # Mutants that must remember something across their own restarts keep it in MUTANT_STATE_DIR, not /tmp.
        capture_output=True, text=True, timeout=300, env=env,
    )
    report = tmp_path / "conformance.json"
    records = json.loads(report.read_text())["clauses"] if report.is_file() else []
    outcomes = {(r["id"], r["profile"]): r["outcome"] for r in records}
    expected = {(c, p) for c in mutant["targets"] for p in score.applies(profiles_of[c], mutant["profiles"])}
    missed = sorted(f"{c} {p}: {outcomes.get((c, p), 'not run')}"
                    for c, p in expected if outcomes.get((c, p)) != "FAIL")
    allowed = [*mutant["targets"], *mutant.get("blast_radius", [])]
    unexpected = sorted(
        f"{c} {p}: {outcome}" for (c, p), outcome in outcomes.items()
        if outcome in FAILED and clauses[c]["level"] == "MUST" and not score.matches(c, allowed)
    )
    (results_dir / f"{score.entry_id(mutant)}.json").write_text(json.dumps({
        "id": score.entry_id(mutant), "area": score.area(mutant), "caught": bool(expected) and not missed,
        "missed": missed, "unexpected": unexpected,
        "outcomes": {f"{c} {p}": o for (c, p), o in sorted(outcomes.items())},
    }, indent=2))
    evidence = run.stdout[-3000:] + run.stderr[-2000:]
    assert expected, f"no target of {mutant['name']} applies to {mutant['profiles']}"
    if host:
        # A broken emulator fails its self-checks, never the worker's verdict: only judged worker clauses count.
        worker_failed = any(r["judged"] and r["outcome"] in FAILED for r in records)
        assert not any(r["judged"] for r in records if r["subject"] == "host"), evidence
        assert run.returncode == (errors.EXIT_NOT_CONFORMANT if worker_failed else errors.EXIT_CONFORMANT), evidence
    else:
        assert run.returncode in (errors.EXIT_NOT_CONFORMANT, errors.EXIT_HARNESS), evidence
    assert not missed, f"targets not failed: {missed}\n{evidence}"
    assert not unexpected, f"MUST clauses failed outside the blast radius: {unexpected}\n{evidence}"


@pytest.mark.skipif(not RUN_MUTANTS, reason="mutant tier: run `tox -e mutants` (or set SNAKEPIT_MUTANTS=1)")
def test_checks_on_a_worker_the_heartbeat_monitor_stopped_are_errors(tmp_path: Path) -> None:
    """Ensure a worker stopped by Snakepit 0.13's heartbeat monitor FAILs the heartbeat clause only: later checks
    that used it come out ERROR, naming the monitor and where it fired, never FAIL of their own clause."""
    mutant = shlex.join([sys.executable, str(MUTANT_DIR / "heartbeat_session_invalid.py")])
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", "--worker-cmd", mutant, "--profile", "snakepit-0.13",
         "--only", "RPC-001,RPC-002,TOOL-00*", "--level", "all", "-n", "0", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    evidence = run.stdout[-3000:] + run.stderr[-2000:]
    records = json.loads((tmp_path / "conformance.json").read_text())["clauses"]
    outcomes = {r["id"]: r["outcome"] for r in records}
    assert outcomes["RPC-002"] == "FAIL", evidence
    assert [c for c, o in outcomes.items() if o in FAILED and c != "RPC-002"] == [], evidence
    stopped = [r for r in records if r["outcome"] == "ERROR"
               and re.match(r"worker pid \d+ stopped by the heartbeat monitor at [A-Z]+-\d{3} \[snakepit-0.13\] "
                            r"\(Heartbeat answered session_valid=false\)", r["reason"])]
    assert stopped, evidence
    assert run.returncode == errors.EXIT_NOT_CONFORMANT, evidence

