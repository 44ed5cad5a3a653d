"""PROC: launching, readiness, identity and shutdown of the worker process (snakepit: launch-argv, ...)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import grpc
import pytest

from contract_tests.contract.clause import clause, requires_tools
from contract_tests.contract.profiles import Profile
from contract_tests.driver import processes
from contract_tests.driver.client import CHANNEL_OPTIONS, WorkerClient
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.elixir.host import HostEmulator
from contract_tests.errors import ContractViolation, WorkerStartError, expect
from contract_tests.judging.plugin import Launch, Settings, read_catalogue
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

# Exit statuses Snakepit accepts after its own SIGTERM: 0, or death by SIGTERM (143 from a shell).
GRACEFUL_STATUSES = {0, -signal.SIGTERM, 128 + signal.SIGTERM}


def _started(launch: Launch, **overrides: object) -> WorkerProcess:
    """Launch, turning a start failure into a violation of the clause under test."""
    try:
        return launch(**overrides)
    except WorkerStartError as err:
        if err.unstartable:
            raise  # a worker that cannot start at all: judged once, by the clauses of the step that failed
        # from None: the start error already carries the exit status and output; its traceback is the harness's.
        raise ContractViolation("the worker did not start as Snakepit launches it", "ready", str(err)) from None


@clause("PROC-001")
def test_starts_from_snakepit_command_line(launch: Launch) -> None:
    worker = _started(launch)
    expect(worker.is_alive(), "the worker exited right after readiness", "alive", worker.poll())


@clause("PROC-002")
def test_ignores_unknown_flags(launch: Launch) -> None:
    _started(launch, extra_args=["--snakepit-future-flag", "value", "--another-new-switch"])


@clause("PROC-003")
def test_reports_the_port_it_bound(launch: Launch) -> None:
    worker = _started(launch)  # a wrong or missing port fails here, as a violation of this clause
    expect(worker.port and 0 < worker.port < 65536, "reported port", "1..65535", worker.port)
    expect("--port" in worker.argv and "0" in worker.argv, "launch flags", "--port 0 passed", worker.argv)
    # A pool launches several workers with --port 0 at once: a worker that binds a default port of its own
    # (`port or 50051`) works alone and cannot start beside a copy of itself.
    try:
        beside = launch()
    except WorkerStartError as err:
        raise ContractViolation(f"a second worker launched while the first serves on {worker.port}",
                                "ready on a port of its own", str(err)) from None
    expect(beside.port != worker.port, "ports of two workers launched with --port 0", "two OS-assigned ports",
           f"both {worker.port}")


@clause("PROC-004")
def test_writes_port_to_ready_file(launch: Launch) -> None:
    _started(launch)


@clause("PROC-005")
def test_prints_grpc_ready_line(launch: Launch) -> None:
    _started(launch)


# A server that serves answers its first Ping within a fraction of a second; one that only bound its socket
# keeps the call waiting until serving begins. A miss is judged only if every one of a few fresh launches misses.
FIRST_PING_S = 0.5
PROC_006_LAUNCHES = 3


def _ping_at_readiness(launch: Launch, bound_s: float) -> tuple[bool, str]:
    """Launch, Ping once the moment readiness is signalled: (served in time, what happened)."""
    worker = launch(start=False)
    try:
        port = worker.wait_ready()
    except WorkerStartError as err:
        raise ContractViolation("no readiness signal", "a readiness signal", str(err)) from None
    signalled = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        try:
            stub.Ping(pb.PingRequest(message="connection_test"), timeout=bound_s)
            return True, "answered"
        except grpc.RpcError as err:
            if err.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                return True, f"answered {err.code().name}"  # an answer: serving (RPC-001 judges Ping itself)
            missed = f"{err.code().name} after {time.monotonic() - signalled:.2f} s"
        try:  # When did serving begin? Evidence only: wait for it on the same channel.
            stub.Ping(pb.PingRequest(message="connection_test"), timeout=10, wait_for_ready=True)
            return False, f"{missed}; first answer {time.monotonic() - signalled:.2f} s after the signal"
        except grpc.RpcError as err:
            return False, f"{missed}; no answer within 10 s more ({err.code().name})"


@clause("PROC-006")
def test_ready_only_once_listening(launch: Launch, contract_settings: Settings) -> None:
    bound = contract_settings.judged_s(FIRST_PING_S)
    seen = []
    for _ in range(PROC_006_LAUNCHES):
        served, what = _ping_at_readiness(launch, bound)  # the launch fixture stops each worker at teardown
        if served:
            return
        seen.append(what)
    raise ContractViolation(
        f"Ping sent the moment readiness was signalled, in {PROC_006_LAUNCHES} fresh launches",
        f"an answer within {bound:.1f} s (the server serves when readiness is signalled)", "\n".join(seen))


@clause("PROC-007")
def test_ready_within_deadline(launch: Launch, contract_settings: Settings, profile: Profile) -> None:
    worker = _started(launch)
    # Every Snakepit release gives 30 s: a worker needing 40 s fails here whatever --timeout-scale let it start in.
    limit = contract_settings.judged_s(profile.readiness_timeout_s)
    expect(worker.ready_after_s is not None and worker.ready_after_s <= limit,
           "spawn-to-ready time", f"<= {limit:.0f} s", f"{worker.ready_after_s} s")


@clause("PROC-008")
def test_spawned_pid_is_the_worker(worker: WorkerProcess) -> None:
    assert worker.port is not None
    owners = processes.listening_owners(worker.port)
    group = {p for p in owners if _pgid(p) == worker.pid} if worker.process_group else set()
    expect(worker.is_alive(), "the spawned process exited (fork-and-exit?)", "alive", worker.poll())
    expect(worker.pid in owners or group, f"owner of listening port {worker.port}",
           f"pid {worker.pid}" + (" or its process group" if worker.process_group else ""), sorted(owners))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@clause("PROC-009")
@pytest.mark.not_in_container("the runtime starts PID 1 as the leader of its own session and group, so a worker "
                              "that never calls setsid would pass too; the engine stops the container as a whole")
def test_leads_process_group_when_asked(worker: WorkerProcess) -> None:
    expect(worker.process_group, "process group at readiness (+250 ms)", f"pgid == pid {worker.pid}",
           f"pgid {worker.pgid()}")


def _expect_graceful(worker: WorkerProcess, profile: Profile) -> None:
    result = worker.stop()
    expect(not result.killed, "SIGTERM handling",
           f"exit within the {profile.shutdown_grace_s:.0f} s grace period",
           f"still running after {result.elapsed_s:.1f} s; SIGKILLed")
    expect(result.exit_status in GRACEFUL_STATUSES, "exit status after SIGTERM", "0 or 143",
           result.exit_status)


@clause("PROC-010")
def test_sigterm_exits_within_grace(launch: Launch, profile: Profile) -> None:
    _expect_graceful(_started(launch), profile)


@clause("PROC-011")
@requires_tools("contract.sleep")
def test_sigterm_during_call_exits_within_grace(launch: Launch, profile: Profile) -> None:
    worker = _started(launch)
    assert worker.client is not None
    request, headers = worker.client.tool_request("contract.sleep", {"seconds": 30})
    # On a channel of its own: stopping the worker closes its client first, which would cancel the call before the
    # SIGTERM, while Snakepit's connection is still open when its SIGTERM comes (a worker that drains fails here).
    with grpc.insecure_channel(f"127.0.0.1:{worker.port}", options=CHANNEL_OPTIONS) as channel:
        call: grpc.Future[pb.ExecuteToolResponse] = pb_grpc.BridgeServiceStub(channel).ExecuteTool.future(
            request, timeout=60, metadata=headers or None)
        time.sleep(0.3)
        _expect_graceful(worker, profile)
        call.cancel()


PROC_012_WATCH_S = 8.0


@clause("PROC-012")
@pytest.mark.watches(PROC_012_WATCH_S)
def test_does_not_exit_while_healthy(launch: Launch, profile: Profile, contract_settings: Settings) -> None:
    worker = _started(launch)
    assert worker.client is not None
    calls = _answer_every_kind(worker.client, contract_settings)
    answered = time.monotonic()
    # Several heartbeats at 0.13 (every 2 s) and time for a self-exit a few seconds in, or a few seconds after an
    # answer of any kind; an exit later than this still FAILs whichever check is running on the shared worker when
    # it happens (plugin.SharedWorker).
    status = worker.wait_exit(max(PROC_012_WATCH_S, 3 * profile.heartbeat_interval_s))
    expect(status is None, f"the worker exited while Snakepit still wanted it, after answering {calls}",
           "still running", f"exit status {status}, {time.monotonic() - answered:.1f} s after those answers")


def _answer_every_kind(client: WorkerClient, settings: Settings) -> str:
    """One call of each kind of answer, ignoring the answers (other clauses judge them): a worker that dies a second
    after one of them is caught here, whatever check happens to run on the shared worker when it would die."""
    tools = read_catalogue(client, settings)
    calls: list[tuple[str, Callable[[], object]]] = [
        ("an unknown tool's error", lambda: client.execute("contract.no-such-tool", {}, timeout=10)),
        ("an unknown streaming tool's error", lambda: client.stream("contract.no-such-stream", {}, timeout=10)),
    ]
    if not isinstance(tools, str):
        if "contract.echo" in tools:
            calls.append(("a call in a caller's session",
                          lambda: client.execute("contract.echo", {"session_id": "proc-012-session"}, timeout=10)))
        if "contract.fail" in tools:
            calls.append(("contract.fail's error", lambda: client.execute("contract.fail", {}, timeout=10)))
        if "contract.stream" in tools:
            calls.append(("a stream to its final chunk", lambda: client.stream("contract.stream", {"count": 2},
                                                                                 timeout=10)))
    for _, call in calls:
        with contextlib.suppress(grpc.RpcError):
            call()
    return "contract.catalogue, " + ", ".join(what for what, _ in calls)


@clause("PROC-013")
@pytest.mark.watches(6)  # until its missed heartbeats end it: about 6 s at 0.6, 3 s at 0.13
def test_exits_when_elixir_side_disappears(
    launch: Launch, profile: Profile, contract_settings: Settings
) -> None:
    with HostEmulator(profile) as own_host:
        worker = _started(launch, on_host=own_host,
                          heartbeat_config={"interval_ms": 500, "timeout_ms": 1000})
        time.sleep(1.0)
        # The whole Elixir side goes away, Snakepit's own heartbeat monitor included: the worker
        # must leave by itself, not be stopped by the suite.
        worker.detach_snakepit_side()
    bound = contract_settings.judged_s(30.0)
    status = worker.wait_exit(bound)
    expect(status is not None, "worker after the Elixir side disappeared", f"exits within {bound:.0f} s",
           "still running")
    expect(not worker.events, "how the worker ended", "by itself", "; ".join(worker.events))


@clause("PROC-018")
@pytest.mark.watches(5)
def test_independent_worker_outlives_elixir(launch: Launch, profile: Profile, contract_settings: Settings) -> None:
    # Misses counted fast; `jitter_ms`, a key Snakepit's own bridge reads, is one the worker may not know.
    config = {"interval_ms": 300, "timeout_ms": 500, "max_missed_heartbeats": 2, "dependent": False, "jitter_ms": 0}
    with HostEmulator(profile) as own_host:
        worker = _started(launch, on_host=own_host, heartbeat_config=config)
        time.sleep(1.0)  # its first Heartbeats answered
        worker.detach_snakepit_side()
    watch = 4.0 * contract_settings.timeout_scale  # many times the 2 misses of 0.3 s a dependent worker waits
    status = worker.wait_exit(watch)
    expect(status is None, "a worker with dependent=false after the Elixir side disappeared",
           f"still running {watch:.0f} s later (it only logs)", f"exit status {status}")


@clause("PROC-019")
def test_unusable_heartbeat_values_ignored(launch: Launch) -> None:
    # Snakepit passes the values of a user's heartbeat map through Jason unchecked (bootstrap.ex, configuration.ex).
    config = {"interval_ms": "soon", "timeout_ms": [1], "max_missed_heartbeats": "few", "dependent": "maybe"}
    worker = _started(launch, heartbeat_config=config)
    time.sleep(2.0)  # past the first Heartbeats the worker sends with its defaults
    expect(worker.is_alive(), f"a worker given SNAKEPIT_HEARTBEAT_CONFIG {config}", "serving (the values ignored)",
           f"exit status {worker.poll()}")
    (worker.client or worker.connect()).ping("after-unusable-heartbeat-config")


@clause("PROC-014")
def test_exits_on_stdin_eof(launch: Launch, contract_settings: Settings) -> None:
    worker = _started(launch)
    worker.close_stdin()
    bound = contract_settings.judged_s(10.0)
    status = worker.wait_exit(bound)
    expect(status is not None, "worker after stdin EOF (the BEAM's port closed)", f"exits within {bound:.0f} s",
           "still running")


@clause("PROC-015")
def test_reachable_on_ipv4_loopback(launch: Launch) -> None:
    worker = _started(launch)  # the launcher itself dials 127.0.0.1, as Snakepit does
    with grpc.insecure_channel(f"127.0.0.1:{worker.port}") as channel:
        try:
            pb_grpc.BridgeServiceStub(channel).Ping(pb.PingRequest(message="ipv4"), timeout=5)
        except grpc.RpcError as err:
            raise ContractViolation("Ping over 127.0.0.1", "OK", f"{err.code().name}: {err.details()}") from err


@clause("PROC-016")
def test_keeps_run_id_in_command_line(worker: WorkerProcess, profile: Profile) -> None:
    cmdline = processes.command_line(worker.pid)
    if cmdline is None:
        raise ContractViolation(f"the command line of process {worker.pid}", "readable while the worker runs",
                                f"process gone (exit status {worker.poll()})")
    pairs = [("--snakepit-run-id", worker.spec.run_id)]
    if profile.sends_instance_flags:
        pairs.append(("--snakepit-instance-name", worker.spec.instance_name))
    for flag, value in pairs:
        found = any(cmdline[i] == flag and cmdline[i + 1] == value for i in range(len(cmdline) - 1))
        expect(found, f"{flag} in the command line of process {worker.pid}", f"{flag} {value}", " ".join(cmdline))


OUTPUT_WATCH_S = 6.0


@clause("PROC-017")
@pytest.mark.watches(OUTPUT_WATCH_S)
def test_output_stays_low(launch: Launch) -> None:
    worker = _started(launch)
    assert worker.client is not None and worker.output is not None
    for n in range(20):
        # How an unknown tool is answered is TOOL-008's to judge; here only the output it causes counts.
        with contextlib.suppress(grpc.RpcError):
            worker.client.execute("contract.tool-that-does-not-exist", {"n": n})
    # Long enough for heartbeats and for batched log or trace exporters (often every 5 s) to flush.
    time.sleep(OUTPUT_WATCH_S)
    expect(worker.output.total_bytes < 64 * 1024, "bytes written to stdout+stderr", "< 65536",
           worker.output.total_bytes)

