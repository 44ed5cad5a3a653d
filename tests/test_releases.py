"""Self-tests of the release rules: the table, its boundaries, and that only profiles.py reads versions."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from contract_tests.contract import profiles
from contract_tests.contract.clause import REGISTRY
from contract_tests.contract.profiles import RULE_NAMES, RULES, TABLE, Readiness, get_profile, select_releases
from contract_tests.contract.snakepit_sources import load_entries
from contract_tests.driver.launcher import WorkerSpec
from contract_tests.report.json_report import load_schema

REPO = Path(__file__).resolve().parents[1]
# The release tags v0.6.0 … v0.13.0 of nshkrdotcom/snakepit (git tag, 38 of them).
TAGS = ([f"0.6.{n}" for n in range(12)] + [f"0.7.{n}" for n in range(8)] + [f"0.8.{n}" for n in range(10)]
        + ["0.9.0", "0.9.1", "0.10.0", "0.10.1", "0.11.0", "0.11.1", "0.12.0", "0.13.0"])

# (rule, last release before the change, first release with it, value before, value from then on), each checked
# in the tagged sources (the proof of each row in releases.toml names the file and lines).
BOUNDARIES = [
    ("initializes_worker_session", "0.6.0", "0.6.1", False, True),
    ("heartbeat", "0.6.2", "0.6.3", False, True),
    ("fixed_session_id", "0.6.3", "0.6.4", "default_session", None),
    ("delivers_final_chunk", "0.6.3", "0.6.4", False, True),
    ("session_quota", "0.6.5", "0.6.6", False, True),
    ("validates_tool_names", "0.6.5", "0.6.6", False, True),
    ("strict_elixir_parameters", "0.6.5", "0.6.6", False, True),
    ("opens_telemetry_stream", "0.6.6", "0.6.7", False, True),
    ("binary_result", "0.6.10", "0.6.11", False, True),
    ("sets_python_env", "0.6.10", "0.6.11", False, True),
    ("correlation_header", "0.6.11", "0.7.0", False, True),
    ("session_programs", "0.7.1", "0.7.2", True, False),
    ("json_errors", "0.7.3", "0.7.4", False, True),
    ("sets_process_group_env", "0.7.5", "0.7.6", False, True),
    ("readiness", "0.8.0", "0.8.1", Readiness.READY_LINE, Readiness.READY_FILE),
    ("readiness_timer_resets_on_output", "0.8.0", "0.8.1", True, False),
    ("sets_log_level_env", "0.8.0", "0.8.1", False, True),
    ("streaming_forwarding", "0.8.3", "0.8.4", False, True),
    ("shutdown_grace_s", "0.8.4", "0.8.5", 2.0, 6.0),
    ("queue_timeout_s", "0.8.7", "0.8.8", 5.0, 10.0),
    ("non_ok_execute_status_crashes", "0.9.0", "0.9.1", True, False),
    ("reconcile_interval_s", "0.9.0", "0.9.1", float("inf"), 1.0),
    ("sends_instance_flags", "0.9.1", "0.10.0", False, True),
    ("elixir_host", "0.9.1", "0.10.0", "localhost", "127.0.0.1"),
    ("strict_affinity", "0.9.1", "0.10.0", False, True),
    ("telemetry_open_timeout_s", "0.12.0", "0.13.0", float("inf"), 5.0),
    ("health_check_timeout_s", "0.12.0", "0.13.0", 30.0, 5.0),
]


def test_the_table_lists_exactly_the_release_tags() -> None:
    """Ensure releases.toml lists every tag v0.6.0 … v0.13.0 once, oldest first, and the aliases are 0.6.0/0.13.0."""
    assert list(TABLE.releases) == TAGS and len(TAGS) == 38
    assert dict(TABLE.aliases) == {"snakepit-0.6": "0.6.0", "snakepit-0.13": "0.13.0"}
    assert set(TABLE.rules) == set(RULE_NAMES)


def test_every_rule_row_names_its_entries_and_its_proof() -> None:
    """Ensure each rule rests on docs/snakepit entries that exist and each row says where its value starts."""
    entries = load_entries()
    for rule in TABLE.rules.values():
        assert rule.rests_on and set(rule.rests_on) <= set(entries), (rule.name, set(rule.rests_on) - set(entries))
        for row in rule.rows:
            assert re.match(r"v0\.\d+\.\d+", row.proof), (rule.name, row)


@pytest.mark.parametrize(("rule", "before", "after", "old", "new"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_each_boundary_gives_the_right_value_on_both_sides(rule: str, before: str, after: str, old: object,
                                                            new: object) -> None:
    """Ensure a rule changes exactly between the two releases the sources show, and nowhere else."""
    values = [getattr(RULES[r], rule) for r in TAGS]
    assert getattr(get_profile(before), rule) == old and getattr(get_profile(after), rule) == new
    changes = [TAGS[i] for i in range(1, len(TAGS)) if values[i] != values[i - 1]]
    assert after in changes


def test_every_change_in_the_table_is_a_checked_boundary() -> None:
    """Ensure no rule changes at a release the boundary list above does not name (a typo in a `since`)."""
    checked = {(rule, after) for rule, _, after, _, _ in BOUNDARIES}
    for rule in RULE_NAMES:
        values = [getattr(RULES[r], rule) for r in TAGS]
        for i in range(1, len(TAGS)):
            if values[i] != values[i - 1]:
                assert (rule, TAGS[i]) in checked, (rule, TAGS[i])


def test_aliases_and_names_resolve_to_one_rules_object() -> None:
    """Ensure 0.13.0, v0.13.0, snakepit-0.13 and the default are the same immutable object."""
    assert get_profile("0.13.0") is get_profile("v0.13.0") is get_profile("snakepit-0.13") is profiles.SNAKEPIT_0_13
    assert get_profile("snakepit-0.8.1").snakepit_version == "0.8.1" and get_profile("0.8.1").name == "snakepit-0.8.1"
    assert profiles.DEFAULT_PROFILE == "snakepit-0.13"
    assert select_releases("all") == (profiles.SNAKEPIT_0_6, profiles.SNAKEPIT_0_13)
    assert [p.snakepit_version for p in select_releases("0.9.1..0.10.1")] == ["0.9.1", "0.10.0", "0.10.1"]
    with pytest.raises(ValueError, match=r"known releases: 0\.6\.0, 0\.6\.1"):
        get_profile("0.14.0")
    with pytest.raises(ValueError, match="empty release range"):
        select_releases("0.13.0..0.6.0")


def test_clause_applicability_follows_the_rules() -> None:
    """Ensure clauses apply per rule: the ready file from 0.8.1, heartbeats from 0.6.3, JSON errors from 0.7.4."""
    assert REGISTRY["PROC-004"].applies_to(get_profile("0.8.1"))
    assert not REGISTRY["PROC-004"].applies_to(get_profile("0.8.0"))
    assert REGISTRY["PROC-005"].applies_to(get_profile("0.8.0"))
    assert not REGISTRY["RPC-002"].applies_to(get_profile("0.6.2"))
    assert REGISTRY["RPC-002"].applies_to(get_profile("0.6.3"))
    assert REGISTRY["TOOL-011"].applies_to(get_profile("0.7.3"))
    assert REGISTRY["TOOL-010"].applies_to(get_profile("0.7.4"))


def test_release_0_8_1_launches_with_the_ready_file_and_without_instance_flags(tmp_path: Path) -> None:
    """Ensure Snakepit 0.8.1's launch: SNAKEPIT_READY_FILE set, no --snakepit-instance-name (it appends none)."""
    spec = WorkerSpec(command=(sys.executable, "-m", "reference_worker"), profile=get_profile("0.8.1"),
                      elixir_address="localhost:50051")
    argv, env = spec.build_argv(), spec.build_env(tmp_path / "ready")
    assert "--snakepit-instance-name" not in argv and "--snakepit-run-id" in argv
    assert env["SNAKEPIT_READY_FILE"] == str(tmp_path / "ready")
    newest = WorkerSpec(command=spec.command, profile=get_profile("0.10.0"), elixir_address="127.0.0.1:1")
    assert "--snakepit-instance-name" in newest.build_argv()


def test_strict_argv_worker_starts_at_0_8_1_but_proc_002_still_judges_it(tmp_path: Path) -> None:
    """Ensure a worker whose argparse rejects unknown flags (as Snakepit 0.8.1's own bridge) passes PROC-001 at
    0.8.1, where no unknown flag is passed, and still fails the SHOULD PROC-002, which passes one on purpose."""
    worker = shlex.join([sys.executable, str(REPO / "fixtures" / "mutants" / "rejects_unknown_flags.py")])
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", "--snakepit-version", "0.8.1", "--only",
         "PROC-001,PROC-002", "--level", "should", "-n", "0", "--report-dir", str(tmp_path), "--worker-cmd", worker],
        capture_output=True, text=True, timeout=300)
    document = json.loads((tmp_path / "conformance.json").read_text())
    jsonschema.validate(document, load_schema())
    assert document["releases"] == {"snakepit-0.8.1": "0.8.1"}
    records = document["clauses"]
    outcomes = {(r["id"], r["profile"]): r["outcome"] for r in records}
    assert outcomes == {("PROC-001", "snakepit-0.8.1"): "PASS", ("PROC-002", "snakepit-0.8.1"): "FAIL"}, run.stdout
    assert run.returncode == 1


def test_no_module_outside_the_rules_table_parses_a_version() -> None:
    """Ensure versions are read in one place: no other module compares version tuples or splits a version."""
    pattern = re.compile(r"snakepit_version\s*[<>]|_version_tuple|version\.split\(|re\.findall\(r\"\\d\+\"|"
                         r"\(0, (6|10|13)(, \d+)?\)|\(\\d\+\)\\\.\(\\d\+\)\\\.\(\\d\+\)")
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / "contract_tests").rglob("*.py")) + sorted((REPO / "ci").rglob("*.py"))
        + sorted((REPO / "tests").glob("*.py"))
        if path.name not in ("profiles.py", "test_releases.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


# Boundaries the docs/snakepit entries do not split an era at yet (the entry covers the rule's first value only).
ENTRY_GAPS = {("sets_log_level_env", "0.8.1"), ("queue_timeout_s", "0.8.8"), ("reconcile_interval_s", "0.9.1"),
              ("health_check_timeout_s", "0.13.0")}


def test_each_boundary_starts_an_era_of_an_entry_it_rests_on() -> None:
    """Ensure the rules table and docs/snakepit agree on where behaviour changes: each boundary is the start of an
    era of one of the entries the rule rests on (the listed gaps excepted, and each gap is still one)."""
    entries = load_entries()
    missing = set()
    for name, rule in TABLE.rules.items():
        for row in rule.rows[1:]:
            if row.since not in {str(era.since) for anchor in rule.rests_on for era in entries[anchor].eras}:
                missing.add((name, row.since))
    assert missing == ENTRY_GAPS
