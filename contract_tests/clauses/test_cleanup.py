"""CLEANUP: nothing outlives a pool, crashed workers are replaced, CleanupSession is safe (snakepit: restarts)."""

from __future__ import annotations

import contextlib
import time

import grpc
import pytest

from contract_tests.clauses.conftest import MakePool, RunScenario
from contract_tests.contract.clause import clause
from contract_tests.contract.profiles import Profile
from contract_tests.driver import processes
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.elixir.pool import PoolEmulator
from contract_tests.errors import expect
from contract_tests.judging.plugin import Launch, Settings

# How long a worker may tolerate an Elixir side that never answered its Heartbeat (docs/contract.md §1).
STARTUP_TOLERANCE_S = 60.0


def _heartbeats_answered(pool: PoolEmulator, workers: list[WorkerProcess]) -> bool:
    """Every worker has had a Heartbeat answered: by the connection it holds where its sockets can be read,
    and in any case as many answered connections as workers (each dials on its own)."""
    peers = pool.host.answered_peers("Heartbeat")
    ports = {int(peer.rsplit(":", 1)[1]) for peer in peers}
    for worker in workers:
        pids = processes.group_members(worker.pid) if worker.pgid() == worker.pid else [worker.pid]
        held = processes.socket_ports(pids)
        if held and not held & ports:
            return False
    return len(peers) >= len(workers)


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
    still = sorted(p for p in ports & processes.listening_ports() if p is not None)
    expect(not still, "worker ports after the pool stopped", "none listening", still)


@clause("CLEANUP-009")
@pytest.mark.reads_process_environments  # what a worker left behind is found by the tag in its environment
@pytest.mark.not_in_container("every process of the container dies with its PID 1, so nothing a worker started "
                              "can outlive it there")
def test_graceful_stop_leaves_no_process(launch: Launch, profile: Profile) -> None:
    worker = launch()
    assert worker.client is not None
    worker.client.ping("before-stop")
    # Helpers started lazily count too: one tool call (any tool; how it is answered is the TOOL clauses' to judge).
    with contextlib.suppress(grpc.RpcError):
        worker.client.execute("contract.echo", {"before": "stop"}, timeout=10)
    time.sleep(profile.heartbeat_interval_s)  # what a worker starts in its first moments (helpers, watchdogs)
    result = worker.stop()
    if result.killed:
        pytest.skip("the worker did not exit within the grace period after SIGTERM (PROC-010 judges that); what "
                    "SIGKILL leaves is not the worker's doing")
    expect(not worker.left_behind, "processes carrying the worker's environment, 1 s after it exited on SIGTERM",
           "none (everything it started stops with it)", "; ".join(worker.left_behind))


@clause("CLEANUP-005")
def test_killed_mid_call_is_replaced(run_scenario: RunScenario) -> None:
    run_scenario("cleanup/killed-mid-call")


@clause("CLEANUP-006")
@pytest.mark.watches(6)  # the pool's workers miss their heartbeats and leave
def test_workers_leave_when_elixir_disappears(make_pool: MakePool, contract_settings: Settings) -> None:
    pool = make_pool(size=2)
    workers = [pool.worker(w) for w in pool.worker_ids()]
    # A worker whose first Heartbeat is not answered yet may still tolerate an Elixir side that is not up, for
    # the 60 s start-up tolerance of docs/contract.md §1: wait until every worker has had one answered. Past
    # that bound the tolerance has run out anyway, so the check goes on (the phase deadline bounds it all).
    tolerance = time.monotonic() + STARTUP_TOLERANCE_S * contract_settings.timeout_scale
    while not _heartbeats_answered(pool, workers) and time.monotonic() < tolerance:
        time.sleep(0.1)
    for worker in workers:
        worker.detach_snakepit_side()
    pool.host.stop()
    deadline = time.monotonic() + contract_settings.judged_s(30)
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
