"""Snakepit's Pool as a test double: N real workers routed, queued, restarted and stopped per profile (docs/pool.md)."""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc

from contract_tests.contract.profiles import Profile
from contract_tests.driver import processes
from contract_tests.driver.client import StreamResult
from contract_tests.driver.launcher import StopResult, WorkerProcess, WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.elixir.session_store import SessionStoreError
from contract_tests.protocol.codec import ToolReply

logger = logging.getLogger(__name__)

AFFINITY_MODES = ("hint", "strict_queue", "strict_fail_fast")
ERROR_KINDS = (
    "worker_busy",
    "session_worker_unavailable",
    "queue_timeout",
    "queue_full",
    "no_workers_available",
    "pool_stopped",
    "pool_not_initialized",
    "worker_crashed",
    "internal",
    "rpc_error",
    "timeout",
)
# Snakepit hears of a dead worker from its Port's exit_status message at once; 50 ms of polling is close enough.
_WATCH_INTERVAL_S = 0.05
_EVIDENCE_LINES = 40
# How long a worker whose heartbeat failed may take to finish dying before the failure counts as a stop.
_DYING_S = 0.25
# Slack for joining threads whose own deadlines (grace, readiness) bound them already.
_JOIN_SLACK_S = 10.0
# `:erlang.unique_integer([:positive])` in worker ids (HEAD initializer.ex:292, v0.6.0 pool.ex:908).
_unique = itertools.count(1)
# The N of each GRPCWorker's `#PID<0.N.0>` in its health-check message.
_beam_pids = itertools.count(300)


def _legacy(profile: Profile) -> bool:
    """v0.6.0's Pool before strict affinity (rule strict_affinity, releases.toml); v0.13.0's Pool from there on."""
    return not profile.strict_affinity


def _deadline(seconds: float) -> float | None:
    """A rule's `inf` (no such timer at that release) as the None the Pool's timings use."""
    return None if math.isinf(seconds) else seconds


def _port_status(returncode: int | None) -> int | None:
    """Popen's -N (killed by signal N) as a BEAM Port reports it: 128 + N (snakepit: restarts)."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 - returncode


class PoolError(Exception):
    """A call the pool refused or lost, as `{:error, reason}`; `kind` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str, evidence: Iterable[str] = ()) -> None:
        self.kind = kind
        self.evidence = list(evidence)
        text = f"{kind}: {message}"
        if self.evidence:
            text += "\n--- pool events (last) ---\n" + "\n".join(self.evidence)
        super().__init__(text)


@dataclass(frozen=True)
class PoolTimings:
    """Every number the Pool's behaviour depends on; `for_profile` gives Snakepit's defaults (docs/pool.md)."""

    queue_timeout_s: float
    max_queue: int
    # Worker.Starter's supervisor intensity: more than restart_max restarts in restart_window_s and it gives up.
    restart_max: int
    restart_window_s: float
    # Pool reconciliation tick; None where the Pool has none (v0.6.0). See docs/pool.md for why it never fires here.
    reconcile_interval_s: float | None
    # Graceful stop per worker on application stop: SIGTERM, this grace, SIGKILL.
    stop_timeout_s: float
    affinity_cache_ttl_s: float
    # WorkerSupervisor / RuntimeSupervisor intensity (the next escalation levels).
    supervisor_restart_max: int = 3
    supervisor_restart_window_s: float = 5.0
    # RuntimeCleanup after the supervision tree is down (0.13); None = no such pass for arbitrary workers.
    cleanup_timeout_s: float | None = None
    cleanup_poll_s: float = 0.05
    # GRPCWorker's periodic `Ping("health_check_#PID<…>")`: first one interval after ready; None = none sent.
    health_check_interval_s: float | None = 30.0
    # That Ping's RPC deadline, counted from when it starts (after waiting its turn on the worker).
    health_check_timeout_s: float = 30.0

    @classmethod
    def for_profile(cls, profile: Profile) -> PoolTimings:
        if _legacy(profile):
            return cls(
                queue_timeout_s=profile.queue_timeout_s,  # rule queue_timeout_s (v0.6.0 pool.ex:18)
                max_queue=1000,  # v0.6.0 pool.ex:19 @default_max_queue_size 1000
                restart_max=3,  # v0.6.0 worker_starter.ex:167 Supervisor.init/2 without limits: OTP 3 in 5 s
                restart_window_s=5.0,
                reconcile_interval_s=_deadline(profile.reconcile_interval_s),  # from v0.9.1 (rule)
                stop_timeout_s=profile.shutdown_grace_s,  # rule shutdown_grace_s (v0.6.0 grpc_worker.ex:556)
                affinity_cache_ttl_s=60.0,  # v0.6.0 pool.ex:1041 expires_at = current_time + 60
                supervisor_restart_max=3,  # v0.6.0 worker_supervisor.ex DynamicSupervisor.init: 3 in 5 s
                supervisor_restart_window_s=5.0,
                # ApplicationCleanup only kills `grpc_server.py` by run id (snakepit: orphan-cleanup)
                cleanup_timeout_s=None,
                health_check_interval_s=30.0,  # v0.6.0 grpc_worker.ex:747-750 Process.send_after(…, 30_000)
                # v0.6.0 grpc_worker.ex:752-753 Client.health/2 without opts -> client.ex:86-88 ->
                # client_impl.ex:9,31-35 @default_timeout 30_000
                health_check_timeout_s=profile.health_check_timeout_s,
            )
        return cls(
            queue_timeout_s=profile.queue_timeout_s,  # HEAD defaults.ex:127,198-201 (:balanced), state.ex:53
            max_queue=1000,  # HEAD defaults.ex:364-366 pool_max_queue_size, state.ex:54
            restart_max=3,  # HEAD worker_starter.ex:183-184, defaults.ex:428-429
            restart_window_s=5.0,
            reconcile_interval_s=_deadline(profile.reconcile_interval_s),  # HEAD defaults.ex:425, pool.ex:540,648
            stop_timeout_s=profile.shutdown_grace_s,  # HEAD defaults.ex:477-479 graceful_shutdown_timeout_ms
            affinity_cache_ttl_s=60.0,  # HEAD defaults.ex:1338-1340, pool.ex:1546
            supervisor_restart_max=3,  # HEAD worker_supervisor.ex:30-35, defaults.ex:430-431
            supervisor_restart_window_s=5.0,
            cleanup_timeout_s=3.0,  # HEAD defaults.ex:1241-1254, runtime_cleanup.ex:27-61 (snakepit: shutdown-grace)
            cleanup_poll_s=0.05,
            health_check_interval_s=30.0,  # HEAD defaults.ex:499-502, grpc_worker.ex:1093-1095
            # HEAD defaults.ex:510-513, config.ex:820-825, grpc_worker.ex:1097-1100
            health_check_timeout_s=profile.health_check_timeout_s,
        )


@dataclass(frozen=True)
class Routed:
    """A call's reply plus where the pool sent it and why (evidence for routing clauses)."""

    worker_id: str
    reply: ToolReply
    pid: int = 0
    # "preferred" (session's worker), "any" (first free worker) or "queued" (handed over at a check-in).
    path: str = "any"
    preferred: str | None = None
    # The preferred worker's state when routing looked: "available", "busy", "missing" or None.
    preferred_state: str | None = None
    waited_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class HealthPing:
    """One periodic health Ping as the GRPCWorker sent it (monotonic times); failures are only logged."""

    worker_id: str
    pid: int
    message: str  # "health_check_#PID<0.N.0>": Client.health/3 on inspect(self()) of the GRPCWorker
    queued_at: float  # the timer fired and the Ping took its place in the worker's RPC line
    started_at: float  # its turn came: the RPC went out, with the health-check deadline from here
    finished_at: float
    error: str | None = None  # "STATUS: details" of a failed Ping; None when it answered OK

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(eq=False)
class _Gate:
    """A GRPCWorker's one-RPC-at-a-time line: the HEAD rpc_request_queue or the v0.6.0 mailbox (FIFO).

    Separate from the Pool's busy flag: the Pool never learns of health pings (snakepit: one-call-at-a-time).
    """

    waiting: collections.deque[object] = field(default_factory=collections.deque)
    running: object | None = None


@dataclass(eq=False)
class _Slot:
    """One Worker.Starter: its worker id survives restarts; the OS process does not."""

    index: int
    worker_id: str
    process: WorkerProcess | None = None
    state: str = "starting"  # starting | ready | down | empty
    busy: bool = False
    epoch: int = 0  # bumped when the slot is torn down wholesale, so late start threads discard their worker
    ready_count: int = 0
    death_mark: int | None = None  # ready_count when the slot's worker last died
    starter_restarts: collections.deque[float] = field(default_factory=collections.deque)
    start_error: BaseException | None = None


@dataclass(eq=False)
class _Request:
    """A queued call: Snakepit's `{from, command, args, opts, queued_at, timer, affinity_worker_id}`."""

    affinity: str | None
    slot: _Slot | None = None
    process: WorkerProcess | None = None
    cancelled: bool = False
    failure: PoolError | None = None


@dataclass
class _Lease:
    slot: _Slot
    process: WorkerProcess
    worker_id: str
    path: str
    preferred: str | None
    preferred_state: str | None
    waited_s: float
    epoch: int


def _allow(history: collections.deque[float], now: float, limit: int, window: float) -> bool:
    """OTP supervisor intensity: record a restart; False once more than `limit` fall within `window`."""
    while history and now - history[0] > window:
        history.popleft()
    history.append(now)
    return len(history) <= limit


class PoolEmulator:
    """Starts `size` workers through the launcher and routes calls to them the way Snakepit's Pool does."""

    def __init__(
        self,
        make_spec: Callable[[], WorkerSpec],
        profile: Profile,
        host: HostEmulator,
        size: int = 2,
        affinity: str = "hint",
        timings: PoolTimings | None = None,
        pool_name: str = "pool",
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._make_spec = make_spec
        self.profile = profile
        self.host = host
        self.size = size
        self.timings = timings or PoolTimings.for_profile(profile)
        self.pool_name = pool_name
        self._legacy = _legacy(profile)
        self.affinity = self._validate_mode(affinity)
        self.events: list[str] = []
        self.health_pings: list[HealthPing] = []
        self._t0 = time.monotonic()
        self._cond = threading.Condition(threading.RLock())
        self._slots = [_Slot(n, self._new_id(n)) for n in range(1, size + 1)]
        self._by_id: dict[str, _Slot] = {s.worker_id: s for s in self._slots}
        self._queue: collections.deque[_Request] = collections.deque()
        self._gates: dict[WorkerProcess, _Gate] = {}
        self._cache: dict[str, tuple[str, float]] = {}
        self._supervisor_restarts: collections.deque[float] = collections.deque()
        self._runtime_restarts: collections.deque[float] = collections.deque()
        self._retired: list[WorkerProcess] = []
        # Every worker process this pool created, in order: the evidence (and log files) of a failed check.
        self.launched: list[WorkerProcess] = []
        # Workers the HeartbeatMonitor stopped while they were still alive (not crashes it merely noticed).
        self._heartbeat_stopped: set[WorkerProcess] = set()
        self._threads: list[threading.Thread] = []
        self._initialized = True
        self._failed: str | None = None
        self._started = False
        self._stopping = False
        self._stop_results: dict[str, StopResult] | None = None
        self._halt = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="pool-watcher", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> PoolEmulator:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        """Start every slot in parallel and wait until all are ready; any start failure stops the pool."""
        with self._cond:
            if self._started:
                raise RuntimeError("pool already started")
            self._started = True
            self._event(f"start: {self.size} workers, profile {self.profile.name}, affinity {self.affinity}")
            for slot in self._slots:
                self._launch(slot, initial=True)
            done = self._cond.wait_for(lambda: all(s.state != "starting" for s in self._slots), timeout)
            failed = next((s.start_error for s in self._slots if s.start_error is not None), None)
        if not done or failed is not None:
            self.stop()
            if failed is not None:
                raise failed
            raise TimeoutError(f"pool workers not ready within {timeout} s\n" + "\n".join(self._evidence()))
        self._watcher.start()

    def stop(self) -> dict[str, StopResult]:
        """Application stop: SIGTERM every worker (group when it leads one), grace, SIGKILL; then RuntimeCleanup."""
        with self._cond:
            if self._stop_results is not None:
                return dict(self._stop_results)
            if self._stopping:  # another thread is stopping the pool: wait for its results
                self._cond.wait_for(lambda: self._stop_results is not None, 60.0)
                return dict(self._stop_results or {})
            self._stopping = True
            self._fail_queue("pool_stopped", "the Pool process is shutting down")
        results: dict[str, StopResult] = {}
        try:
            results = self._shutdown()
        except BaseException:
            self._force_kill()  # Ctrl-C or a bug mid-stop: still leave nothing behind
            raise
        finally:
            with self._cond:
                self._stop_results = results
                self._cond.notify_all()
        return dict(results)

    # -- calls -------------------------------------------------------------------------------------
    def execute(
        self,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        affinity: str | None = None,
        timeout: float = 60.0,
        binary: Mapping[str, bytes] | None = None,
        correlation_id: str | None = None,
    ) -> Routed:
        """`Snakepit.execute/3`: route by `session_id` (not sent, snakepit: worker-session-id), queue if all busy."""
        lease = self._checkout(tool, session_id, self._mode(affinity), timeout, queue=True)
        try:
            client = lease.process.client
            assert client is not None
            request, headers = client.tool_request(tool, params, binary=binary, correlation_id=correlation_id)
            turn = self._await_turn(lease, tool)  # behind a health Ping already in the worker's line
            started = time.monotonic()
            try:
                try:
                    # The RPC deadline is the whole `timeout`, queue wait or not (snakepit: call-deadlines).
                    reply = client.execute_request(request, headers, timeout)
                finally:
                    # Before the worker's reply starts its next queued RPC and the check-in its next call.
                    finished = time.monotonic()
                    self._end_turn(lease.process, turn)
            except (grpc.RpcError, ValueError) as err:  # ValueError: channel closed under a dead worker
                raise self._call_failed(lease, tool, err) from err
        finally:
            self._checkin(lease)
        return Routed(
            worker_id=lease.worker_id,
            reply=reply,
            pid=lease.process.pid,
            path=lease.path,
            preferred=lease.preferred,
            preferred_state=lease.preferred_state,
            waited_s=lease.waited_s,
            started_at=started,
            finished_at=finished,
        )

    def execute_in_session(
        self,
        session_id: str,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_param: bool = True,
        affinity: str | None = None,
        timeout: float = 60.0,
        binary: Mapping[str, bytes] | None = None,
        correlation_id: str | None = None,
    ) -> Routed:
        """Route by session and (by default) add it as the `session_id` parameter, as GRPCWorker does.

        `Snakepit.execute_in_session/4` itself only routes ("no args enhancement", HEAD snakepit.ex:75-80,
        v0.6.0 :51-56): pass `session_param=False` for exactly that call.
        """
        args = dict(params or {})
        if session_param:
            args["session_id"] = session_id  # Map.put: overrides a caller's own key (HEAD grpc_worker.ex:367-369)
        return self.execute(
            tool,
            args,
            session_id=session_id,
            affinity=affinity,
            timeout=timeout,
            binary=binary,
            correlation_id=correlation_id,
        )

    def execute_stream(
        self,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        affinity: str | None = None,
        timeout: float = 60.0,
    ) -> tuple[str, StreamResult]:
        """`Pool.execute_stream/4`: a checkout that never queues (no free worker is an error), then one stream."""
        lease = self._checkout(tool, session_id, self._mode(affinity), timeout, queue=False)
        try:
            client = lease.process.client
            assert client is not None
            turn = self._await_turn(lease, tool)
            try:
                result = client.stream(tool, params, timeout)
            finally:
                self._end_turn(lease.process, turn)
        except ValueError as err:
            raise self._call_failed(lease, tool, err) from err
        finally:
            self._checkin(lease)
        if result.code is not grpc.StatusCode.OK and lease.process.poll() is not None:
            with self._cond:
                self._on_death(lease.slot, lease.process, lease.process.poll(), f"died during stream {tool}")
        return lease.worker_id, result

    # -- observation and fault injection ---------------------------------------------------------------
    def worker_ids(self) -> list[str]:
        """Current worker id of every slot, in slot order."""
        with self._cond:
            return [s.worker_id for s in self._slots]

    def worker_sessions(self) -> set[str]:
        """The session id each ready worker gets on the wire (the one the HeartbeatMonitor beats)."""
        with self._cond:
            return {s.process.client.session_id for s in self._slots
                    if s.state == "ready" and s.process is not None and s.process.client is not None}

    def worker(self, worker_id: str) -> WorkerProcess:
        """The OS process currently behind a worker id (KeyError if that id has none)."""
        with self._cond:
            slot = self._current(worker_id)
            if slot is None or slot.process is None:
                raise KeyError(worker_id)
            return slot.process

    def busy(self, worker_id: str) -> bool:
        """True while a call runs on that worker."""
        with self._cond:
            slot = self._current(worker_id)
            return slot is not None and slot.state == "ready" and slot.busy

    def slot_states(self) -> dict[str, str]:
        """worker id -> starting | ready | down | empty."""
        with self._cond:
            return {s.worker_id: s.state for s in self._slots}

    def queued(self) -> int:
        """Requests in the queue (at 0.6 this includes timed-out ones not yet popped)."""
        with self._cond:
            return len(self._queue)

    @property
    def failed(self) -> str | None:
        """Why the pool stopped serving on its own (restart limits exhausted), if it did."""
        return self._failed

    def preferred_worker(self, session_id: str) -> str | None:
        """The worker routing would prefer for a session now (cache, else store), without touching either."""
        with self._cond:
            cached = self._cache.get(session_id)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            session = self.host.store.peek_session(session_id)
            return None if session is None else session.last_worker_id

    def crash(self, worker_id: str) -> None:
        """SIGKILL the worker's OS process (an OOM kill, say) and let the pool handle the death at once."""
        with self._cond:
            slot = self._current(worker_id)
            if slot is None or slot.process is None or slot.state != "ready":
                raise KeyError(f"no running worker {worker_id!r}")
            process = slot.process
            self._event(f"crash(): SIGKILL {worker_id} (pid {process.pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        status = process.wait_exit(5.0)
        with self._cond:
            self._on_death(slot, process, status, "killed by crash()")

    def wait_restarted(
        self, worker_id_or_slot: str | int, timeout: float = 30.0, previous_pid: int | None = None
    ) -> str:
        """Wait until the slot runs a worker started after its last death (or other than `previous_pid`)."""
        with self._cond:
            slot = self._slot_of(worker_id_or_slot)

            def restarted() -> bool:
                if slot.state != "ready" or slot.process is None:
                    return False
                if previous_pid is not None:
                    return slot.process.pid != previous_pid
                return slot.death_mark is not None and slot.ready_count > slot.death_mark

            if not self._cond.wait_for(restarted, timeout):
                raise TimeoutError(
                    f"slot {slot.index} ({slot.worker_id}) not restarted within {timeout} s (state {slot.state})\n"
                    + "\n".join(self._evidence())
                )
            return slot.worker_id

    # -- routing (snakepit: routing-affinity) ---------------------
    def _mode(self, affinity: str | None) -> str:
        return self.affinity if affinity is None else self._validate_mode(affinity)

    def _validate_mode(self, mode: str) -> str:
        if mode not in AFFINITY_MODES:
            # Snakepit silently falls back to :hint (HEAD pool.ex normalize_affinity_mode); a typo here is a bug.
            raise ValueError(f"unknown affinity mode {mode!r}; known: {', '.join(AFFINITY_MODES)}")
        if mode != "hint" and self._legacy:
            raise ValueError(f"affinity {mode!r} does not exist in Snakepit {self.profile.snakepit_version} "
                             "(rule strict_affinity)")
        return mode

    def _checkout(self, tool: str, session_id: str | None, mode: str, timeout: float, queue: bool) -> _Lease:
        started = time.monotonic()
        with self._cond:
            self._check_serving()
            preferred = self._preferred(session_id) if session_id else None
            state = self._status(preferred) if preferred else None
            slot: _Slot | None = None
            path = "any"
            wait_for: str | None = None  # strict_queue: the request waits for this worker only
            if preferred is not None and state == "available":
                slot, path = self._current(preferred), "preferred"
            elif preferred is not None and state == "busy" and mode == "strict_queue":
                wait_for = preferred
            elif preferred is not None and state == "busy" and mode == "strict_fail_fast":
                raise self._refuse("worker_busy", tool, session_id, preferred, state)
            elif preferred is not None and state == "missing" and mode != "hint":
                raise self._refuse("session_worker_unavailable", tool, session_id, preferred, state)
            if slot is None and wait_for is None:
                slot = self._first_available()
            if slot is not None:
                assert slot.process is not None
                slot.busy = True
                # HEAD stores affinity on both paths (pool.ex:1298-1336); v0.6.0 only off the preferred one (:985).
                if session_id and (path == "any" or not self._legacy):
                    self._store_affinity(session_id, slot.worker_id)
                self._event(f"{tool} session={session_id!r} [{mode}] preferred={preferred} ({state}) -> "
                            f"{slot.worker_id} ({path})")
                return _Lease(slot, slot.process, slot.worker_id, path, preferred, state, 0.0, slot.epoch)
            if not queue:
                # Stream checkout never queues (HEAD pool.ex:283-286,1850-1858; v0.6.0 pool.ex:100-104,368-386).
                kind = "worker_busy" if wait_for else "no_workers_available"
                raise self._refuse(kind, tool, session_id, preferred, state)
            return self._enqueue(tool, session_id, mode, preferred, state, wait_for, timeout, started)

    def _enqueue(
        self,
        tool: str,
        session_id: str | None,
        mode: str,
        preferred: str | None,
        state: str | None,
        wait_for: str | None,
        timeout: float,
        started: float,
    ) -> _Lease:
        """Wait in the FIFO queue (lock held); `{:error, :queue_timeout}` when its timer fires first."""
        if len(self._queue) >= self.timings.max_queue:
            # Snakepit's reason is :pool_saturated (HEAD scheduler.ex:16-40, v0.6.0 pool.ex:604-623).
            raise self._refuse("queue_full", tool, session_id, preferred, state,
                               f"pool_saturated: {len(self._queue)} queued (max {self.timings.max_queue})")
        request = _Request(affinity=wait_for)
        self._queue.append(request)
        self._event(f"{tool} session={session_id!r} [{mode}] preferred={preferred} ({state}) -> queued "
                    f"(for {wait_for or 'any worker'}; {len(self._queue)} in queue)")
        wait = min(self.timings.queue_timeout_s, timeout)
        deadline = started + wait
        while request.slot is None and request.failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        if request.failure is not None:
            raise request.failure
        if request.slot is None or request.process is None:
            if self._legacy:
                request.cancelled = True  # v0.6.0 keeps it queued until a check-in pops it (pool.ex:733-753)
            else:
                self._queue.remove(request)  # HEAD drops it at once (event_handler.ex:13-55)
            kind = "queue_timeout" if wait == self.timings.queue_timeout_s else "timeout"
            raise self._refuse(kind, tool, session_id, preferred, state, f"waited {wait:.3f} s in the queue")
        waited = time.monotonic() - started
        slot = request.slot
        return _Lease(slot, request.process, slot.worker_id, "queued", preferred, state, waited, slot.epoch)

    def _preferred(self, session_id: str) -> str | None:
        """The affinity cache, else SessionStore's last_worker_id, cached for the TTL (HEAD pool.ex:1508-1550)."""
        now = time.monotonic()
        cached = self._cache.get(session_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        session = self.host.store.get_session(session_id)  # touches the session, as Elixir does
        if session is None or session.last_worker_id is None:
            return None
        self._cache[session_id] = (session.last_worker_id, now + self.timings.affinity_cache_ttl_s)
        return session.last_worker_id

    def _status(self, worker_id: str) -> str:
        """HEAD preferred_worker_status (pool.ex:1342-1356) without CrashBarrier taint (off by default)."""
        slot = self._current(worker_id)
        if slot is None or slot.state != "ready":
            return "missing"
        return "busy" if slot.busy else "available"

    def _first_available(self) -> _Slot | None:
        # Enum.find/take over a MapSet: up to 32 members that is sorted term order (HEAD :1416, v0.6.0 :977).
        free = [s for s in self._slots if s.state == "ready" and not s.busy]
        return min(free, key=lambda s: s.worker_id) if free else None

    def _store_affinity(self, session_id: str, worker_id: str) -> None:
        # Snakepit does this in a Task and only logs a failure (HEAD pool.ex:1556-1574).
        try:
            self.host.store.store_worker_session(session_id, worker_id)
        except SessionStoreError as err:
            self._event(f"store_worker_session({session_id!r}, {worker_id}) failed: {err}")

    def _checkin(self, lease: _Lease) -> None:
        with self._cond:
            slot = lease.slot
            if slot.process is lease.process and slot.state == "ready":
                self._dispatch(slot)

    def _dispatch(self, slot: _Slot) -> None:
        """A worker is free: hand it the first queued request it may serve, else mark it available."""
        if self._legacy:
            # v0.6.0: plain FIFO; a timed-out request is popped and skipped (pool.ex:658-725).
            while self._queue:
                request = self._queue.popleft()
                if not request.cancelled:
                    self._assign(request, slot)
                    return
        else:
            # HEAD: first request without affinity or waiting for this worker (queue.ex:85-160).
            for request in self._queue:
                if request.affinity in (None, slot.worker_id):
                    self._queue.remove(request)
                    self._assign(request, slot)
                    return
        slot.busy = False

    def _assign(self, request: _Request, slot: _Slot) -> None:
        # A queued request records no affinity (HEAD event_handler.ex:276-330, v0.6.0 pool.ex:681-700).
        slot.busy = True
        request.slot, request.process = slot, slot.process
        self._event(f"check-in of {slot.worker_id} serves a queued request")
        self._cond.notify_all()

    def _check_serving(self) -> None:
        if self._stopping:
            raise PoolError("pool_stopped", "the pool is stopped", self._evidence())
        if self._failed is not None:
            raise PoolError("pool_stopped", self._failed, self._evidence())
        if not self._started:
            raise PoolError("pool_not_initialized", "start() was not called", self._evidence())
        if not self._initialized:
            # HEAD dispatcher.ex:31-37 while a restarted Pool waits for its first worker_ready.
            raise PoolError("pool_not_initialized", "the Pool is re-initialising", self._evidence())

    def _refuse(
        self, kind: str, tool: str, session_id: str | None, preferred: str | None, state: str | None, why: str = ""
    ) -> PoolError:
        self._event(f"{tool} session={session_id!r} preferred={preferred} ({state}) -> {{:error, :{kind}}} {why}")
        return PoolError(kind, f"{tool} session={session_id!r} preferred={preferred} ({state}) {why}".rstrip(),
                         self._evidence())

    def _call_failed(self, lease: _Lease, tool: str, err: Exception) -> PoolError:
        """Classify a failed RPC: pool gone, worker died, v0.6 GRPCWorker crash, or a plain error reply."""
        code = err.code() if isinstance(err, grpc.RpcError) else None
        detail = f"{code.name}: {err.details()}" if isinstance(err, grpc.RpcError) and code else repr(err)
        where = f"{tool} on {lease.worker_id}"
        process = lease.process
        status = process.poll()
        if status is None and (code is grpc.StatusCode.UNAVAILABLE or not processes.alive(process.pid)):
            # The port closes a moment before the exit is reapable, and poll() says None while another
            # thread (watcher, crash()) is reaping the same process.
            status = process.wait_exit(0.5)
        crashes = status is None and self.profile.non_ok_execute_status_crashes and not self._stopping
        if crashes:
            # v0.6.0: CaseClauseError in the GRPCWorker; terminate/2 SIGKILLs it (snakepit: execute-status-crash).
            self._event(f"{lease.worker_id}: non-OK ExecuteTool status crashes the v0.6 GRPCWorker ({detail}); "
                        "immediate SIGKILL")
            process.send_signal(signal.SIGKILL, group=False)
            status = process.wait_exit(5.0)
        with self._cond:
            if self._stopping or self._failed is not None or lease.slot.epoch != lease.epoch:
                return PoolError("pool_stopped", f"{where}: {detail}", self._evidence())
            if status is not None:
                self._on_death(lease.slot, process, status, "GRPCWorker crashed" if crashes else f"died during {tool}")
                if not self.profile.non_ok_execute_status_crashes:
                    # HEAD: the GRPCWorker outlives the failed RPC and returns ClientImpl's mapping of the dropped
                    # connection's INTERNAL status (client_impl.ex:216-232) before its Port's exit reaches it.
                    return PoolError("internal", f"{{:error, :internal}} {where}: the worker died (exit status "
                                     f"{_port_status(status)}) during the call ({detail})", self._evidence())
                return PoolError("worker_crashed", f"{{:worker_exit, _}} {where}: exit status {_port_status(status)} "
                                 f"({detail})", self._evidence())
            self._event(f"{where} failed: {detail}")
            return PoolError("rpc_error", f"{where}: {detail}", self._evidence())

    # -- workers: start, death, restart escalation (snakepit: restarts) ------------------------------------
    def _new_id(self, index: int) -> str:
        return f"{self.pool_name}_worker_{index}_{next(_unique)}"

    def _current(self, worker_id: str) -> _Slot | None:
        slot = self._by_id.get(worker_id)
        return slot if slot is not None and slot.worker_id == worker_id else None

    def _slot_of(self, worker_id_or_slot: str | int) -> _Slot:
        if isinstance(worker_id_or_slot, int):
            return self._slots[worker_id_or_slot - 1]
        return self._by_id[worker_id_or_slot]

    def _launch(self, slot: _Slot, initial: bool = False, retire: WorkerProcess | None = None,
                graceful_retire: bool = False) -> None:
        """Start the slot's worker on its own thread (lock held), after stopping the one it replaces."""
        slot.state, slot.busy, slot.start_error = "starting", False, None
        thread = threading.Thread(
            target=self._start_worker,
            args=(slot, slot.epoch, initial, retire, graceful_retire),
            name=f"pool-start-{slot.worker_id}",
            daemon=True,
        )
        self._track(thread)

    def _start_worker(
        self, slot: _Slot, epoch: int, initial: bool, retire: WorkerProcess | None, graceful_retire: bool
    ) -> None:
        if retire is not None:
            retire.stop(graceful=graceful_retire, grace_s=self.timings.stop_timeout_s)
        with self._cond:
            if self._stopping or slot.epoch != epoch:
                return
            try:
                process = WorkerProcess(self._make_spec())
                self.launched.append(process)
            except Exception as err:
                slot.start_error, slot.state = err, "empty"
                self._event(f"{slot.worker_id}: make_spec failed: {err!r}")
                self._cond.notify_all()
                return
            slot.process = process
        began = time.monotonic()
        try:
            process.start()
        except Exception as err:  # WorkerStartError, or a channel closed under it by stop()
            status = getattr(err, "exit_status", None)
            status = process.poll() if status is None else status
            process.stop(graceful=False)
            with self._cond:
                if not (self._stopping or slot.epoch != epoch):
                    self._start_failed(slot, process, err, _port_status(status), initial)
            return
        self._watch_heartbeat(process)
        with self._cond:
            if not (self._stopping or slot.epoch != epoch):
                slot.state, slot.ready_count = "ready", slot.ready_count + 1
                self._initialized = True
                self._event(f"{slot.worker_id} ready: pid {process.pid} in {time.monotonic() - began:.3f} s")
                self._start_health_checks(slot, process)
                self._dispatch(slot)  # worker_ready drives the queue like a check-in (HEAD pool.ex:867)
                self._cond.notify_all()
                return
        process.stop(grace_s=self.timings.stop_timeout_s)  # the pool stopped or was torn down meanwhile

    def _watch_heartbeat(self, process: WorkerProcess) -> None:
        """Note whether the HeartbeatMonitor fails a live worker (a stop) or one already dead (a crash)."""
        monitor = process.heartbeat
        if monitor is None:
            return
        if monitor.failure is not None:
            self._heartbeat_stopped.add(process)
            return
        original = monitor.on_failure

        def on_failure(reason: str) -> None:
            # A killed worker closes its sockets a moment before it is a zombie: give it that moment.
            # Not poll(): it answers None while another thread waits on the same Popen.
            deadline = time.monotonic() + _DYING_S
            while processes.alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if processes.alive(process.pid):
                self._heartbeat_stopped.add(process)
            original(reason)

        monitor.on_failure = on_failure

    def _start_failed(self, slot: _Slot, process: WorkerProcess, err: Exception, status: int | None,
                      initial: bool) -> None:
        first_line = str(err).splitlines()[0] if str(err) else repr(err)
        self._event(f"{slot.worker_id} failed to start (exit status {status}): {first_line}")
        if initial:
            slot.start_error, slot.state = err, "empty"
        elif not self._legacy and status in (0, 143):
            # HEAD: {:error, :shutdown} stops the :transient child normally; nothing restarts it (snakepit: restarts).
            slot.state = "empty"
            self._event(f"{slot.worker_id}: startup exit {status} is :shutdown for a :transient child; slot empty")
        else:
            self._restart(slot, process, graceful=False)
        self._cond.notify_all()

    # -- the GRPCWorker's own RPC line and health pings (snakepit: one-call-at-a-time, ping) ------------------
    def _gate(self, process: WorkerProcess) -> _Gate:
        return self._gates.setdefault(process, _Gate())

    def _gone(self, slot: _Slot, process: WorkerProcess) -> bool:
        """(Lock held.) The GRPCWorker of `process` is no more (dead, replaced, or the pool stops)."""
        return self._stopping or slot.process is not process or slot.state != "ready"

    def _await_turn(self, lease: _Lease, tool: str) -> object:
        """Join the worker's RPC line and wait until this call is at its head and nothing runs."""
        token = object()
        with self._cond:
            gate = self._gate(lease.process)
            gate.waiting.append(token)
            if gate.running is not None or gate.waiting[0] is not token:
                self._event(f"{tool} on {lease.worker_id} waits behind a health Ping in the GRPCWorker's line")
            # Once its worker is gone the call stops waiting: its RPC then fails and is classified as usual.
            self._wait_turn(gate, token, lambda: self._gone(lease.slot, lease.process))
        return token

    def _wait_turn(self, gate: _Gate, token: object, give_up: Callable[[], bool]) -> bool:
        """(Lock held.) True once `token` runs; False (and out of the line) if `give_up()` turns true first."""
        while True:
            if give_up():
                gate.waiting.remove(token)
                self._cond.notify_all()
                return False
            if gate.running is None and gate.waiting[0] is token:
                break
            self._cond.wait(0.5)
        gate.waiting.popleft()
        gate.running = token
        return True

    def _end_turn(self, process: WorkerProcess, token: object) -> None:
        with self._cond:
            gate = self._gate(process)
            if gate.running is token:
                gate.running = None
                self._cond.notify_all()

    def _start_health_checks(self, slot: _Slot, process: WorkerProcess) -> None:
        """(Lock held.) Arm the worker's health-check timer as it is acknowledged ready.

        HEAD `complete_worker_initialization` (grpc_worker.ex:285-286, after worker_ready, bootstrap.ex:80-81);
        v0.6.0 after worker_ready (grpc_worker.ex:366-369).
        """
        if self.timings.health_check_interval_s is None:
            return
        thread = threading.Thread(
            target=self._health_checks,
            args=(slot, process, slot.worker_id, f"#PID<0.{next(_beam_pids)}.0>", time.monotonic()),
            name=f"pool-health-{slot.worker_id}",
            daemon=True,
        )
        self._track(thread)

    def _health_checks(
        self, slot: _Slot, process: WorkerProcess, worker_id: str, beam_pid: str, ready_at: float
    ) -> None:
        """The `:health_check` timer of one GRPCWorker; it dies with the worker (or the pool)."""
        interval = self.timings.health_check_interval_s
        assert interval is not None
        due = ready_at + interval
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._gone(slot, process), max(0.0, due - time.monotonic())):
                    return
                # The Ping takes its place in the worker's line when the timer fires: behind a running call,
                # ahead of any call the Pool hands this worker later.
                token = object()
                self._gate(process).waiting.append(token)
                fired = time.monotonic()
                ping: threading.Thread | None = None
                if not self._legacy:
                    ping = threading.Thread(
                        target=self._health_ping,
                        args=(slot, process, worker_id, beam_pid, token, fired),
                        name=f"pool-ping-{slot.worker_id}",
                        daemon=True,
                    )
                    self._track(ping)
            if ping is None:
                # v0.6.0 pings inside handle_info(:health_check), blocking the GRPCWorker, and re-arms the
                # timer only after the Ping returned, pass or fail (grpc_worker.ex:498-512).
                self._health_ping(slot, process, worker_id, beam_pid, token, fired)
                due = time.monotonic() + interval
            else:
                # HEAD re-arms the timer first, then enqueues the Ping as an async RPC (grpc_worker.ex:518-526,
                # 1028-1045): one Ping per tick, however long earlier ones wait or run.
                due = fired + interval

    def _health_ping(
        self, slot: _Slot, process: WorkerProcess, worker_id: str, beam_pid: str, token: object, queued_at: float
    ) -> None:
        """Wait for the Ping's turn, send it, log a failure; a health ping never stops or restarts a worker."""
        with self._cond:
            gate = self._gate(process)
            if not self._wait_turn(gate, token, lambda: self._gone(slot, process)):
                return  # the GRPCWorker died with its line
            message = f"health_check_{beam_pid}"
            timeout = self.timings.health_check_timeout_s
            self._event(f"{worker_id}: health Ping({message!r}) sent, deadline {timeout:g} s")
        started = time.monotonic()
        error: str | None = None
        try:
            client = process.client
            assert client is not None
            client.ping(message, timeout=timeout)
        except grpc.RpcError as err:
            error = f"{err.code().name}: {err.details()}"
        except ValueError as err:  # channel closed under a worker being stopped
            error = repr(err)
        finally:
            finished = time.monotonic()
            self._end_turn(process, token)
        with self._cond:
            if self._stopping:
                return  # the GRPCWorker is terminating; nobody handles the result
            self.health_pings.append(
                HealthPing(worker_id, process.pid, message, queued_at, started, finished, error)
            )
            if error is None:
                self._event(f"{worker_id}: health Ping answered OK in {finished - started:.3f} s")
            else:
                # HEAD grpc_worker.ex:1036-1037 SLog.warning; v0.6.0 grpc_worker.ex:506-507 Logger.warning.
                self._event(f"{worker_id}: health check failed ({error}) after {finished - started:.3f} s; "
                            "only logged, the worker stays")

    def _watch(self) -> None:
        """Notice workers that exit on their own (crash, unprompted exit, heartbeat stop)."""
        while not self._halt.wait(_WATCH_INTERVAL_S):
            with self._cond:
                running = [(s, s.process) for s in self._slots if s.state == "ready" and s.process is not None]
            for slot, process in running:
                status = process.poll()
                if status is not None:
                    with self._cond:
                        self._on_death(slot, process, status, "exited")

    def _on_death(self, slot: _Slot, process: WorkerProcess, status: int | None, cause: str) -> None:
        """The Pool's :DOWN handling (lock held), then the Worker.Starter's decision."""
        if slot.process is not process or slot.state != "ready" or self._stopping:
            return
        slot.state, slot.busy, slot.death_mark = "down", False, slot.ready_count
        # The dead id's cache entries go (HEAD event_handler.ex:85, v0.6.0 pool.ex:767); SessionStore keeps it.
        self._cache = {sid: entry for sid, entry in self._cache.items() if entry[0] != slot.worker_id}
        self._event(f"{slot.worker_id} (pid {process.pid}) {cause}: exit status {_port_status(status)}")
        failure = process.heartbeat.failure if process.heartbeat is not None else None
        if failure is not None and process in self._heartbeat_stopped:
            # HeartbeatMonitor stops the worker with {:shutdown, reason}: a :transient child is not restarted
            # (HEAD heartbeat_monitor.ex:402-409, grpc_worker.ex:566-573; worker_starter.ex:172).
            slot.state = "empty"
            self._event(f"{slot.worker_id}: stopped by its heartbeat ({failure}); {{:shutdown, _}} is not restarted")
            self._retire(process, graceful=False)
        else:
            self._restart(slot, process, graceful=False)
        self._cond.notify_all()

    def _restart(self, slot: _Slot, process: WorkerProcess, graceful: bool) -> None:
        """Worker.Starter restart with the same id, escalating when the supervisors' limits are hit (lock held)."""
        now, t = time.monotonic(), self.timings
        if _allow(slot.starter_restarts, now, t.restart_max, t.restart_window_s):
            self._event(f"Worker.Starter restarts {slot.worker_id} "
                        f"({len(slot.starter_restarts)}/{t.restart_max} in {t.restart_window_s:g} s)")
            self._launch(slot, retire=process, graceful_retire=graceful)
            return
        self._event(f"Worker.Starter for {slot.worker_id} gives up: more than {t.restart_max} restarts "
                    f"in {t.restart_window_s:g} s")
        if _allow(self._supervisor_restarts, now, t.supervisor_restart_max, t.supervisor_restart_window_s):
            # The Starter is :permanent under WorkerSupervisor, which restarts it: same id, fresh history.
            slot.starter_restarts.clear()
            self._event(f"WorkerSupervisor restarts the Worker.Starter of {slot.worker_id} (same id)")
            self._launch(slot, retire=process, graceful_retire=graceful)
            return
        self._retire(process, graceful=False)
        self._escalate()

    def _escalate(self) -> None:
        """WorkerSupervisor gave up too: what happens above it differs between eras (docs/pool.md)."""
        t = self.timings
        self._event(f"WorkerSupervisor gives up: more than {t.supervisor_restart_max} restarts "
                    f"in {t.supervisor_restart_window_s:g} s")
        if self._legacy:
            # v0.6.0: Snakepit.Supervisor (:one_for_one) restarts an empty WorkerSupervisor; the Pool lives on
            # without workers and without reconciliation, so every call queues and times out.
            self._event("Snakepit.Supervisor restarts WorkerSupervisor empty; the v0.6.0 Pool has no workers left")
            self._tear_down_slots(new_ids=False)
            return
        if _allow(self._runtime_restarts, time.monotonic(), t.supervisor_restart_max, t.supervisor_restart_window_s):
            # HEAD: RuntimeSupervisor (:rest_for_one) restarts WorkerSupervisor and the Pool, which starts afresh.
            self._event("RuntimeSupervisor restarts WorkerSupervisor and Pool: new worker ids, queued calls fail")
            self._fail_queue("pool_stopped", "the Pool process was restarted")
            self._cache.clear()  # the ETS cache belonged to the old Pool process
            self._supervisor_restarts.clear()
            self._initialized = False
            self._tear_down_slots(new_ids=True)
            return
        self._failed = "restart limits exhausted up to RuntimeSupervisor: Snakepit's supervision tree stops"
        self._event(self._failed)
        self._fail_queue("pool_stopped", self._failed)
        self._tear_down_slots(new_ids=False)

    def _tear_down_slots(self, new_ids: bool) -> None:
        for slot in self._slots:
            slot.epoch += 1
            old, slot.process = slot.process, None
            slot.starter_restarts.clear()
            if not new_ids:
                if old is not None:
                    self._retire(old, graceful=True)
                slot.state, slot.busy = "empty", False
                continue
            slot.worker_id = self._new_id(slot.index)
            self._by_id[slot.worker_id] = slot
            self._launch(slot, retire=old, graceful_retire=True)

    def _retire(self, process: WorkerProcess, graceful: bool) -> None:
        """Stop a replaced worker in the background; stop() makes sure it is gone."""
        self._retired.append(process)
        thread = threading.Thread(
            target=process.stop,
            kwargs={"graceful": graceful, "grace_s": self.timings.stop_timeout_s},
            name="pool-retire",
            daemon=True,
        )
        self._track(thread)

    def _track(self, thread: threading.Thread) -> None:
        """Start a helper thread and keep it for stop() to join; a crash loop makes many, so drop finished ones."""
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _fail_queue(self, kind: str, why: str) -> None:
        while self._queue:
            request = self._queue.popleft()
            request.failure = PoolError(kind, why, self._evidence())
        self._cond.notify_all()

    # -- stop (snakepit: shutdown-grace) ----------------------
    def _shutdown(self) -> dict[str, StopResult]:
        self._halt.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        with self._cond:
            ready = [(s.worker_id, s.process) for s in self._slots if s.process is not None and s.state == "ready"]
            starting = [(s.worker_id, s.process) for s in self._slots if s.process is not None and s.state != "ready"]
            threads = list(self._threads)
        grace = self.timings.stop_timeout_s
        self._event(f"stop: SIGTERM {len(ready)} workers (their groups where they lead one), "
                    f"{grace:g} s grace, then SIGKILL")
        results: dict[str, StopResult] = {}

        def stop_one(worker_id: str, process: WorkerProcess) -> None:
            results[worker_id] = process.stop(grace_s=grace)

        stoppers = [
            threading.Thread(target=stop_one, args=item, name=f"pool-stop-{item[0]}", daemon=True) for item in ready
        ]
        for stopper in stoppers:
            stopper.start()
        for _, process in starting:
            if process.proc is not None:  # start threads see _stopping and finish the job themselves
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + _JOIN_SLACK_S
        for thread in [*stoppers, *threads]:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker_id, process in starting:
            results[worker_id] = process.stop(graceful=False)
        for process in [p for _, p in ready] + self._retired:
            process.stop(graceful=False)  # no-op for those already stopped
        if self.timings.cleanup_timeout_s is not None:
            self._runtime_cleanup([p for _, p in ready + starting] + self._retired)
        self._event(f"stopped: {', '.join(f'{w} exit {_port_status(r.exit_status)}' for w, r in results.items())}")
        return results

    def _runtime_cleanup(self, processes: Iterable[WorkerProcess]) -> None:
        """RuntimeCleanup: SIGTERM what is left of this run, poll every 50 ms up to 3 s, then SIGKILL."""
        targets = [p for p in processes if p.proc is not None]
        alive = [p for p in targets if _alive(p)]
        if not alive:
            self._event("RuntimeCleanup: no worker process left")
            return
        self._event(f"RuntimeCleanup: SIGTERM {len(alive)} leftover targets")
        for process in alive:
            process.send_signal(signal.SIGTERM)  # the group when the worker leads one
        assert self.timings.cleanup_timeout_s is not None
        deadline = time.monotonic() + self.timings.cleanup_timeout_s
        while alive and time.monotonic() < deadline:
            time.sleep(self.timings.cleanup_poll_s)
            alive = [p for p in alive if _alive(p)]
        for process in alive:
            process.send_signal(signal.SIGKILL)
        if alive:
            self._event(f"RuntimeCleanup: SIGKILL {len(alive)} targets after {self.timings.cleanup_timeout_s:g} s")

    def _force_kill(self) -> None:
        with self._cond:
            processes = [s.process for s in self._slots if s.process is not None] + self._retired
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop(graceful=False)

    # -- evidence ----------------------------------------------------------------------------------
    def _event(self, text: str) -> None:
        line = f"{time.monotonic() - self._t0:8.3f}s {text}"
        self.events.append(line)
        logger.debug("%s", line)

    def _evidence(self) -> list[str]:
        return self.events[-_EVIDENCE_LINES:]


def _alive(process: WorkerProcess) -> bool:
    """Our own unreaped pid, or members left in its group (a zombie counts as dead, snakepit: shutdown-grace).

    A reaped pid is never checked by number: it may already belong to someone else.
    """
    return process.poll() is None or (process.process_group and bool(processes.group_members(process.pid)))
