"""RPC: the BridgeService calls Snakepit makes besides tool calls (snakepit: worker-rpcs)."""

from __future__ import annotations

import contextlib
import math
import time

import grpc

from contract_tests.contract.clause import clause, requires_tools
from contract_tests.contract.profiles import Profile
from contract_tests.driver.client import WorkerClient
from contract_tests.driver.launcher import WorkerProcess
from contract_tests.errors import ContractViolation, expect
from contract_tests.judging.plugin import Settings
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb

# Calls only the Elixir side serves; a worker may refuse them but must answer.
ELIXIR_SIDE_CALLS = {
    "RegisterTools": pb.RegisterToolsRequest(session_id="s", worker_id="w"),
    "GetExposedElixirTools": pb.GetExposedElixirToolsRequest(session_id="s"),
    "ExecuteElixirTool": pb.ExecuteElixirToolRequest(session_id="s", tool_name="t"),
}


def _call(client: WorkerClient, method: str, request: object, timeout: float) -> grpc.StatusCode:
    try:
        client._unary(method, request, timeout)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@clause("RPC-001")
def test_ping_answers(client: WorkerClient) -> None:
    started = time.monotonic()
    try:
        client.ping("health_check_contract", timeout=5)
    except grpc.RpcError as err:
        raise ContractViolation("Ping", "OK within 5 s", f"{err.code().name}: {err.details()}") from err
    expect(time.monotonic() - started < 5, "Ping latency", "< 5 s", time.monotonic() - started)


@clause("RPC-002")
def test_heartbeat_session_valid(client: WorkerClient) -> None:
    try:
        reply = client.heartbeat(timeout=10)
    except grpc.RpcError as err:
        raise ContractViolation("Heartbeat", "OK, session_valid=true", f"{err.code().name}") from err
    expect(reply.session_valid, "HeartbeatResponse.session_valid", "true", reply.session_valid)


@clause("RPC-003")
@requires_tools("contract.sleep")
def test_heartbeat_while_tool_runs(client: WorkerClient, profile: Profile, contract_settings: Settings) -> None:
    # Snakepit schedules the next beat once a beat is answered: a slow answer only delays the schedule; a beat
    # not answered within its deadline is a miss. So the call outlasts the deadline, and a worker whose Heartbeat
    # waits behind it misses; one that answers beside it answers at once.
    deadline = contract_settings.judged_s(profile.heartbeat_timeout_s)
    call = client.execute_future("contract.sleep", {"seconds": deadline + 3})
    try:
        for _ in range(2):
            time.sleep(1.0)
            sent = time.monotonic()
            try:
                reply = client.heartbeat(timeout=deadline)
            except grpc.RpcError as err:
                raise ContractViolation("Heartbeat during a tool call", f"answered within Snakepit's {deadline:.0f} s",
                                        f"{err.code().name} after {time.monotonic() - sent:.1f} s") from err
            expect(reply.session_valid, "Heartbeat during contract.sleep", "session_valid=true", reply)
    finally:
        call.cancel()


@clause("RPC-004")
def test_initialize_session_tolerated(client: WorkerClient) -> None:
    status = _call(client, "InitializeSession", pb.InitializeSessionRequest(session_id=client.session_id), 30)
    expect(status is not grpc.StatusCode.DEADLINE_EXCEEDED, "InitializeSession", "an answer", status.name)
    client.ping("after-initialize-session")


@clause("RPC-005")
def test_initialize_session_succeeds(client: WorkerClient) -> None:
    try:
        reply = client.initialize_session(timeout=30)
    except grpc.RpcError as err:
        raise ContractViolation("InitializeSession", "OK", f"{err.code().name}: {err.details()}") from err
    expect(reply.success, "InitializeSessionResponse.success", "true", reply)


# A worker RPC nobody in Snakepit calls (docs/contract.md §2: MAY): served or not, it must be answered.
UNCALLED = {"GetSession": pb.GetSessionRequest(session_id="s")}


@clause("RPC-006")
def test_unserved_calls_answer_promptly(client: WorkerClient) -> None:
    for method, request in {**ELIXIR_SIDE_CALLS, **UNCALLED}.items():
        status = _call(client, method, request, 5)
        expect(status is not grpc.StatusCode.DEADLINE_EXCEEDED, f"{method} on the worker", "a status", "timeout")
    client.ping("after-unserved-calls")


@clause("RPC-007")
def test_unserved_calls_unimplemented(client: WorkerClient) -> None:
    for method, request in ELIXIR_SIDE_CALLS.items():
        status = _call(client, method, request, 5)
        expect(status is grpc.StatusCode.UNIMPLEMENTED, f"{method} on the worker", "UNIMPLEMENTED", status.name)


@clause("RPC-008")
@requires_tools("contract.echo")
def test_execute_alongside_heartbeat_and_telemetry(client: WorkerClient) -> None:
    telemetry = client.open_telemetry()
    try:
        beat = client.stub.Heartbeat.future(pb.HeartbeatRequest(session_id=client.session_id), timeout=10)
        reply = client.execute("contract.echo", {"overlap": True}, timeout=10)
        expect(reply.ok and reply.value == {"overlap": True}, "ExecuteTool beside Heartbeat and telemetry",
               "{'overlap': True}", reply.error or reply.value)
        expect(beat.result().session_valid, "overlapping Heartbeat", "session_valid=true", beat.result())
    finally:
        telemetry.close()


# How long a toggled telemetry stream is watched for an end: an error is seen whenever it comes within this.
TELEMETRY_WATCH_S = 1.0


@clause("RPC-009")
def test_telemetry_stream_served_or_unimplemented(client: WorkerClient, contract_settings: Settings,
                                                   profile: Profile) -> None:
    telemetry = client.open_telemetry()
    deadline = profile.telemetry_open_timeout_s
    try:
        got_headers = telemetry.wait_initial_metadata(5 if math.isinf(deadline) else deadline)
        if telemetry.code is grpc.StatusCode.UNIMPLEMENTED:
            return
        if not got_headers and math.isinf(deadline):
            return  # this release opens the stream with timeout :infinity: late headers harm nothing
        expect(got_headers, "StreamTelemetry initial metadata", f"within {deadline:g} s (Snakepit's open timeout)",
               telemetry.code or "nothing")
        telemetry.send(pb.TelemetryControl(toggle=pb.TelemetryToggle(enabled=False)))
        code = telemetry.wait_end(TELEMETRY_WATCH_S * contract_settings.timeout_scale)
        # Headers then UNIMPLEMENTED, before any event, is still "not served" (Snakepit only logs how it ended).
        if code is grpc.StatusCode.UNIMPLEMENTED and not telemetry.events:
            return
        expect(code in (None, grpc.StatusCode.OK), "StreamTelemetry after a toggle", "still open, or ended OK",
               f"{code.name if code else code}: {telemetry.details}")
    finally:
        telemetry.close()


AFTER_CANCEL_WATCH_S = 2.0


@clause("RPC-010")
@requires_tools("contract.sleep")
def test_survives_cancelled_call(worker: WorkerProcess, contract_settings: Settings,
                                 catalogue: frozenset[str] | str) -> None:
    assert worker.client is not None
    call = worker.client.execute_future("contract.sleep", {"seconds": 10})
    time.sleep(0.3)
    call.cancel()
    # Watched a while, not glanced at: a worker whose clean-up of the cancelled call kills it a second later fails.
    status = worker.wait_exit(AFTER_CANCEL_WATCH_S * contract_settings.timeout_scale)
    expect(status is None, "worker after a cancelled call", f"alive {AFTER_CANCEL_WATCH_S:.0f} s later",
           f"exit status {status}")
    worker.client.ping("after-cancel")
    if "contract.stream" not in catalogue:
        return  # a worker without streaming tools has no streaming call to cancel
    # A streaming call cancelled after its first chunk: its clean-up runs on another path than a unary call's.
    stream = worker.client.stream_call("contract.stream", {"count": 1000, "interval_ms": 50}, timeout=30)
    with contextlib.suppress(grpc.RpcError):
        for _ in stream:
            break
    stream.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves Call.cancel untyped
    status = worker.wait_exit(AFTER_CANCEL_WATCH_S * contract_settings.timeout_scale)
    expect(status is None, "worker after a cancelled streaming call", f"alive {AFTER_CANCEL_WATCH_S:.0f} s later",
           f"exit status {status}")
    worker.client.ping("after-stream-cancel")



# How soon an abandoned call must be seen stopped: judged by whoami calls sent after this bound (their answers may
# be late on a loaded machine; what they report is what counts).
STOP_BOUND_S = 1.0


def _calls_running(client: WorkerClient) -> int:
    reply = client.execute("contract.whoami", timeout=10)
    expect(reply.ok and isinstance(reply.value, dict) and isinstance(reply.value.get("calls_running"), int),
           "contract.whoami", "an object with an integer calls_running", reply.error or reply.value)
    running: int = reply.value["calls_running"]
    return running


def _wait_running(client: WorkerClient, bound_s: float) -> None:
    """Until the worker reports the sleep running beside this whoami (it has reached the worker)."""
    deadline = time.monotonic() + bound_s
    while (running := _calls_running(client)) < 2:
        expect(time.monotonic() < deadline, "contract.whoami calls_running while contract.sleep runs",
               ">= 2 (the sleep and this whoami)", running)
        time.sleep(0.05)


def _expect_stopped(client: WorkerClient, abandoned_at: float, bound_s: float, how: str) -> None:
    """A whoami sent more than `bound_s` after the call was abandoned must no longer count the sleep."""
    while True:
        sent = time.monotonic()
        running = _calls_running(client)
        if running <= 1:
            return
        expect(sent - abandoned_at <= bound_s, f"contract.sleep {how}",
               f"stopped within {bound_s:.1f} s (calls_running 1)",
               f"calls_running {running} {sent - abandoned_at:.2f} s later")
        time.sleep(0.05)


@clause("RPC-011")
@requires_tools("contract.sleep", "contract.whoami")
def test_abandoned_call_stops(client: WorkerClient, contract_settings: Settings) -> None:
    scale = contract_settings.timeout_scale
    bound = contract_settings.judged_s(STOP_BOUND_S)
    call = client.execute_future("contract.sleep", {"seconds": 30})
    _wait_running(client, 10 * scale)
    call.cancel()
    _expect_stopped(client, time.monotonic(), bound, "cancelled by its caller")
    # Past its deadline: no need to see it running first; a sleep that never arrived shows as stopped.
    call = client.execute_future("contract.sleep", {"seconds": 30}, timeout=1.0 * scale)
    with contextlib.suppress(grpc.RpcError):
        call.result()
    _expect_stopped(client, time.monotonic(), bound, f"past its {1.0 * scale:.1f} s deadline")
