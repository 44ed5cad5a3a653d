"""AFFINITY: how calls of a session find their worker behind a Snakepit-like pool (snakepit: routing-affinity)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from contract_tests.clauses.conftest import MakePool, RunScenario
from contract_tests.contract.clause import clause, requires_tools
from contract_tests.errors import expect


@clause("AFFINITY-001")
def test_hint_sticks_while_free(run_scenario: RunScenario) -> None:
    run_scenario("affinity/hint-sticks-while-free")


@clause("AFFINITY-002")
def test_hint_falls_over_when_busy(run_scenario: RunScenario) -> None:
    run_scenario("affinity/hint-falls-over-when-busy")


@clause("AFFINITY-003")
def test_strict_queue_waits(run_scenario: RunScenario) -> None:
    run_scenario("affinity/strict-queue-waits")


@clause("AFFINITY-004")
def test_strict_fail_fast_errors(run_scenario: RunScenario) -> None:
    run_scenario("affinity/strict-fail-fast-errors")
    run_scenario("affinity/strict-fail-fast-async-busy")


@clause("AFFINITY-005")
def test_crash_moves_session(run_scenario: RunScenario) -> None:
    run_scenario("affinity/crash-moves-session")


@clause("AFFINITY-006")
@requires_tools("contract.program.store", "contract.program.run")
def test_many_sessions_consistent(make_pool: MakePool) -> None:
    pool = make_pool(size=3, affinity="hint")
    sessions = [f"many-{n}" for n in range(50)]

    def life(session: str) -> list[str]:
        """One session's calls in order: its state is found exactly where it lives, else a clean error."""
        problems = []
        home = pool.execute_in_session(session, "contract.program.store", {"name": "p", "source": session})
        runs_at_home = 0
        for n in range(3):
            routed = pool.execute_in_session(session, "contract.program.run", {"name": "p"})
            reply = routed.reply
            if routed.preferred_state == "available" and routed.worker_id != routed.preferred:
                problems.append(f"{session} call {n}: {routed.preferred} was free, yet {routed.worker_id} served")
            if routed.pid == home.pid:
                runs_at_home += 1
                if not (reply.ok and reply.value.get("runs") == runs_at_home):
                    problems.append(f"{session} call {n} at home: expected runs={runs_at_home}, got {reply.value!r}")
            elif reply.ok or reply.error is None or "ProgramNotFound" not in reply.error.raw:
                problems.append(f"{session} call {n} away from home: expected ProgramNotFound, got {reply.value!r}")
        return problems

    random.Random(6).shuffle(sessions)
    with ThreadPoolExecutor(max_workers=4) as threads:
        problems = [p for found in threads.map(life, sessions) for p in found]
    expect(not problems, "routing of 50 concurrent sessions on 3 workers (hint)",
           "a free preferred worker serves; state found exactly at home, ProgramNotFound elsewhere",
           "\n".join(problems[:10]))


@clause("AFFINITY-007")
def test_strict_session_worker_gone(run_scenario: RunScenario) -> None:
    run_scenario("affinity/strict-worker-gone")
