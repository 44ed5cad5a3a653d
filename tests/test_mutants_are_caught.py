"""Meta-tests: the suite must FAIL each mutant worker on the clauses that mutant breaks.

A check that cannot fail certifies broken workers. Each mutant in
fixtures/mutants/catalogue.json is the reference worker with one defect; the
suite is run against it exactly as a user would (`snakepit-contract run`), and
every target clause must come out as failed, not skipped or errored.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contract_tests import cli

MUTANT_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "mutants"
CATALOGUE: list[dict[str, Any]] = json.loads((MUTANT_DIR / "catalogue.json").read_text())["mutants"]


def test_catalogue_targets_are_real_clauses() -> None:
    """Ensure every mutant names existing clauses and an existing script."""
    registry = cli.load_clauses()
    for mutant in CATALOGUE:
        assert (MUTANT_DIR / f"{mutant['name']}.py").is_file(), mutant["name"]
        assert set(mutant["targets"]) <= set(registry), mutant


@pytest.mark.parametrize(
    "mutant", CATALOGUE, ids=[f"{m['name']}-{'+'.join(m['profiles'])}" for m in CATALOGUE]
)
def test_suite_fails_the_mutant_on_its_targets(mutant: dict[str, Any], tmp_path: Path) -> None:
    """Ensure running the suite against the mutant reports each target clause as failed."""
    command = shlex.join([sys.executable, str(MUTANT_DIR / f"{mutant['name']}.py")])
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", "--worker-cmd", command,
         "--profile", ",".join(mutant["profiles"]), "--only", ",".join(mutant["targets"]),
         "--timeout-scale", str(mutant.get("timeout_scale", 1)), "-n", "0", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == cli.EXIT_NOT_CONFORMANT, run.stdout[-3000:] + run.stderr[-2000:]
    results = json.loads((tmp_path / "conformance.json").read_text())["clauses"]
    outcomes = {(r["id"], r["profile"]): r["outcome"] for r in results}
    expected = {(c, p): "FAIL" for c in mutant["targets"] for p in mutant["profiles"]}
    assert outcomes == expected, run.stdout[-3000:]
