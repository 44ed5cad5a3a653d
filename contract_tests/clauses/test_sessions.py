"""SESSION: session lifecycle on the Elixir side and as workers see it (snakepit: session-store), run as scenarios."""

from __future__ import annotations

from contract_tests.clauses.conftest import RunScenario
from contract_tests.contract.clause import clause


@clause("SESSION-001")
def test_create_is_idempotent(run_scenario: RunScenario) -> None:
    run_scenario("session/create-is-idempotent")


@clause("SESSION-002")
def test_get_extends_ttl(run_scenario: RunScenario) -> None:
    run_scenario("session/get-extends-ttl")


@clause("SESSION-003")
def test_metadata_update_persists(run_scenario: RunScenario) -> None:
    run_scenario("session/update-metadata")


@clause("SESSION-004")
def test_delete_is_idempotent(run_scenario: RunScenario) -> None:
    run_scenario("session/delete-is-idempotent")


@clause("SESSION-005")
def test_sweep_expires_idle_session(run_scenario: RunScenario) -> None:
    run_scenario("session/get-extends-ttl")


@clause("SESSION-006")
def test_heartbeats_keep_session_alive(run_scenario: RunScenario) -> None:
    run_scenario("session/heartbeat-keeps-alive")


@clause("SESSION-007")
def test_quota_exceeded_is_clear(run_scenario: RunScenario) -> None:
    run_scenario("session/quota")


@clause("SESSION-008")
def test_metadata_round_trip(run_scenario: RunScenario) -> None:
    run_scenario("session/update-metadata")


@clause("SESSION-009")
def test_stats_counters_move(run_scenario: RunScenario) -> None:
    run_scenario("session/stats-move")


@clause("SESSION-010")
def test_routing_records_last_worker(run_scenario: RunScenario) -> None:
    run_scenario("session/routing-records-last-worker")


@clause("SESSION-011")
def test_state_follows_session_parameter(run_scenario: RunScenario) -> None:
    run_scenario("session/in-session-parameter")
