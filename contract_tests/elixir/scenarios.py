"""Run language-neutral scenario files (fixtures/scenarios) against the pool emulator.

A scenario is data: a pool to build and a list of steps (sessions, programs,
calls with expected results and routing, crashes, stopping the pool). This
runner drives the emulated Elixir side and the Snakepit-like pool with them;
the live E2E runner drives real Snakepit with the same files. A failed
expectation is a ContractViolation naming the step and its clause.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import grpc

from contract_tests.contract.profiles import Profile, holds
from contract_tests.datafiles import data_dir
from contract_tests.driver import processes
from contract_tests.driver.client import CHANNEL_OPTIONS
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.pool import PoolEmulator, PoolError, PoolTimings, Routed
from contract_tests.elixir.session_store import DEFAULT_MAX_SESSIONS, SessionNotFound, SessionStore, SessionStoreError
from contract_tests.errors import ContractViolation
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

SCENARIO_DIR = data_dir() / "scenarios"
Step = dict[str, Any]


def describe_steps(scenario: Mapping[str, Any], failed: Collection[int] = ()) -> str:
    """The scenario's pool and steps, one line each, the failed ones marked: what a reader needs to replay it."""
    pool = ", ".join(f"{k}={json.dumps(v)}" for k, v in scenario["pool"].items())
    lines = [f"scenario {scenario['name']}: pool {pool}"]
    for index, step in enumerate(scenario["steps"], 1):
        args = {k: v for k, v in step.items() if k not in {"op", "clause", "note"}}
        clause = f"  [{step['clause']}]" if "clause" in step else ""
        mark = "  <-- FAILED" if index in failed else ""
        lines.append(f"{index:>3}. {step['op']} {json.dumps(args, ensure_ascii=False)}{clause}{mark}")
    return "\n".join(lines)


def scenario_names() -> list[str]:
    """Every scenario shipped, by name (its path under fixtures/scenarios without .json)."""
    return sorted(str(p.relative_to(SCENARIO_DIR).with_suffix("")) for p in SCENARIO_DIR.glob("*/*.json"))


@functools.cache
def shared_scenario(clause_id: str) -> str | None:
    """The scenario this clause's check runs that other clauses check too (the first by name), if any: their
    checks can share one run of it (clauses/conftest.py)."""
    checking: dict[str, set[str]] = {}
    for name in scenario_names():
        for checked in load_scenario(name).get("clauses", []):
            checking.setdefault(checked, set()).add(name)
    partners = {name for name in checking.get(clause_id, ()) if any(
        name in names for other, names in checking.items() if other != clause_id)}
    return min(partners) if partners else None


def load_scenario(name: str) -> dict[str, Any]:
    scenario: dict[str, Any] = json.loads((SCENARIO_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return scenario


def expectation(step: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """The step's expectation at this release: each expect_when entry whose condition holds over it key by key."""
    expect = dict(step.get("expect", {}))
    for condition, override in step.get("expect_when", {}).items():
        if holds(condition, profile):
            expect.update(override)
    return expect


def scenario_applies(scenario: Mapping[str, Any], profile: Profile) -> bool:
    """Whether the scenario's `applies` condition holds for this release's rules."""
    return holds(str(scenario["applies"]), profile)


class FakeClock:
    """The session store's clock: scenarios advance it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class _Outcome:
    """What a call step produced: a routed reply or the pool's refusal."""

    routed: Routed | None
    pool_error: PoolError | None


def _describe(outcome: _Outcome) -> str:
    if outcome.pool_error is not None:
        return f"pool error {outcome.pool_error.kind}"
    assert outcome.routed is not None
    reply = outcome.routed.reply
    body = reply.value if reply.ok else (reply.error.raw[:200] if reply.error else "")
    return f"{'ok' if reply.ok else 'error'} from {outcome.routed.worker_id}: {body!r}"


class ScenarioRunner:
    """Builds the scenario's host and pool, runs its steps in order, always cleans up."""

    def __init__(self, scenario: Mapping[str, Any], profile: Profile, make_spec: Callable[[], WorkerSpec],
                 timeout_scale: float = 1.0) -> None:
        self.scenario = scenario
        self.profile = profile
        self.timeout_scale = timeout_scale
        pool_cfg: Mapping[str, Any] = scenario["pool"]
        self.clock = FakeClock()
        # A profile without SessionStore quotas (v0.6.0) ignores max_sessions, as real Snakepit does.
        store = SessionStore(clock=self.clock, default_ttl_s=pool_cfg.get("session_ttl_s", 3600),
                             max_sessions=pool_cfg.get("max_sessions", DEFAULT_MAX_SESSIONS)
                             if profile.session_quota else None)
        self.host = HostEmulator(profile, store=store)
        timings = PoolTimings.for_profile(profile)
        if "queue_timeout_ms" in pool_cfg:
            timings = replace(timings, queue_timeout_s=pool_cfg["queue_timeout_ms"] / 1000)
        self._make_spec = make_spec
        self._pool_args = {"size": pool_cfg["size"], "affinity": pool_cfg.get("affinity", "hint"), "timings": timings}
        self.pool: PoolEmulator | None = None
        self.calls: dict[str, _Outcome] = {}
        self._pending: dict[str, Future[_Outcome]] = {}
        self._stopped: list[WorkerProcess] = []
        self._spawned: list[_Outcome] = []
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scenario")
        self._stats_at_start: dict[str, int] = {}
        # The store may also hold sessions that are not the scenario's (a worker forwarding its own session to
        # Elixir, as Snakepit's bridge does): sweeps and stats count only the sessions the steps name.
        self._own_sessions = {step["session"] for step in scenario["steps"] if "session" in step}
        self._others_expired = 0
        self.failed_steps: set[int] = set()
        self.reached = 0  # the step running (or the last one run): where an aborted run stopped

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> dict[str, list[ContractViolation]]:
        """Run every step; return the violations per clause.

        A failed step tagged with a clause is recorded and the run goes on, so one clause's failure does
        not condemn the others a scenario checks; a failed untagged step (set-up) ends the run at once.
        """
        violations: dict[str, list[ContractViolation]] = {}
        self.host.start()
        try:
            self.pool = PoolEmulator(self._make_spec, self.profile, self.host, **self._pool_args)
            self.pool.start(timeout=60 * self.timeout_scale)
            # What the workers did to the store while starting (0.13's own bridge forwards its
            # InitializeSession to Elixir) is not the scenario's: its stats count from here.
            self._stats_at_start = self.store.stats()
            for index, step in enumerate(self.scenario["steps"], 1):
                self.reached = index
                try:
                    getattr(self, f"_op_{step['op']}")(index, step)
                except ContractViolation as violation:
                    if "clause" not in step:
                        raise
                    violations.setdefault(step["clause"], []).append(violation)
            return violations
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            if self.pool is not None:
                self.pool.stop()
            self.host.stop()

    @property
    def launched(self) -> list[WorkerProcess]:
        """The worker processes the scenario's pool created."""
        return self.pool.launched if self.pool is not None else []

    def _fail(self, index: int, step: Step, expected: str, actual: str) -> None:
        self.failed_steps.add(index)
        label = f"step {index} {step['op']}" + (f" {step['id']!r}" if "id" in step else "")
        clause = f" [{step['clause']}]" if "clause" in step else ""
        evidence = "\n".join(self.pool.events[-15:]) if self.pool else ""
        raise ContractViolation(f"scenario {self.scenario['name']}: {label}{clause}\n{step.get('note', '')}".strip(),
                                expected, actual + ("\n--- pool events ---\n" + evidence if evidence else ""))

    def _check(self, index: int, step: Step, what: str, expected: Any, actual: Any) -> None:
        if expected != actual:
            self._fail(index, step, f"{what} = {expected!r}", f"{what} = {actual!r}")

    # -- session store ops -------------------------------------------------------------------------
    @property
    def store(self) -> SessionStore:
        return self.host.store

    def _op_create_session(self, index: int, step: Step) -> None:
        try:
            self.store.create_session(step["session"], metadata=step.get("metadata"))
            result: dict[str, Any] = {"ok": True}
        except SessionStoreError as err:
            result = {"ok": False, "error": err.reason}
        for key, value in step.get("expect", {}).items():
            self._check(index, step, key, value, result.get(key))

    def _op_get_session(self, index: int, step: Step) -> None:
        session = self.store.get_session(step["session"])
        expect = step.get("expect", {})
        if "exists" in expect:
            self._check(index, step, "exists", expect["exists"], session is not None)
        if "metadata" in expect:
            self._check(index, step, "metadata", expect["metadata"], session.metadata if session else None)

    def _op_update_metadata(self, index: int, step: Step) -> None:
        def merge(session: Any) -> Any:
            session.metadata.update(step["metadata"])
            return session

        self.store.update_session(step["session"], merge)

    def _op_delete_session(self, index: int, step: Step) -> None:
        try:
            self.store.delete_session(step["session"])
            result: dict[str, Any] = {"ok": True}
        except SessionStoreError as err:
            result = {"ok": False, "error": err.reason}
        for key, value in step.get("expect", {}).items():
            self._check(index, step, key, value, result.get(key))

    def _expect_program(self, index: int, step: Step, read: Callable[[], Any]) -> None:
        try:
            found: dict[str, Any] = {"data": read()}
        except SessionNotFound:
            found = {"missing": True}
        for key, value in step.get("expect", {}).items():
            self._check(index, step, key, value, found.get(key, False if key == "missing" else None))

    def _op_store_program(self, index: int, step: Step) -> None:
        self.store.store_program(step["session"], step["program"], step.get("data"))

    def _op_get_program(self, index: int, step: Step) -> None:
        self._expect_program(index, step, lambda: self.store.get_program(step["session"], step["program"]))

    def _op_store_global_program(self, index: int, step: Step) -> None:
        self.store.store_global_program(step["program"], step.get("data"))

    def _op_get_global_program(self, index: int, step: Step) -> None:
        self._expect_program(index, step, lambda: self.store.get_global_program(step["program"]))

    def _op_store_worker_session(self, index: int, step: Step) -> None:
        """What the Pool does after a checkout: record the session's worker (creating the session if needed)."""
        self.store.store_worker_session(step["session"], step["worker_id"])

    def _op_advance_clock(self, index: int, step: Step) -> None:
        """Jump the store's clock; the Heartbeats real time would carry meanwhile still touch what they touch.

        Snakepit beats each worker's own session every 2 s, and a worker that forwards Heartbeat and
        InitializeSession to Elixir (as Snakepit's own bridge does) has that session in the store, kept alive
        by those beats: it must not expire in a jump that real time would have filled with them.
        """
        self.clock.advance(step["seconds"])
        if not self.profile.heartbeat or self.pool is None:
            return
        forwarded = {call.request_as(pb.HeartbeatRequest).session_id for call in self.host.calls("Heartbeat")}
        forwarded |= {call.request_as(pb.InitializeSessionRequest).session_id
                      for call in self.host.calls("InitializeSession")}
        for session_id in self.pool.worker_sessions() & forwarded:
            self.store.get_session(session_id)

    def _others_present(self) -> set[str]:
        return set(self.store.list_sessions()) - self._own_sessions

    def _op_sweep(self, index: int, step: Step) -> None:
        """One sweep; what it expired of sessions the scenario does not own is not the scenario's count.

        At 0.6.1-0.6.2 nothing beats the worker's forwarded `default_session` (no Heartbeat yet), so in real
        Snakepit too a TTL jump expires it along with the scenario's own (docs/snakepit-bridge.md)."""
        others = self._others_present()
        expired = self.store.sweep()
        others_expired = len(others - self._others_present())
        self._others_expired += others_expired
        expired -= others_expired
        for key, value in step.get("expect", {}).items():
            self._check(index, step, key, value, {"expired": expired}.get(key))

    def _op_stats(self, index: int, step: Step) -> None:
        """The store's counters since the pool started, less what sessions the scenario does not own did."""
        others = self._others_present()
        current = self.store.stats()
        stats = {key: value - self._stats_at_start.get(key, 0) for key, value in current.items()}
        stats["sessions_expired"] -= self._others_expired
        stats["current_sessions"] = current["current_sessions"] - len(others)
        for key, value in step.get("expect", {}).items():
            self._check(index, step, f"stats[{key!r}]", value, stats.get(key))

    def _op_worker_heartbeat(self, index: int, step: Step) -> None:
        """What a worker sends to keep a session alive: Heartbeat to the Elixir end (snakepit: heartbeat-config-env)."""
        with grpc.insecure_channel(self.host.address, options=CHANNEL_OPTIONS) as channel:
            reply = pb_grpc.BridgeServiceStub(channel).Heartbeat(pb.HeartbeatRequest(session_id=step["session"]),
                                                                 timeout=10)
        for key, value in step.get("expect", {}).items():
            self._check(index, step, key, value, {"session_valid": reply.session_valid}.get(key))

    # -- calls through the pool --------------------------------------------------------------------
    def _call(self, step: Step) -> _Outcome:
        assert self.pool is not None
        session, params = step.get("session"), step.get("params", {})
        kwargs: dict[str, Any] = {"timeout": 30 * self.timeout_scale}
        if "affinity" in step:
            kwargs["affinity"] = step["affinity"]
        try:
            if step.get("in_session"):
                assert session is not None, "in_session needs a session"
                routed = self.pool.execute_in_session(session, step["tool"], params, **kwargs)
            else:
                routed = self.pool.execute(step["tool"], params, session_id=session, **kwargs)
        except PoolError as err:
            return _Outcome(None, err)
        return _Outcome(routed, None)

    def _judge(self, index: int, step: Step, outcome: _Outcome) -> None:
        expect = expectation(step, self.profile)
        if "pool_error" in expect or outcome.pool_error is not None:
            kind = outcome.pool_error.kind if outcome.pool_error else None
            wanted = expect.get("pool_error")
            if isinstance(wanted, list):  # any one of these: Snakepit races between outcomes
                if kind not in wanted:
                    self._fail(index, step, f"pool error in {wanted!r}", f"pool error = {kind!r}")
                return
            self._check(index, step, "pool error", wanted, kind)
            return
        assert outcome.routed is not None
        reply = outcome.routed.reply
        if "ok" in expect and expect["ok"] != reply.ok:
            self._fail(index, step, "ok" if expect["ok"] else "an application error", _describe(outcome))
        if "result" in expect:
            self._check(index, step, "result", expect["result"], reply.value)
        for key, value in expect.get("result_fields", {}).items():
            got = reply.value.get(key) if isinstance(reply.value, dict) else None
            self._check(index, step, f"result[{key!r}]", value, got)
        if "error_type" in expect:
            error = reply.error
            # 0.6 errors are plain text: the type has to appear in it; 0.13 errors carry it as a field.
            seen = (error.type or "") if error and error.structured else (error.raw if error else "")
            if not (seen == expect["error_type"] or (error and not error.structured and expect["error_type"] in seen)):
                self._fail(index, step, f"error of type {expect['error_type']}", _describe(outcome))
        self._judge_routing(index, step, outcome.routed)

    def _judge_routing(self, index: int, step: Step, routed: Routed) -> None:
        expect = expectation(step, self.profile)
        for key, same in (("same_worker_as", True), ("different_worker_than", False)):
            if key not in expect:
                continue
            other = self.calls[expect[key]].routed
            assert other is not None, f"step {expect[key]!r} has no routed call to compare with"
            # Compared by OS process: a restarted worker keeps its slot's id but none of its state.
            if (routed.pid == other.pid) != same:
                relation = "the same worker process as" if same else "another worker process than"
                self._fail(index, step, f"{relation} step {expect[key]!r} ({other.worker_id}, pid {other.pid})",
                           f"served by {routed.worker_id}, pid {routed.pid}")

    def _op_execute(self, index: int, step: Step) -> None:
        outcome = self._call(step)
        if step["tool"] == "contract.spawn_child":
            self._spawned.append(outcome)
        if "id" in step:
            self.calls[step["id"]] = outcome
        self._judge(index, step, outcome)

    def _op_execute_async(self, index: int, step: Step) -> None:
        self._pending[step["id"]] = self._executor.submit(self._call, step)
        assert self.pool is not None
        # Give the call time to be checked out, so the next step sees its worker busy.
        deadline = time.monotonic() + 2.0 * self.timeout_scale
        while time.monotonic() < deadline and not any(self.pool.busy(w) for w in self.pool.worker_ids()):
            time.sleep(0.01)

    def _op_await(self, index: int, step: Step) -> None:
        outcome = self._pending.pop(step["of"]).result(timeout=60 * self.timeout_scale)
        self.calls[step["of"]] = outcome
        self._judge(index, step, outcome)

    def _op_wait_idle(self, index: int, step: Step) -> None:
        """Wait until every slot has a ready worker that the Pool holds free: each check-in processed.

        Real Snakepit replies to a caller before it processes the worker's check-in, and a pool that has
        just started may queue its first call; a step after this one is a direct checkout of a free worker.
        """
        assert self.pool is not None
        pool = self.pool
        bound = 30 * self.timeout_scale
        deadline = time.monotonic() + bound
        while not (all(state == "ready" for state in pool.slot_states().values())
                   and not any(pool.busy(w) for w in pool.worker_ids())):
            if time.monotonic() > deadline:
                self._fail(index, step, f"every worker ready and free within {bound:g} s",
                           f"slots {pool.slot_states()}, {pool.queued()} queued")
            time.sleep(0.01)

    def _op_cleanup_session_on_workers(self, index: int, step: Step) -> None:
        assert self.pool is not None
        for worker_id in self.pool.worker_ids():
            client = self.pool.worker(worker_id).client
            assert client is not None
            try:
                reply = client.stub.CleanupSession(pb.CleanupSessionRequest(session_id=step["session"]), timeout=10)
                answer = "success=true" if reply.success else f"success=false {reply}"
            except grpc.RpcError as err:
                answer = f"status {err.code().name}: {err.details()}"
            if step.get("expect", {}).get("ok", True) and answer != "success=true":
                self._fail(index, step, "CleanupSession succeeds on every worker", f"{worker_id}: {answer}")

    def _op_crash_worker(self, index: int, step: Step) -> None:
        assert self.pool is not None
        routed = self.calls[step["of"]].routed
        assert routed is not None
        self.pool.crash(routed.worker_id)
        if step.get("wait_restarted", True):
            try:
                self.pool.wait_restarted(routed.worker_id, timeout=30 * self.timeout_scale, previous_pid=routed.pid)
            except TimeoutError as err:  # the worker could not be started again: its failure, not the harness's
                self._fail(index, step, "the crashed worker is replaced by a new process", str(err)[:2000])

    def _op_stop_pool(self, index: int, step: Step) -> None:
        assert self.pool is not None
        self._stopped = [self.pool.worker(w) for w in self.pool.worker_ids()]
        self.pool.stop()

    def _op_leftovers(self, index: int, step: Step) -> None:
        """What the stopped pool's workers left behind: processes (zombies count as gone) and ready files."""
        expect = step["expect"]
        if expect.get("no_worker_process"):
            alive = [w.pid for w in self._stopped if w.proc is not None and processes.alive(w.pid)]
            self._check(index, step, "worker processes alive", [], alive)
        if expect.get("no_spawned_child"):
            children = [o.routed.reply.value["pid"] for o in self._spawned if o.routed is not None
                        and isinstance(o.routed.reply.value, dict) and isinstance(o.routed.reply.value.get("pid"), int)]
            self._check(index, step, "spawned child processes alive", [], [p for p in children if processes.alive(p)])
        if expect.get("no_ready_file"):
            left = [str(w.ready_file) for w in self._stopped if w.ready_file is not None and w.ready_file.exists()]
            self._check(index, step, "ready files left", [], left)
