"""Self-tests of the scenario files: schema, naming, and ties to the clause catalogue."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from contract_tests.clause import REGISTRY
from contract_tests.scenarios import SCENARIO_DIR, load_scenario, scenario_names

SCHEMA = json.loads((SCENARIO_DIR / "scenario.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_schema_is_valid_json_schema() -> None:
    """Ensure the schema itself is a valid draft 2020-12 schema (other runners load it too)."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_matches_schema_and_catalogue(name: str) -> None:
    """Ensure each scenario validates, is named after its path, and names real clauses of its profiles."""
    scenario = load_scenario(name)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(scenario)]
    assert not errors, errors
    assert scenario["name"] == name
    tagged = {s["clause"] for s in scenario["steps"] if "clause" in s}
    assert tagged == set(scenario["clauses"]), "each listed clause is judged by at least one tagged step"
    cited = set(scenario["clauses"]) | tagged
    assert cited <= set(REGISTRY), cited - set(REGISTRY)
    for clause_id in cited:
        assert set(scenario["profiles"]) <= REGISTRY[clause_id].profiles, clause_id
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
    ],
    ids=["unknown-op", "missing-session", "unknown-expectation", "async-without-id", "negative-clock",
         "bad-pool-error"],
)
def test_schema_rejects_malformed_steps(step: dict[str, Any]) -> None:
    """Ensure authoring mistakes are caught by the schema, not discovered at run time."""
    assert list(VALIDATOR.iter_errors(_with_step(step)))
