"""Start and stop any worker command exactly as Snakepit does (snakepit: launch-argv, shutdown-grace).

The argv gets Snakepit's flags appended in Snakepit's order, the environment
gets the profile's variables, stdout and stderr share one pipe, and readiness,
the connect-and-Ping handshake, the post-handshake calls and the shutdown
(SIGTERM, grace, SIGKILL, process group) follow the profile. Every worker is
tagged in its environment so a reaper can find strays after a crash.

A spec with an image runs the worker as a container of that image instead
(container.py): same flags and Snakepit variables, same readiness and stop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from contract_tests.contract.profiles import Profile, Readiness
from contract_tests.driver import ownership, processes, worker_coverage
from contract_tests.driver.client import TelemetryStream, WorkerClient
from contract_tests.driver.heartbeat import HeartbeatMonitor
from contract_tests.driver.readiness import ReadyFileWait, ReadyLineWait
from contract_tests.driver.run_tag import RUN_TAG, RUN_TAG_ENV
from contract_tests.driver.visible import visible
from contract_tests.errors import WorkerStartError

if TYPE_CHECKING:
    from contract_tests.driver.container import ContainerProcess

logger = logging.getLogger(__name__)

# Each worker's own tag, inherited by everything it starts: what survives its stop is found by it (CLEANUP-009).
WORKER_TAG_ENV = "SNAKEPIT_CONTRACT_WORKER"
# How long a stopped worker's processes get to finish exiting before they count as left behind.
LEFTOVER_GRACE_S = 1.0
_OUTPUT_KEEP_BYTES = 64 * 1024
_DRAIN_S = 1.0
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# Snakepit's connect retry: 5 attempts, min(50*2^(k-1), 500) ms + jitter (snakepit: connect-retry).
_CONNECT_ATTEMPTS = 5
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}


def _base36(n: int, width: int) -> str:
    digits = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        digits = _BASE36[r] + digits
    return digits


def new_run_id() -> str:
    """7 lowercase base36 chars like Snakepit 0.13's RunID: 5 from the clock, 2 from a counter."""
    return _base36(int(time.time()) % 36**5, 5) + _base36(random.randrange(1296), 2)


RUN_ID = new_run_id()


def _truthy_group_env(env: dict[str, str]) -> bool:
    return env.get("SNAKEPIT_PROCESS_GROUP", "").lower() in {"1", "true", "yes", "on"}


@dataclass
class WorkerSpec:
    """What to launch and how; build_argv/build_env apply the profile (snakepit: launch-argv)."""

    command: Sequence[str]
    profile: Profile
    elixir_address: str
    timeout_scale: float = 1.0
    extra_args: Sequence[str] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    run_id: str = RUN_ID
    instance_name: str = "test_snakepit_contract_nonode@nohost"
    instance_token: str | None = None
    heartbeat_config: dict[str, object] | None = None
    image: str | None = None  # run as a container of this image: its ENTRYPOINT is the command
    # Launched exactly as Snakepit does, without a check's overrides: if such a launch fails before any succeeded,
    # the worker cannot start under this profile, and later launches report that failure at once (start()).
    standard: bool = False

    def worker_key(self) -> tuple[str, tuple[str, ...], str | None]:
        """Which worker under which profile: launches with the same key start (or fail to) the same way."""
        return self.profile.name, tuple(self.command), self.image

    def __post_init__(self) -> None:
        if self.image is not None and self.command:
            raise ValueError(f"a worker image's ENTRYPOINT is its command; got the command {list(self.command)} too")

    def _script(self) -> str | None:
        """The script argument, when the command has one that exists (`python path/to/worker.py`)."""
        if self.image is None and len(self.command) > 1 and os.path.isfile(self.command[1]):
            return os.path.abspath(self.command[1])
        return None

    def build_argv(self) -> list[str]:
        script = self._script()
        # Snakepit passes an absolute script path and runs in its folder; a relative one would break there.
        command = [self.command[0], script, *self.command[2:]] if script else list(self.command)
        if self.image is None:
            command = worker_coverage.wrap(command)  # `run --worker-coverage`: the same process, under coverage
        argv = [*command, *self.extra_args]
        # Added only when no argument merely *contains* the flag (snakepit: launch-argv).
        if not any("--port" in a for a in argv):
            argv += ["--port", "0"]
        if not any("--elixir-address" in a for a in argv):
            argv += ["--elixir-address", self.elixir_address]
        argv += ["--snakepit-run-id", self.run_id]
        if self.profile.sends_instance_flags:
            argv += ["--snakepit-instance-name", self.instance_name]
            if self.instance_token:
                argv += ["--snakepit-instance-token", self.instance_token]
        return argv

    def build_env(self, ready_file: Path | None) -> dict[str, str]:
        # A container keeps its image's environment: it gets only what Snakepit adds, not this machine's.
        env = {} if self.image else dict(os.environ)
        # Set BEAM-wide by Snakepit's application start, hence inherited (snakepit: launch-env).
        env.update(
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            NUMEXPR_NUM_THREADS="1",
            GRPC_POLL_STRATEGY="poll",
            GRPC_VERBOSITY="ERROR",
            PYTHONUNBUFFERED="1",
        )
        if ready_file is not None:
            env["SNAKEPIT_READY_FILE"] = os.fspath(ready_file)
        if self.profile.sets_process_group_env:
            env["SNAKEPIT_PROCESS_GROUP"] = "1"
            env["VECLIB_MAXIMUM_THREADS"] = "1"
        if self.profile.sets_log_level_env:
            env["SNAKEPIT_LOG_LEVEL"] = "error"
        if self.profile.sets_python_env and self.image is None:  # inside an image the interpreter is its business
            env["SNAKEPIT_PYTHON"] = shutil.which(self.command[0]) or self.command[0]
        if self.profile.heartbeat:
            config = {
                "enabled": True,
                "interval_ms": int(self.profile.heartbeat_interval_s * 1000),
                "timeout_ms": int(self.profile.heartbeat_timeout_s * 1000),
                "max_missed_heartbeats": 3,
                "initial_delay_ms": 0,
                "dependent": True,
                **(self.heartbeat_config or {}),
            }
            env["SNAKEPIT_HEARTBEAT_CONFIG"] = json.dumps(config)
        env.update(self.extra_env)
        env[RUN_TAG_ENV] = RUN_TAG
        env[ownership.OWNER_ENV] = ownership.owner_identity()  # so a later run can sweep it if this one dies
        return env

    def cwd(self) -> str | None:
        """Snakepit runs the worker in its script's folder (snakepit: launch-argv)."""
        script = self._script()
        return os.path.dirname(script) if script else None


class _Output:
    """Reads the merged stdout+stderr pipe in raw chunks, as a BEAM Port does."""

    def __init__(self, pipe: int) -> None:
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self._kept = bytearray()
        self.total_bytes = 0
        self._lock = threading.Lock()
        self._pipe = pipe
        self._thread = threading.Thread(target=self._read, name="worker-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._pipe, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.chunks.put(chunk)
            with self._lock:
                self.total_bytes += len(chunk)
                self._kept += chunk
                del self._kept[:-_OUTPUT_KEEP_BYTES]

    def text(self) -> str:
        """The kept output as text to show: undecodable bytes replaced, control characters made visible."""
        with self._lock:
            return visible(self._kept.decode("utf-8", "replace"))

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-lines:]) or "(no output)"

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass(frozen=True)
class StopResult:
    """How a stop went: the exit status, how long it took, whether SIGKILL was needed."""

    exit_status: int | None
    elapsed_s: float
    killed: bool
    signalled_group: bool


_live: set[WorkerProcess] = set()
_live_lock = threading.Lock()
# Per worker key: the first start failure of a standard launch before any launch succeeded, and the keys that
# started at least once (then a later failure is that launch's own, perhaps transient, and judged as such).
_unstartable: dict[tuple[str, tuple[str, ...], str | None], WorkerStartError] = {}
_started_once: set[tuple[str, tuple[str, ...], str | None]] = set()


def unstartable(profile_name: str) -> WorkerStartError | None:
    """Why the worker cannot start under this profile in this process, if it cannot."""
    with _live_lock:
        return next((err for key, err in _unstartable.items() if key[0] == profile_name), None)


def has_started(spec: WorkerSpec) -> bool:
    """Whether a worker of this key has started in this process (so it can start at all)."""
    with _live_lock:
        return spec.worker_key() in _started_once


def forget_starts() -> None:
    """A new session judges starts afresh."""
    with _live_lock:
        _unstartable.clear()
        _started_once.clear()


class WorkerProcess:
    """One worker OS process under Snakepit's rules; a context manager."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.profile = spec.profile
        self.argv = spec.build_argv()
        self._tmp = Path(tempfile.mkdtemp(prefix=ownership.temp_prefix()))
        self.ready_file = self._tmp / "snakepit_ready" if self.profile.readiness is Readiness.READY_FILE else None
        self.env = spec.build_env(self.ready_file)
        self.tag = uuid.uuid4().hex
        self.env[WORKER_TAG_ENV] = self.tag
        # What outlived a graceful stop (pid and command line), killed by the kit and judged by CLEANUP-009.
        self.left_behind: list[str] = []
        self._left_by_choice = False  # exited by itself within the grace after SIGTERM: its leftovers are its own
        self.proc: subprocess.Popen[bytes] | ContainerProcess | None = None
        self.container: ContainerProcess | None = None
        self.output: _Output | None = None
        self.port: int | None = None
        self.ready_after_s: float | None = None
        self.ready_at: float | None = None  # monotonic
        self.process_group = False
        self.client: WorkerClient | None = None
        self.telemetry: TelemetryStream | None = None
        self.heartbeat: HeartbeatMonitor | None = None
        self.init_session_error: str | None = None
        self.stop_result: StopResult | None = None
        self.events: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> WorkerProcess:
        try:
            self.start()
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spawn(self) -> None:
        """Spawn only: no readiness wait (for clauses that watch startup themselves)."""
        read_fd, write_fd = os.pipe()
        if self.spec.image is not None:
            self._spawn_container(self.spec.image, read_fd, write_fd)
            return
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=write_fd,
                stderr=write_fd,
                env=self.env,
                cwd=self.spec.cwd(),
                close_fds=True,
            )
        except OSError as err:
            os.close(read_fd)
            raise WorkerStartError(f"cannot execute {self.argv[0]!r}: {err}", None, "(not started)",
                                   step="exec") from err
        finally:
            os.close(write_fd)
        with _live_lock:
            _live.add(self)
        self.output = _Output(read_fd)
        self._spawned_at = time.monotonic()

    def _spawn_container(self, image: str, read_fd: int, write_fd: int) -> None:
        """One container of the image; its output is copied into the pipe the local worker would write."""
        from contract_tests.driver.container import ContainerProcess  # testcontainers: the optional `containers` extra

        os.chmod(self._tmp, 0o777)  # the image's user, whoever it is, writes the ready file here
        self._spawned_at = time.monotonic()
        try:
            self.proc = self.container = ContainerProcess(image, self.argv, self.env, self._tmp, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        with _live_lock:
            _live.add(self)
        self.output = _Output(read_fd)

    def start(self) -> None:
        """Spawn, wait for readiness, then the handshake of the profile (snakepit: connect-retry).

        A worker that could not start under this profile at all is not launched again: the first failure is raised
        at once, so a worker that never starts costs one readiness wait, not one per check.
        """
        key = self.spec.worker_key()
        known = _unstartable.get(key)
        if known is not None:
            raise known.with_traceback(None)
        try:
            self.spawn()
            self.wait_ready()
            self.connect()
        except WorkerStartError as err:
            with _live_lock:
                if self.spec.standard and key not in _started_once:
                    err.unstartable = True
                    _unstartable.setdefault(key, err)
            raise
        with _live_lock:
            _started_once.add(key)
        self.after_handshake()

    def wait_ready(self) -> int:
        timeout = self.profile.readiness_timeout_s * self.spec.timeout_scale
        wait: ReadyFileWait | ReadyLineWait
        if self.ready_file is not None:
            wait = ReadyFileWait(self.ready_file, timeout)
        else:
            assert self.output is not None
            wait = ReadyLineWait(self.output.chunks, timeout, self.profile.readiness_timer_resets_on_output)
        self.port = wait.wait(self)
        self.ready_at = time.monotonic()
        self.ready_after_s = self.ready_at - self._spawned_at
        self.process_group = self._check_process_group()
        return self.port

    def _check_process_group(self) -> bool:
        """pgid == pid, re-checked for up to 250 ms after readiness (snakepit: process-group).

        Never in a container: its engine stops it as a whole, and the runtime makes PID 1 a group leader anyway.
        """
        if self.container is not None or not _truthy_group_env(self.env):
            return False
        deadline = time.monotonic() + 0.25
        delay = 0.01
        while True:
            if self.pgid() == self.pid:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def connect(self) -> WorkerClient:
        """Dial 127.0.0.1:<port> (Erlang resolves localhost to IPv4) and Ping with retries."""
        client = WorkerClient(f"127.0.0.1:{self.port}", self.profile)
        self.client = client
        ping_timeout = 10.0 * self.spec.timeout_scale
        for attempt in range(1, _CONNECT_ATTEMPTS + 1):
            try:
                client.ping("connection_test", timeout=ping_timeout)
                return client
            except grpc.RpcError as err:
                if err.code() not in _RETRYABLE or attempt == _CONNECT_ATTEMPTS:
                    raise WorkerStartError(
                        f"connect + Ping('connection_test') to port {self.port} failed: "
                        f"{err.code().name} {err.details()}",
                        self.poll(),
                        self.output_tail(),
                        # Unreachable: the announced port or the IPv4 loopback is wrong; else Ping itself failed.
                        step="connect" if err.code() in _RETRYABLE else "ping",
                    ) from err
                delay_ms = min(50 * 2 ** (attempt - 1), 500)
                time.sleep((delay_ms + random.randint(1, max(1, delay_ms // 4))) / 1000)
        raise AssertionError("unreachable")

    def after_handshake(self) -> None:
        """0.13: InitializeSession (errors ignored), StreamTelemetry, HeartbeatMonitor."""
        client = self.client
        assert client is not None
        if self.profile.initializes_worker_session:
            try:
                client.initialize_session()
            except grpc.RpcError as err:
                self.init_session_error = f"{err.code().name}: {err.details()}"
        if self.profile.opens_telemetry_stream:
            self.telemetry = client.open_telemetry(timeout_s=None)
        if self.profile.heartbeat:
            self.heartbeat = HeartbeatMonitor(
                client,
                self.profile.heartbeat_interval_s,
                # Snakepit's own deadline, judged by RPC-002/003: the scale may shrink it, never stretch it.
                self.profile.heartbeat_timeout_s * min(self.spec.timeout_scale, 1.0),
                self._heartbeat_failed,
            )
            self.heartbeat.start()

    def detach_snakepit_side(self) -> None:
        """Stop what Snakepit's side runs against the worker (heartbeat, telemetry), as if the BEAM died."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.telemetry is not None:
            self.telemetry.close()

    def _heartbeat_failed(self, reason: str) -> None:
        # A dependent worker is stopped at once (snakepit: heartbeat): graceful path at 0.13.
        self.events.append(f"stopped by the heartbeat monitor: {reason}")
        logger.warning("worker %s failed its heartbeat (%s); stopping it", self.pid, reason)
        # Only the process is stopped: the channel stays open until teardown, so later calls
        # fail with UNAVAILABLE (a worker failure) rather than on a closed channel.
        threading.Thread(target=self.terminate, name="heartbeat-stop", daemon=True).start()

    def terminate(self) -> None:
        """SIGTERM, grace, SIGKILL: the process only, leaving links and files to stop()."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.send_signal(signal.SIGTERM)
        if self.wait_exit(self.profile.shutdown_grace_s) is None:
            self.send_signal(signal.SIGKILL)
            self.wait_exit(5)

    # -- observation -------------------------------------------------------------------------------
    @property
    def tmp_dir(self) -> Path:
        """The worker's private temporary folder (its ready file lives here); removed when it stops."""
        return self._tmp

    @property
    def pid(self) -> int:
        assert self.proc is not None, "worker not spawned"
        return self.proc.pid

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pgid(self) -> int | None:
        try:
            return os.getpgid(self.pid)
        except ProcessLookupError:
            return None

    def output_tail(self, lines: int = 25) -> str:
        """The last lines of output; once the worker has exited, only after its last bytes were read."""
        if self.output is None:
            return "(not started)"
        if self.poll() is not None:
            # The reader may not have caught up with the exit yet; a child that keeps the pipe open bounds the wait.
            self.output.join(timeout=_DRAIN_S)
        return self.output.tail(lines)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to exit; its status (negative = signal) or None."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int, group: bool | None = None) -> bool:
        """Signal like Snakepit: the group only in process-group mode. True if a group was signalled."""
        use_group = self.process_group if group is None else group
        with contextlib.suppress(ProcessLookupError):
            if use_group:
                os.killpg(self.pid, sig)
            elif self.proc is not None:
                self.proc.send_signal(sig)  # a container's PID 1 through the engine
        return use_group

    def close_stdin(self) -> None:
        """What the worker sees when the BEAM dies: its stdin pipe reaches EOF."""
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def evidence(self) -> str:
        """Exit status, events, last output and the client trace, for failure reports."""
        status = self.poll()
        args = " ".join(self.argv)
        launched = f"worker argv: {args}"
        if self.spec.image:
            container = self.container.id if self.container else "not started"
            launched = f"worker image: {self.spec.image} (container {container}), its ENTRYPOINT + {args}"
        lines = [launched, f"exit status: {'still running' if status is None else status}"]
        lines += self.events
        if self.client is not None:
            lines += ["--- gRPC trace (last calls) ---", *self.client.trace]
        lines += ["--- last worker output ---", self.output_tail()]
        return "\n".join(lines)

    # -- shutdown ----------------------------------------------------------------------------------
    def _stop_links(self) -> None:
        self.detach_snakepit_side()
        if self.client is not None:
            self.client.close()

    def stop(self, graceful: bool = True, grace_s: float | None = None) -> StopResult:
        """SIGTERM, poll with backoff until the grace period, then SIGKILL (snakepit: shutdown-grace)."""
        if self.stop_result is not None:
            return self.stop_result
        started = time.monotonic()
        killed = False
        try:
            self._stop_links()
            if self.proc is not None and self.proc.poll() is None:
                grace = self.profile.shutdown_grace_s if grace_s is None else grace_s
                if graceful:
                    self.send_signal(signal.SIGTERM)
                    killed = self.wait_exit(grace) is None
                    self._left_by_choice = not killed
                else:
                    killed = True
                if killed:
                    self.send_signal(signal.SIGKILL)
                    self.wait_exit(5)
        finally:
            # Even when interrupted (Ctrl-C) or when a link fails to close, nothing is left behind.
            self.stop_result = StopResult(self.poll(), time.monotonic() - started, killed, self.process_group)
            self._release()
        return self.stop_result

    def _release(self) -> None:
        """Leave nothing behind: the process, group members, pipes, ready file, temp dir."""
        if self.is_alive():
            self.send_signal(signal.SIGKILL)
            self.wait_exit(5)
        if self.process_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.container is not None:
            self.container.remove()
        else:
            self._note_left_behind()
        if self.output is not None:
            self.output.join(timeout=1)
        shutil.rmtree(self._tmp, ignore_errors=True)
        with _live_lock:
            _live.discard(self)


    def _note_left_behind(self) -> None:
        """Record what a worker that exited on SIGTERM left running (never silently): CLEANUP-009 judges it.

        The processes stay until the run ends (reap_tagged), so checks that look for them (CLEANUP-002) see them.
        """
        if not self._left_by_choice:
            return  # what SIGKILL or a crash leaves is not the worker's doing
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while (found := _tagged(WORKER_TAG_ENV, self.tag)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.left_behind = [f"pid {pid}: {cmdline}" for pid, cmdline in found.items()]
        if self.left_behind:
            self.events.append(f"left behind after its stop: {'; '.join(self.left_behind)}")
            logger.warning("worker %s left processes behind: %s", self.pid, self.left_behind)


def _tagged(env_name: str, tag: str) -> dict[int, str]:
    """Live processes (not zombies) whose environment carries `env_name=tag`: pid -> command line."""
    found = {}
    for pid, value in processes.environment_carriers(env_name).items():
        if value == tag and processes.alive(pid):
            found[pid] = " ".join(processes.command_line(pid) or []) or "(command line not readable)"
    return found


def reap_tagged(tag: str = RUN_TAG) -> list[int]:
    """SIGKILL every process whose environment carries this run's tag; return their pids.

    Best effort: where environments are hidden (processes.ENVIRONMENTS_READABLE), nothing is found by its tag."""
    killed = []
    for pid, value in processes.environment_carriers(RUN_TAG_ENV).items():
        if value == tag:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def stop_all() -> None:
    """Stop every worker still running, then reap tagged strays (session end, atexit)."""
    with _live_lock:
        workers = list(_live)
    for worker in workers:
        worker.stop(graceful=False)
    reap_tagged()


atexit.register(stop_all)
