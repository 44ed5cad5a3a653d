"""What the Pool knows and the shapes it passes around: Snakepit's Pool state (v0.13.0 lib/snakepit/pool/state.ex).

The timings of each era, the error kinds a call can get, the worker slots and queued requests, and PoolState:
the fields every part of the pool emulator reads (docs/pool.md, "The parts").
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from contract_tests.contract.profiles import Profile
from contract_tests.driver.launcher import StopResult, WorkerProcess, WorkerSpec
from contract_tests.elixir.host import HostEmulator
from contract_tests.protocol.codec import ToolReply

logger = logging.getLogger("contract_tests.elixir.pool")

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
_EVIDENCE_LINES = 40
# `:erlang.unique_integer([:positive])` in worker ids (HEAD initializer.ex:292, v0.6.0 pool.ex:908).
_unique = itertools.count(1)


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


class PoolState:
    """The Pool's fields and the small helpers every part uses; the parts add behaviour (docs/pool.md)."""

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
        self._watcher: threading.Thread | None = None  # started by start()

    def _validate_mode(self, mode: str) -> str:
        if mode not in AFFINITY_MODES:
            # Snakepit silently falls back to :hint (HEAD pool.ex normalize_affinity_mode); a typo here is a bug.
            raise ValueError(f"unknown affinity mode {mode!r}; known: {', '.join(AFFINITY_MODES)}")
        if mode != "hint" and self._legacy:
            raise ValueError(f"affinity {mode!r} does not exist in Snakepit {self.profile.snakepit_version} "
                             "(rule strict_affinity)")
        return mode

    def _refuse(
        self, kind: str, tool: str, session_id: str | None, preferred: str | None, state: str | None, why: str = ""
    ) -> PoolError:
        self._event(f"{tool} session={session_id!r} preferred={preferred} ({state}) -> {{:error, :{kind}}} {why}")
        return PoolError(kind, f"{tool} session={session_id!r} preferred={preferred} ({state}) {why}".rstrip(),
                         self._evidence())

    def _new_id(self, index: int) -> str:
        return f"{self.pool_name}_worker_{index}_{next(_unique)}"

    def _current(self, worker_id: str) -> _Slot | None:
        slot = self._by_id.get(worker_id)
        return slot if slot is not None and slot.worker_id == worker_id else None

    def _slot_of(self, worker_id_or_slot: str | int) -> _Slot:
        if isinstance(worker_id_or_slot, int):
            return self._slots[worker_id_or_slot - 1]
        return self._by_id[worker_id_or_slot]

    def _track(self, thread: threading.Thread) -> None:
        """Start a helper thread and keep it for stop() to join; a crash loop makes many, so drop finished ones."""
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _event(self, text: str) -> None:
        line = f"{time.monotonic() - self._t0:8.3f}s {text}"
        self.events.append(line)
        logger.debug("%s", line)

    def _evidence(self) -> list[str]:
        return self.events[-_EVIDENCE_LINES:]
