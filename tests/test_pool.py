"""Self-tests of the pool emulator against the real reference worker and a real host emulator."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from contract_tests.contract.profiles import SNAKEPIT_0_6, SNAKEPIT_0_13, Profile
from contract_tests.driver import processes
from contract_tests.driver.launcher import WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.pool import PoolEmulator, PoolError, PoolTimings, Routed

WORKER = (sys.executable, "-m", "reference_worker")
EXITS_ZERO_AFTER_READY = (sys.executable, str(Path(__file__).parent / "data" / "exits_zero_after_ready.py"))
PROFILES = [pytest.param(SNAKEPIT_0_6, id="0.6"), pytest.param(SNAKEPIT_0_13, id="0.13")]


@contextlib.contextmanager
def _pool(
    profile: Profile, size: int = 2, commands: Callable[[int], Sequence[str]] | None = None, **kwargs: Any
) -> Iterator[PoolEmulator]:
    """A started pool on its own host; `commands(n)` picks the command of the n-th spec (0-based)."""
    counter = itertools.count()
    with HostEmulator(profile) as host:

        def make_spec() -> WorkerSpec:
            command = commands(next(counter)) if commands else WORKER
            return WorkerSpec(command=command, profile=profile, elixir_address=host.elixir_address_for_worker)

        with PoolEmulator(make_spec, profile, host, size=size, **kwargs) as pool:
            yield pool


def _until(condition: Callable[[], bool], pool: PoolEmulator, timeout: float = 5.0) -> None:
    """Poll until condition holds; on timeout the pool's events are the evidence."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s\n" + "\n".join(pool.events[-40:]))
        time.sleep(0.005)


def _other(pool: PoolEmulator, worker_id: str) -> str:
    return next(w for w in pool.worker_ids() if w != worker_id)


def test_timings_follow_the_profile() -> None:
    """Ensure each profile gets the Pool defaults of its Snakepit era (snakepit: restarts, shutdown-grace, queueing)."""
    old, new = PoolTimings.for_profile(SNAKEPIT_0_6), PoolTimings.for_profile(SNAKEPIT_0_13)
    assert (old.queue_timeout_s, old.stop_timeout_s, old.reconcile_interval_s, old.cleanup_timeout_s) == (
        5.0, 2.0, None, None,
    )
    assert (new.queue_timeout_s, new.stop_timeout_s, new.reconcile_interval_s, new.cleanup_timeout_s) == (
        10.0, 6.0, 1.0, 3.0,
    )
    for timings in (old, new):
        assert (timings.max_queue, timings.restart_max, timings.restart_window_s) == (1000, 3, 5.0)
        assert timings.affinity_cache_ttl_s == 60.0
    # Health Ping every 30 s at both; deadline 30 s (v0.6.0 client default) vs 5 s (HEAD).
    assert (old.health_check_interval_s, old.health_check_timeout_s) == (30.0, 30.0)
    assert (new.health_check_interval_s, new.health_check_timeout_s) == (30.0, 5.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_one_call_at_a_time_per_worker(profile: Profile) -> None:
    """Ensure concurrent calls spread over the workers and never overlap on one worker."""
    with _pool(profile) as pool, ThreadPoolExecutor(4) as ex:
        started = time.monotonic()
        calls = [ex.submit(pool.execute, "contract.sleep", {"seconds": 0.3}) for _ in range(4)]
        _until(lambda: all(pool.busy(w) for w in pool.worker_ids()), pool)
        routed = [c.result() for c in calls]
        assert time.monotonic() - started >= 0.55  # two rounds: one call at a time per worker
        for worker_id in pool.worker_ids():
            mine = sorted((r for r in routed if r.worker_id == worker_id), key=lambda r: r.started_at)
            assert len(mine) == 2 and mine[0].finished_at <= mine[1].started_at
            assert {r.pid for r in mine} == {pool.worker(worker_id).pid}
        assert sorted(r.path for r in routed) == ["any", "any", "queued", "queued"]
        assert not any(pool.busy(w) for w in pool.worker_ids())
        who = pool.execute("contract.whoami")
        assert who.reply.value["pid"] == pool.worker(who.worker_id).pid == who.pid


@pytest.mark.parametrize("profile", PROFILES)
def test_hint_affinity_sticks_then_falls_over_when_busy(profile: Profile) -> None:
    """Ensure hint keeps a session on its worker while free, moves it when busy, then the cache brings it back."""
    with _pool(profile) as pool, ThreadPoolExecutor(1) as ex:
        sid, store = "hint-session", pool.host.store
        first = pool.execute_in_session(sid, "contract.whoami")
        home = first.worker_id
        again = [pool.execute_in_session(sid, "contract.whoami") for _ in range(3)]
        assert all(r.worker_id == home and r.path == "preferred" for r in again)
        assert {r.reply.value["pid"] for r in [first, *again]} == {pool.worker(home).pid}
        sleeping = ex.submit(pool.execute_in_session, sid, "contract.sleep", {"seconds": 0.4})
        _until(lambda: pool.busy(home), pool)
        moved = pool.execute_in_session(sid, "contract.whoami")
        assert (moved.worker_id, moved.path, moved.preferred_state) == (_other(pool, home), "any", "busy")
        assert moved.reply.value["pid"] == pool.worker(moved.worker_id).pid
        assert store.peek_session(sid).last_worker_id == moved.worker_id  # type: ignore[union-attr]
        assert sleeping.result().worker_id == home
        # The affinity cache (60 s) still names `home`; only v0.13 records the preferred pick in the store.
        back = pool.execute_in_session(sid, "contract.whoami")
        assert (back.worker_id, back.path) == (home, "preferred")
        stored = moved.worker_id if profile is SNAKEPIT_0_6 else home
        assert store.peek_session(sid).last_worker_id == stored  # type: ignore[union-attr]


@pytest.mark.parametrize("profile", PROFILES)
def test_a_call_served_from_the_queue_records_no_affinity(profile: Profile) -> None:
    """Ensure only a direct checkout records the session's worker, as in Snakepit (docs/pool.md Routing)."""
    with _pool(profile, size=1) as pool, ThreadPoolExecutor(1) as ex:
        sleeping = ex.submit(pool.execute, "contract.sleep", {"seconds": 0.4})
        _until(lambda: pool.busy(pool.worker_ids()[0]), pool)
        queued = pool.execute("contract.whoami", session_id="late")
        sleeping.result()
        assert queued.path == "queued" and pool.host.store.peek_session("late") is None
        direct = pool.execute("contract.whoami", session_id="late")
        assert direct.path == "any"
        assert pool.host.store.peek_session("late").last_worker_id == direct.worker_id  # type: ignore[union-attr]


def test_without_affinity_cache_a_session_follows_the_store() -> None:
    """Ensure that with a zero cache TTL the session stays where hint moved it."""
    timings = dataclasses.replace(PoolTimings.for_profile(SNAKEPIT_0_13), affinity_cache_ttl_s=0.0)
    with _pool(SNAKEPIT_0_13, timings=timings) as pool, ThreadPoolExecutor(1) as ex:
        home = pool.execute_in_session("s", "contract.whoami").worker_id
        sleeping = ex.submit(pool.execute_in_session, "s", "contract.sleep", {"seconds": 0.3})
        _until(lambda: pool.busy(home), pool)
        moved = pool.execute_in_session("s", "contract.whoami").worker_id
        sleeping.result()
        assert moved != home and pool.execute_in_session("s", "contract.whoami").worker_id == moved


def test_strict_queue_waits_for_the_preferred_worker() -> None:
    """Ensure strict_queue queues for the session's busy worker while another worker stays free."""
    with _pool(SNAKEPIT_0_13, affinity="strict_queue") as pool, ThreadPoolExecutor(2) as ex:
        home = pool.execute_in_session("sq", "contract.whoami").worker_id
        sleeping = ex.submit(pool.execute_in_session, "sq", "contract.sleep", {"seconds": 0.4})
        _until(lambda: pool.busy(home), pool)
        waiting = ex.submit(pool.execute_in_session, "sq", "contract.whoami")
        _until(lambda: pool.queued() == 1, pool)
        free = pool.execute("contract.whoami")  # a call without a session is not held up by it
        assert (free.worker_id, free.path) == (_other(pool, home), "any")
        routed = waiting.result()
        assert (routed.worker_id, routed.path, routed.preferred_state) == (home, "queued", "busy")
        assert routed.waited_s >= 0.2 and routed.reply.value["pid"] == pool.worker(home).pid
        assert sleeping.result().worker_id == home


def test_strict_fail_fast_refuses_a_busy_worker() -> None:
    """Ensure strict_fail_fast answers worker_busy at once instead of queueing or moving the session."""
    with _pool(SNAKEPIT_0_13) as pool, ThreadPoolExecutor(1) as ex:
        home = pool.execute_in_session("ff", "contract.whoami").worker_id
        sleeping = ex.submit(pool.execute_in_session, "ff", "contract.sleep", {"seconds": 0.3})
        _until(lambda: pool.busy(home), pool)
        started = time.monotonic()
        with pytest.raises(PoolError) as refused:
            pool.execute_in_session("ff", "contract.whoami", affinity="strict_fail_fast")
        assert refused.value.kind == "worker_busy" and time.monotonic() - started < 0.2
        assert any(":worker_busy" in line for line in refused.value.evidence)
        sleeping.result()
        assert pool.execute_in_session("ff", "contract.whoami", affinity="strict_fail_fast").worker_id == home


def test_strict_modes_refuse_a_missing_worker() -> None:
    """Ensure both strict modes answer session_worker_unavailable for a worker the pool lacks; hint moves on."""
    with _pool(SNAKEPIT_0_13) as pool:
        pool.host.store.store_worker_session("ghost", "pool_worker_9_999")
        for mode in ("strict_queue", "strict_fail_fast"):
            with pytest.raises(PoolError) as refused:
                pool.execute_in_session("ghost", "contract.whoami", affinity=mode)
            assert refused.value.kind == "session_worker_unavailable"
        routed = pool.execute_in_session("ghost", "contract.whoami")
        assert (routed.path, routed.preferred_state) == ("any", "missing")
        assert pool.host.store.peek_session("ghost").last_worker_id == routed.worker_id  # type: ignore[union-attr]


def test_strict_modes_do_not_exist_in_06() -> None:
    """Ensure strict affinity (v0.10.0+) is a usage error under the 0.6 profile."""
    host = HostEmulator(SNAKEPIT_0_6)

    def make_spec() -> WorkerSpec:
        return WorkerSpec(WORKER, SNAKEPIT_0_6, "localhost:1")

    with pytest.raises(ValueError, match="strict_queue"):
        PoolEmulator(make_spec, SNAKEPIT_0_6, host, affinity="strict_queue")
    pool = PoolEmulator(make_spec, SNAKEPIT_0_6, host)
    with pytest.raises(ValueError, match="strict_fail_fast"):
        pool.execute("contract.whoami", session_id="s", affinity="strict_fail_fast")


@pytest.mark.parametrize("profile", PROFILES)
def test_queue_timeout_and_queue_full(profile: Profile) -> None:
    """Ensure a full queue refuses at once, a queued call times out, and v0.6 keeps timed-out entries queued."""
    timings = dataclasses.replace(PoolTimings.for_profile(profile), queue_timeout_s=0.3, max_queue=1)
    with _pool(profile, size=1, timings=timings) as pool, ThreadPoolExecutor(2) as ex:
        sleeping = ex.submit(pool.execute, "contract.sleep", {"seconds": 1.2})
        _until(lambda: pool.busy(pool.worker_ids()[0]), pool)
        queued_at = time.monotonic()
        waiting = ex.submit(pool.execute, "contract.whoami")
        _until(lambda: pool.queued() == 1, pool)
        with pytest.raises(PoolError) as full:
            pool.execute("contract.whoami")
        assert full.value.kind == "queue_full"
        with pytest.raises(PoolError) as timed_out:
            waiting.result()
        assert timed_out.value.kind == "queue_timeout" and 0.25 <= time.monotonic() - queued_at < 1.0
        with pytest.raises(PoolError) as again:
            pool.execute("contract.whoami")
        # v0.6.0 leaves the timed-out request queued until a check-in pops it, so the queue is still full.
        assert again.value.kind == ("queue_full" if profile is SNAKEPIT_0_6 else "queue_timeout")
        assert sleeping.result().path == "any"
        assert pool.execute("contract.whoami").reply.ok and pool.queued() == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_execute_stream_never_queues(profile: Profile) -> None:
    """Ensure a stream needs a free worker at checkout (no_workers_available otherwise)."""
    with _pool(profile, size=1) as pool, ThreadPoolExecutor(1) as ex:
        sleeping = ex.submit(pool.execute, "contract.sleep", {"seconds": 0.3})
        _until(lambda: pool.busy(pool.worker_ids()[0]), pool)
        with pytest.raises(PoolError) as refused:
            pool.execute_stream("contract.stream", {"count": 2})
        assert refused.value.kind == "no_workers_available"
        sleeping.result()
        worker_id, result = pool.execute_stream("contract.stream", {"count": 2})
        assert worker_id == pool.worker_ids()[0] and len(result.payload_chunks) == 2


@pytest.mark.parametrize("profile", PROFILES)
def test_crash_restarts_in_its_slot_and_sessions_move(profile: Profile) -> None:
    """Ensure a killed worker is restarted under the same id, its sessions move meanwhile and in-flight calls fail."""
    with _pool(profile) as pool, ThreadPoolExecutor(1) as ex:
        sid = "crash-session"
        home = pool.execute_in_session(sid, "contract.whoami").worker_id
        old_pid = pool.worker(home).pid
        pool.crash(home)
        moved = pool.execute_in_session(sid, "contract.whoami")
        assert (moved.worker_id, moved.preferred_state) == (_other(pool, home), "missing")
        assert pool.host.store.peek_session(sid).last_worker_id == moved.worker_id  # type: ignore[union-attr]
        assert pool.wait_restarted(home, timeout=10) == home  # Worker.Starter keeps the worker id
        assert pool.worker(home).pid != old_pid and not processes.alive(old_pid)
        back = pool.execute_in_session(sid, "contract.whoami")  # the affinity cache still names `home`
        assert back.worker_id == home and back.reply.value["pid"] == pool.worker(home).pid
        assert any("Worker.Starter restarts" in line for line in pool.events)
        inflight = ex.submit(pool.execute_in_session, sid, "contract.sleep", {"seconds": 5})
        _until(lambda: pool.busy(home), pool)
        pool.crash(home)
        with pytest.raises(PoolError) as lost:
            inflight.result(timeout=5)
        # 0.6.0's GRPCWorker crashes on the failed RPC; 0.13.0's returns ClientImpl's :internal (docs/pool.md).
        assert lost.value.kind == ("worker_crashed" if profile is SNAKEPIT_0_6 else "internal")
        pool.wait_restarted(home, timeout=10)


@pytest.mark.parametrize("profile", PROFILES)
def test_exit_zero_while_healthy_is_a_crash(profile: Profile) -> None:
    """Ensure a worker that exits 0 on its own is restarted (snakepit: restarts)."""
    with _pool(profile, size=1, commands=lambda n: EXITS_ZERO_AFTER_READY if n == 0 else WORKER) as pool:
        worker_id = pool.worker_ids()[0]
        pid = pool.worker(worker_id).pid
        assert pool.wait_restarted(worker_id, timeout=10, previous_pid=pid) == worker_id
        assert any("exit status 0" in line for line in pool.events)


@pytest.mark.parametrize("profile", PROFILES)
def test_rpc_deadline_crashes_only_the_06_worker(profile: Profile) -> None:
    """Ensure a non-OK ExecuteTool status restarts the worker at 0.6, not at 0.13 (snakepit: execute-status-crash)."""
    with _pool(profile, size=1) as pool:
        worker_id = pool.worker_ids()[0]
        pid = pool.worker(worker_id).pid
        with pytest.raises(PoolError) as failed:
            pool.execute("contract.sleep", {"seconds": 2}, timeout=0.2)
        if profile is SNAKEPIT_0_6:
            assert failed.value.kind == "worker_crashed" and "DEADLINE_EXCEEDED" in str(failed.value)
            assert pool.wait_restarted(worker_id, timeout=10, previous_pid=pid) == worker_id
        else:
            assert failed.value.kind == "rpc_error" and "DEADLINE_EXCEEDED" in str(failed.value)
            assert pool.worker(worker_id).pid == pid
        assert pool.execute("contract.whoami").reply.ok


def test_heartbeat_stopped_worker_is_not_restarted() -> None:
    """Ensure a worker stopped by its HeartbeatMonitor leaves its slot empty ({:shutdown, _} under :transient)."""
    fast = dataclasses.replace(SNAKEPIT_0_13, heartbeat_interval_s=0.2, shutdown_grace_s=0.3)
    with HostEmulator(fast) as host:

        def make_spec() -> WorkerSpec:
            # timeout_scale 0.2: Heartbeat deadline 2 s instead of 10 s.
            return WorkerSpec(WORKER, fast, host.elixir_address_for_worker, timeout_scale=0.2)

        with PoolEmulator(make_spec, fast, host, size=2) as pool:
            stuck = pool.worker_ids()[0]
            os.kill(pool.worker(stuck).pid, signal.SIGSTOP)  # alive but silent: heartbeats time out
            _until(lambda: pool.slot_states()[stuck] == "empty", pool, timeout=8)
            time.sleep(0.2)
            assert pool.slot_states() == {stuck: "empty", _other(pool, stuck): "ready"}
            assert any("stopped by its heartbeat" in line for line in pool.events)
            assert pool.execute("contract.whoami").worker_id == _other(pool, stuck)


@pytest.mark.parametrize("profile", PROFILES)
def test_health_pings_are_periodic_and_wait_for_a_running_call(profile: Profile) -> None:
    """Ensure each worker gets Ping('health_check_#PID<…>') one interval after ready, then periodically, and a
    Ping due during a call waits for it (the GRPCWorker's one-RPC line), re-armed per tick (0.13) or after it (0.6).
    """
    timings = dataclasses.replace(PoolTimings.for_profile(profile), health_check_interval_s=0.3)
    before = time.monotonic()
    with _pool(profile, size=1, timings=timings) as pool:
        ready = time.monotonic()
        call = pool.execute("contract.sleep", {"seconds": 0.6})
        _until(lambda: any(p.queued_at > call.finished_at for p in pool.health_pings), pool)
        pings = list(pool.health_pings)
        worker_id = pool.worker_ids()[0]
    assert all(p.ok and (p.worker_id, p.pid) == (worker_id, call.pid) for p in pings), pings
    assert re.fullmatch(r"health_check_#PID<0\.\d+\.0>", pings[0].message) and len({p.message for p in pings}) == 1
    assert before + 0.3 <= pings[0].queued_at <= ready + 0.3 + 0.2
    for ping in pings:  # never overlaps the call on that worker
        assert ping.finished_at <= call.started_at or ping.started_at >= call.finished_at, (ping, call)
    index, waited = next((i, p) for i, p in enumerate(pings) if call.started_at < p.queued_at < call.finished_at)
    assert waited.started_at >= call.finished_at and pings[index + 1].queued_at > waited.queued_at
    if profile is SNAKEPIT_0_6:  # handle_info(:health_check) re-arms the timer after its Ping
        assert all(b.queued_at >= a.finished_at + 0.29 for a, b in itertools.pairwise(pings))
    else:  # HEAD re-arms the timer when it fires, whatever the Ping waits for
        assert pings[index + 1].queued_at < waited.finished_at + 0.15
        assert all(b.queued_at - a.queued_at >= 0.29 for a, b in itertools.pairwise(pings))


_SLOW_HEALTH_PING = """\
\"\"\"The reference worker, but a health Ping takes 2 s (the connect Ping stays fast).\"\"\"
import asyncio
import sys

from reference_worker import server, servicer

_ping = servicer.BridgeServicer.Ping


async def _slow(self, request, context):
    if request.message.startswith("health_check_"):
        await asyncio.sleep(2)
    return await _ping(self, request, context)


servicer.BridgeServicer.Ping = _slow
sys.exit(server.main())
"""


@pytest.mark.parametrize("profile", PROFILES)
def test_failed_health_ping_is_only_logged(profile: Profile, tmp_path: Path) -> None:
    """Ensure a health Ping past its deadline is logged, never restarts the worker, and a call waits behind it."""
    script = tmp_path / "slow_health_ping.py"
    script.write_text(_SLOW_HEALTH_PING)
    timings = dataclasses.replace(
        PoolTimings.for_profile(profile), health_check_interval_s=0.3, health_check_timeout_s=0.5
    )
    with _pool(profile, size=1, commands=lambda n: (sys.executable, str(script)), timings=timings) as pool:
        worker_id = pool.worker_ids()[0]
        pid = pool.worker(worker_id).pid
        _until(lambda: any("health Ping(" in line for line in pool.events), pool)
        assert not pool.busy(worker_id)  # the Pool never learns of health pings
        routed = pool.execute("contract.whoami")  # handed to the worker at once, then waits in its line
        assert (routed.path, routed.waited_s, routed.reply.value["pid"]) == ("any", 0.0, pid)
        _until(lambda: len(pool.health_pings) >= 2, pool)
        first = pool.health_pings[0]
        assert not first.ok and "DEADLINE_EXCEEDED" in str(first.error)
        assert 0.45 <= first.finished_at - first.started_at < 1.5 and routed.started_at >= first.finished_at
        assert not any(p.ok for p in pool.health_pings)
        assert pool.slot_states() == {worker_id: "ready"} and pool.worker(worker_id).pid == pid
        events = list(pool.events)
    assert any("health check failed (DEADLINE_EXCEEDED" in line and "only logged" in line for line in events)
    assert not any("restarts" in line or "exit status" in line for line in events)


@pytest.mark.parametrize("profile", PROFILES)
def test_crash_loop_exhausts_the_restart_limits(profile: Profile) -> None:
    """Ensure restart limits escalate: 0.13 restarts the pool then stops it; 0.6 is left with no workers."""
    false = shutil.which("false") or "/bin/false"
    timings = dataclasses.replace(
        PoolTimings.for_profile(profile), restart_window_s=60, supervisor_restart_window_s=60, queue_timeout_s=0.2
    )
    with _pool(profile, commands=lambda n: WORKER if n < 2 else (false,), timings=timings) as pool:
        first_ids = pool.worker_ids()
        pool.crash(first_ids[0])
        if profile is SNAKEPIT_0_6:
            _until(lambda: set(pool.slot_states().values()) == {"empty"}, pool, timeout=15)
            assert any("Snakepit.Supervisor restarts WorkerSupervisor empty" in line for line in pool.events)
            with pytest.raises(PoolError) as refused:
                pool.execute("contract.whoami")
            assert refused.value.kind == "queue_timeout"
        else:
            _until(lambda: pool.failed is not None, pool, timeout=15)
            assert any("RuntimeSupervisor restarts WorkerSupervisor and Pool" in line for line in pool.events)
            assert not set(pool.worker_ids()) & set(first_ids)
            with pytest.raises(PoolError) as refused:
                pool.execute("contract.whoami")
            assert refused.value.kind == "pool_stopped"
        assert any("WorkerSupervisor gives up" in line for line in pool.events)


@pytest.mark.parametrize("profile", PROFILES)
def test_wire_session_id_per_profile(profile: Profile) -> None:
    """Ensure the caller's session only steers routing: the wire carries default_session or the worker's own."""
    with _pool(profile) as pool:
        routed = pool.execute_in_session("caller-session", "contract.whoami")
        wire = routed.reply.value["session_id"]
        if profile is SNAKEPIT_0_6:
            assert wire == "default_session"
        else:
            client = pool.worker(routed.worker_id).client
            assert client is not None and wire == client.session_id and wire.startswith("session_")
            assert len({pool.worker(w).client.session_id for w in pool.worker_ids()}) == 2  # type: ignore[union-attr]
        echoed = pool.execute_in_session("caller-session", "contract.echo", {"x": 1})
        assert echoed.reply.value == {"x": 1, "session_id": "caller-session"}
        plain = pool.execute_in_session("caller-session", "contract.echo", {"x": 1}, session_param=False)
        assert plain.reply.value == {"x": 1}


@pytest.mark.parametrize("profile", PROFILES)
def test_stop_leaves_no_process_group_or_file(profile: Profile) -> None:
    """Ensure stop() ends in-flight calls and leaves no process, group member, ready file or temp dir; twice is fine."""
    with _pool(profile) as pool, ThreadPoolExecutor(1) as ex:
        workers = [pool.worker(w) for w in pool.worker_ids()]
        pids = [p.pid for p in workers]
        groups = [p.pid for p in workers if p.process_group]
        dirs = [p.tmp_dir for p in workers]  # holds the ready file at 0.13
        assert all(d.is_dir() for d in dirs) and bool(groups) == (profile is SNAKEPIT_0_13)
        inflight = ex.submit(pool.execute, "contract.sleep", {"seconds": 5})
        _until(lambda: any(pool.busy(w) for w in pool.worker_ids()), pool)
        started = time.monotonic()
        results = pool.stop()
        assert time.monotonic() - started < 2.0
        with pytest.raises(PoolError) as ended:
            inflight.result(timeout=5)
        assert ended.value.kind == "pool_stopped"
    assert set(results) == set(pool.worker_ids()) and pool.stop() == results
    assert all(r.exit_status in (0, -signal.SIGTERM) and not r.killed for r in results.values())
    assert not [pid for pid in pids if processes.alive(pid)]
    assert not [member for pgid in groups for member in processes.group_members(pgid)]
    assert not [d for d in dirs if d.exists()]
    with pytest.raises(PoolError, match="pool_stopped"):
        pool.execute("contract.whoami")


def test_ctrl_c_inside_the_pool_stops_it() -> None:
    """Ensure an interrupt inside `with PoolEmulator(...)` still stops every worker."""
    pids: list[int] = []
    with pytest.raises(KeyboardInterrupt), _pool(SNAKEPIT_0_13) as pool:
        pids.extend(pool.worker(w).pid for w in pool.worker_ids())
        raise KeyboardInterrupt
    assert pids and not [pid for pid in pids if processes.alive(pid)]


@pytest.mark.parametrize("profile", PROFILES)
def test_fifty_sessions_keep_consistent_affinity(profile: Profile) -> None:
    """Ensure 50 concurrent sessions on 3 workers are routed as claimed and stick once calls are sequential."""
    with _pool(profile, size=3) as pool, ThreadPoolExecutor(50) as ex:
        pids = {w: pool.worker(w).pid for w in pool.worker_ids()}
        store = pool.host.store

        def session(n: int) -> list[tuple[Routed, str | None]]:
            calls = []
            for _ in range(3):
                routed = pool.execute_in_session(f"s{n}", "contract.whoami", session_param=False)
                session = store.peek_session(f"s{n}")
                calls.append((routed, None if session is None else session.last_worker_id))
            return calls

        for calls in [f.result() for f in [ex.submit(session, n) for n in range(50)]]:
            for routed, stored in calls:
                assert routed.reply.value["pid"] == pids[routed.worker_id]  # the pool's claim is the truth
                assert routed.path != "any" or routed.preferred_state in (None, "busy")
                assert routed.path != "preferred" or routed.worker_id == routed.preferred
                if routed.path == "any" or (routed.path == "preferred" and profile is SNAKEPIT_0_13):
                    assert stored == routed.worker_id
        first = {n: pool.execute_in_session(f"s{n}", "contract.whoami").worker_id for n in range(50)}
        for n in range(50):
            routed = pool.execute_in_session(f"s{n}", "contract.whoami")
            assert (routed.worker_id, routed.path) == (first[n], "preferred")
        assert set(first.values()) <= set(pids)
