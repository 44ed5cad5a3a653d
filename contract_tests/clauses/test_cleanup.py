"""CLEANUP: nothing outlives a pool, crashed workers are replaced, CleanupSession is safe (facts §2.7-2.9)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from contract_tests.clause import clause
from contract_tests.clauses.conftest import MakePool, RunScenario
from contract_tests.errors import expect
from contract_tests.plugin import Settings

# How long a worker may tolerate an Elixir side that never answered its Heartbeat (docs/contract.md §1).
STARTUP_TOLERANCE_S = 60.0


def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@clause("CLEANUP-001")
def test_stop_leaves_no_process(run_scenario: RunScenario) -> None:
    run_scenario("cleanup/stop-leaves-nothing")


@clause("CLEANUP-002")
@pytest.mark.not_in_container("a child's pid is in the container's PID namespace, not this machine's, and "
                              "every process of the container dies with its PID 1, so a worker that leaks children "
                              "would pass")
def test_stop_leaves_no_child_process(run_scenario: RunScenario) -> None:
    run_scenario("cleanup/stop-leaves-nothing")


@clause("CLEANUP-003")
def test_stop_leaves_no_ready_file(run_scenario: RunScenario) -> None:
    run_scenario("cleanup/stop-leaves-nothing")


@clause("CLEANUP-004")
@pytest.mark.not_in_container("every process of the container dies with its PID 1, so no helper can keep the "
                              "listening socket open and a worker that leaks it would pass")
def test_stop_leaves_no_listening_port(make_pool: MakePool) -> None:
    pool = make_pool(size=2)
    ports = {pool.worker(w).port for w in pool.worker_ids()}
    pool.stop()
    still = sorted(p for p in ports & _listening_ports() if p is not None)
    expect(not still, "worker ports after the pool stopped", "none listening", still)


@clause("CLEANUP-005")
def test_killed_mid_call_is_replaced(run_scenario: RunScenario) -> None:
    run_scenario("cleanup/killed-mid-call")


@clause("CLEANUP-006")
def test_workers_leave_when_elixir_disappears(make_pool: MakePool, contract_settings: Settings) -> None:
    pool = make_pool(size=2)
    workers = [pool.worker(w) for w in pool.worker_ids()]
    # A worker whose first Heartbeat is not answered yet may still tolerate an Elixir side that is not up, for
    # the 60 s start-up tolerance of docs/contract.md §1: wait until every worker has had one answered (each
    # dials on its own connection). Past that bound the tolerance has run out anyway, so the check goes on.
    tolerance = STARTUP_TOLERANCE_S * contract_settings.timeout_scale
    with contextlib.suppress(TimeoutError):
        pool.host.wait_for_answered_peers("Heartbeat", len(workers), tolerance)
    for worker in workers:
        worker.detach_snakepit_side()
    pool.host.stop()
    deadline = time.monotonic() + 30 * contract_settings.timeout_scale
    for worker in workers:
        worker.wait_exit(max(0.0, deadline - time.monotonic()))
    running = [w.pid for w in workers if w.is_alive()]
    expect(not running, "pool workers after the Elixir side disappeared", "all exit within 30 s by themselves",
           f"still running: {running}")


@clause("CLEANUP-007")
def test_cleanup_session_releases_only_that_session(run_scenario: RunScenario) -> None:
    run_scenario("program/cleanup-releases")


@clause("CLEANUP-008")
def test_cleanup_session_is_idempotent(run_scenario: RunScenario) -> None:
    run_scenario("cleanup/cleanup-session-idempotent")
