"""Self-tests of the scenario files: schema, naming, and ties to the clause catalogue."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contract_tests.contract.clause import REGISTRY
from contract_tests.contract.profiles import RULES, SNAKEPIT_0_13, Profile, check_condition, get_profile
from contract_tests.driver.launcher import WorkerSpec
from contract_tests.elixir.scenarios import (
    SCENARIO_DIR,
    ScenarioRunner,
    load_scenario,
    scenario_applies,
    scenario_names,
)
from contract_tests.errors import ContractViolation

SCHEMA = json.loads((SCENARIO_DIR / "scenario.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_schema_is_valid_json_schema() -> None:
    """Ensure the schema itself is a valid draft 2020-12 schema (other runners load it too)."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_matches_schema_and_catalogue(name: str) -> None:
    """Ensure each scenario validates, is named after its path, and names real clauses of the releases it runs at."""
    scenario = load_scenario(name)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(scenario)]
    assert not errors, errors
    assert scenario["name"] == name
    tagged = {s["clause"] for s in scenario["steps"] if "clause" in s}
    assert tagged == set(scenario["clauses"]), "each listed clause is judged by at least one tagged step"
    cited = set(scenario["clauses"]) | tagged
    assert cited <= set(REGISTRY), cited - set(REGISTRY)
    check_condition(scenario["applies"])
    for condition in (c for s in scenario["steps"] for c in s.get("expect_when", {})):
        check_condition(condition)
    for clause_id, release in itertools.product(cited, RULES.values()):
        if scenario_applies(scenario, release):
            assert REGISTRY[clause_id].applies_to(release), f"{clause_id} does not apply at {release.snakepit_version}"
    ids = [s["id"] for s in scenario["steps"] if "id" in s]
    assert len(ids) == len(set(ids)), "step ids must be unique"
    referenced = {s.get("of") for s in scenario["steps"]} | {
        s.get("expect", {}).get(k) for s in scenario["steps"] for k in ("same_worker_as", "different_worker_than")
    }
    assert referenced - {None} <= set(ids), "steps refer to ids defined in the scenario"


def _with_step(step: dict[str, Any]) -> dict[str, Any]:
    scenario = load_scenario("session/create-is-idempotent")
    return {**scenario, "steps": [step]}


@pytest.mark.parametrize(
    "step",
    [
        {"op": "teleport"},
        {"op": "create_session"},
        {"op": "execute", "tool": "contract.echo", "expect": {"okay": True}},
        {"op": "execute_async", "tool": "contract.sleep"},
        {"op": "advance_clock", "seconds": -1},
        {"op": "execute", "tool": "contract.echo", "expect": {"pool_error": "on_fire"}},
        {"op": "execute", "tool": "contract.echo", "expect_when": {"heartbeat": {"okay": True}}},
        {"op": "wait_idle", "expect": {"ok": True}},
        {"op": "execute", "tool": "contract.echo", "expect": {"pool_error": ["internal"]}},
        {"op": "store_worker_session", "session": "s"},
    ],
    ids=["unknown-op", "missing-session", "unknown-expectation", "async-without-id", "negative-clock",
         "bad-pool-error", "unknown-expectation-when", "wait-idle-expects-nothing",
         "single-pool-error-list", "record-without-worker"],
)
def test_schema_rejects_malformed_steps(step: dict[str, Any]) -> None:
    """Ensure authoring mistakes are caught by the schema, not discovered at run time."""
    assert list(VALIDATOR.iter_errors(_with_step(step)))


def test_schema_accepts_per_profile_expectations_and_wait_idle() -> None:
    """Ensure the vocabulary the scenarios use for version differences validates."""
    steps = [{"op": "wait_idle"},
             {"op": "execute", "tool": "contract.whoami", "expect": {"pool_error": "worker_crashed"},
              "expect_when": {"not non_ok_execute_status_crashes": {"pool_error": "internal"}}}]
    assert not list(VALIDATOR.iter_errors({**load_scenario("session/create-is-idempotent"), "steps": steps}))


FORWARDING_WORKER = (sys.executable, str(Path(__file__).parent / "data" / "forwarding_worker.py"))


def _run(scenario: dict[str, Any], profile: Profile,
         command: tuple[str, ...] = (sys.executable, "-m", "reference_worker")) -> dict[str, list[ContractViolation]]:
    """Run a scenario through the pool emulator with the reference worker (or `command`)."""
    runner: ScenarioRunner | None = None

    def make_spec() -> WorkerSpec:
        assert runner is not None
        return WorkerSpec(command=command, profile=profile, elixir_address=runner.host.elixir_address_for_worker)

    runner = ScenarioRunner(scenario, profile, make_spec)
    return runner.run()


def _scenario(steps: list[dict[str, Any]], **pool: Any) -> dict[str, Any]:
    return {"schema_version": 1, "name": "self-test", "description": "runner self-test", "clauses": ["SESSION-010"],
            "applies": "always", "pool": {"size": 1, **pool}, "steps": steps}


@pytest.mark.parametrize("release", ["0.7.3", "0.7.4"])
def test_expect_when_overrides_expect_where_its_condition_holds(release: str) -> None:
    """Ensure an expect_when entry replaces the same keys of expect at releases where its condition holds only."""
    profile = get_profile(release)
    step: dict[str, Any] = {"op": "execute", "tool": "contract.whoami", "clause": "SESSION-010",
                            "expect": {"ok": False}, "expect_when": {"json_errors": {"ok": True}}}
    other = {**step, "expect_when": {"not json_errors": {"ok": True}}}
    violations = _run(_scenario([{"op": "wait_idle"}, step, other]), profile)["SESSION-010"]
    assert len(violations) == 1
    assert f"step {2 if release == '0.7.3' else 3} execute" in str(violations[0])


@pytest.mark.parametrize("profile", [get_profile("0.6.5"), get_profile("0.6.6"), SNAKEPIT_0_13],
                         ids=["0.6.5", "0.6.6", "0.13"])
def test_session_quota_only_where_snakepit_has_one(profile: Profile) -> None:
    """Ensure max_sessions binds from v0.6.6 on and is ignored before, where the store had no quota."""
    second = {"op": "create_session", "session": "b", "clause": "SESSION-010", "expect": {"ok": True}}
    steps: list[dict[str, Any]] = [{"op": "create_session", "session": "a"}, second]
    violations = _run(_scenario(steps, max_sessions=1), profile)
    assert bool(violations) == (profile.snakepit_version != "0.6.5")


@pytest.mark.parametrize("wait", [True, False], ids=["wait-idle", "back-to-back"])
def test_wait_idle_waits_for_the_check_in(wait: bool) -> None:
    """Ensure wait_idle returns only once the busy worker is checked in, so the next call is not queued."""
    nap: dict[str, Any] = {"op": "execute_async", "id": "nap", "tool": "contract.sleep", "params": {"seconds": 0.5}}
    call: dict[str, Any] = {"op": "execute", "tool": "contract.whoami", "clause": "SESSION-010", "expect": {"ok": True}}
    steps = [nap, {"op": "wait_idle"}, call] if wait else [nap, call]
    violations = _run(_scenario(steps, queue_timeout_ms=100), SNAKEPIT_0_13)
    assert bool(violations) != wait, violations


def test_pool_error_list_means_any_of_them_and_a_recorded_worker_routes() -> None:
    """Ensure a list of pool errors accepts each kind in it only, and store_worker_session steers routing."""
    recorded = {"op": "store_worker_session", "session": "s", "worker_id": "gone_worker_1"}
    call: dict[str, Any] = {"op": "execute", "session": "s", "tool": "contract.whoami", "clause": "SESSION-010",
                            "affinity": "strict_fail_fast"}
    accepts = {**call, "expect": {"pool_error": ["internal", "session_worker_unavailable"]}}
    refuses = {**call, "expect": {"pool_error": ["internal", "worker_crashed"]}}
    steps = [{"op": "wait_idle"}, recorded, accepts, refuses]
    assert not list(VALIDATOR.iter_errors(_scenario(steps)))
    violations = _run(_scenario(steps), SNAKEPIT_0_13)["SESSION-010"]
    assert len(violations) == 1 and "step 4 execute" in str(violations[0])
    assert "session_worker_unavailable" in str(violations[0])


@pytest.mark.parametrize("release", ["0.6.1", "0.13.0"])
@pytest.mark.parametrize("name", ["session/get-extends-ttl", "session/stats-move"])
def test_a_worker_forwarding_its_session_to_elixir_is_not_the_scenarios(name: str, release: str) -> None:
    """Ensure a worker that proxies InitializeSession and Heartbeat to Elixir, as Snakepit's own bridge does,
    neither adds an expiry nor a session to the scenario's counts: from 0.6.3 Snakepit's heartbeats keep that
    session alive; at 0.6.1 nothing does, it expires with the scenario's own and is not counted.
    """
    assert _run(load_scenario(name), get_profile(release), FORWARDING_WORKER) == {}
