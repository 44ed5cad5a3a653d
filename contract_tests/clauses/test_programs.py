"""PROGRAM: programs in the 0.6 store and programs held by workers (snakepit: program-storage), run as scenarios."""

from __future__ import annotations

from contract_tests.clauses.conftest import RunScenario
from contract_tests.contract.clause import clause


@clause("PROGRAM-001")
def test_session_store_programs(run_scenario: RunScenario) -> None:
    run_scenario("program/store-get-update")


@clause("PROGRAM-002")
def test_programs_go_with_session(run_scenario: RunScenario) -> None:
    run_scenario("program/store-get-update")


@clause("PROGRAM-003")
def test_global_programs_expire(run_scenario: RunScenario) -> None:
    run_scenario("program/global-programs")


@clause("PROGRAM-004")
def test_worker_programs_persist(run_scenario: RunScenario) -> None:
    run_scenario("program/worker-programs-persist")


@clause("PROGRAM-005")
def test_worker_programs_isolated(run_scenario: RunScenario) -> None:
    run_scenario("program/worker-programs-isolated")


@clause("PROGRAM-006")
def test_global_worker_programs_shared(run_scenario: RunScenario) -> None:
    run_scenario("program/global-worker-programs")


@clause("PROGRAM-007")
def test_cleanup_session_releases_programs(run_scenario: RunScenario) -> None:
    run_scenario("program/cleanup-releases")


@clause("PROGRAM-008")
def test_missing_program_is_typed_error(run_scenario: RunScenario) -> None:
    run_scenario("program/missing-is-typed-error")


@clause("PROGRAM-009")
def test_session_program_shadows_global(run_scenario: RunScenario) -> None:
    run_scenario("program/global-worker-programs")
