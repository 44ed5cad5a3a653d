"""Correct variants: workers that differ from the reference worker in a way the contract allows must PASS.

The mirror image of the mutants: a verdict must not depend on timing or on one server's habits for a correct
worker. Each fixtures/variants/<name>.py is the reference worker with one allowed difference, run through the
suite exactly as a user would, on the clauses that difference touches.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VARIANT_DIR = ROOT / "fixtures" / "variants"
# variant -> (profile, clauses that must PASS)
VARIANTS = {
    "telemetry_headers_then_unimplemented": ("snakepit-0.13", ["RPC-009"]),
    "stream_stops_soon_after_cancel": ("snakepit-0.13", ["STREAM-011"]),
    "sleep_stops_soon_after_cancel": ("snakepit-0.6", ["RPC-011"]),
    "exits_zero_when_orphaned": ("snakepit-0.13", ["PROC-014"]),
    "heartbeat_answers_in_three_seconds": ("snakepit-0.13", ["RPC-003"]),
    "no_binary_result_at_06": ("snakepit-0.6", ["TOOL-021"]),
    "correlation_in_header_only": ("snakepit-0.13", ["CALLBACK-004"]),
    "helper_started_at_first_call_stopped": ("snakepit-0.6", ["CLEANUP-009"]),
    "results_ascii_escaped": ("snakepit-0.13", ["TOOL-003", "TOOL-004", "TOOL-005", "TOOL-006", "TOOL-007",
                                                "TOOL-021", "STREAM-004", "STREAM-008"]),
}


def test_every_variant_script_is_listed() -> None:
    """Ensure no variant script is left out of the table (each must be run)."""
    assert {p.stem for p in VARIANT_DIR.glob("*.py")} == set(VARIANTS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_correct_variant_passes(name: str, tmp_path: Path) -> None:
    """Ensure the suite passes an allowed difference on the clauses it touches."""
    profile, clauses = VARIANTS[name]
    worker = shlex.join([sys.executable, str(VARIANT_DIR / f"{name}.py")])
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", "--worker-cmd", worker, "--profile", profile,
         "--only", ",".join(clauses), "--level", "all", "-n", "0", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    records = json.loads((tmp_path / "conformance.json").read_text())["clauses"]
    outcomes = {r["id"]: r["outcome"] for r in records}
    assert outcomes == dict.fromkeys(clauses, "PASS"), run.stdout[-3000:] + run.stderr[-2000:]
