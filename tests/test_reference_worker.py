"""Self-tests of reference_worker: a real subprocess launched the way Snakepit does, called over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc
from reference_worker import elixir as elixir_module
from reference_worker.elixir import ElixirClient, HeartbeatConfig, heartbeat_watchdog, load_heartbeat_config

REPO = Path(__file__).resolve().parents[1]
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
READY_LINE = re.compile(rb"GRPC_READY:(\d+)\n")
# What Snakepit 0.13 puts in front of and around its own flags, plus flags no worker knows.
SNAKEPIT_ARGV = [
    "priv/python/grpc_server.py",
    "--adapter",
    "snakepit_bridge.adapters.showcase.ShowcaseAdapter",
    "--max-workers",
    "10",
    "--thread-safety-check",
    "--port",
    "0",
    "--snakepit-run-id",
    "run-1",
    "--snakepit-instance-name",
    "test_instance",
    "--snakepit-instance-token",
    "-token-starting-with-dash",
    "--flag-from-the-future=3",
]


def _json_any(value: Any) -> any_pb2.Any:
    return any_pb2.Any(type_url=STRING_VALUE, value=json.dumps(value).encode())


def _request(tool: str, /, session_id: str = "", **params: Any) -> pb.ExecuteToolRequest:
    return pb.ExecuteToolRequest(
        session_id=session_id, tool_name=tool, parameters={k: _json_any(v) for k, v in params.items()}
    )


class Worker:
    """A launched `python -m reference_worker`, its port and a stub."""

    def __init__(self, proc: subprocess.Popen[bytes], ready_file: Path | None) -> None:
        self.proc = proc
        self.ready_file = ready_file
        self.output = b""
        self.port = self._wait_ready(deadline=time.monotonic() + 15)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.BridgeServiceStub(self.channel)

    def _wait_ready(self, deadline: float) -> int:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while (match := READY_LINE.search(self.output)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no GRPC_READY line; output: {self.output!r}"
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"worker exited before readiness: {self.output!r}"
                self.output += chunk
        return int(match.group(1))

    def call(self, request: pb.ExecuteToolRequest, **kwargs: Any) -> pb.ExecuteToolResponse:
        return self.stub.ExecuteTool(request, timeout=kwargs.pop("timeout", 10), **kwargs)

    def result(self, tool: str, /, session_id: str = "", **params: Any) -> Any:
        reply = self.call(_request(tool, session_id, **params))
        assert reply.success, reply.error_message
        return json.loads(reply.result.value)

    def error(self, request: pb.ExecuteToolRequest) -> dict[str, Any]:
        reply = self.call(request)
        assert not reply.success
        decoded: dict[str, Any] = json.loads(reply.error_message)
        return decoded

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        self.channel.close()
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(timeout=5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


def _launch(directory: Path, args: list[str], ready_file: bool = True, stdin: int = subprocess.PIPE,
            **env: str) -> Worker:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEPIT_")}
    base.update(GRPC_VERBOSITY="ERROR", PYTHONUNBUFFERED="1", **env)
    ready = directory / "ready" if ready_file else None
    if ready is not None:
        base["SNAKEPIT_READY_FILE"] = str(ready)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reference_worker", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=base,
        cwd=REPO,
    )
    try:
        return Worker(proc, ready)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


Spawn = Callable[..., Worker]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker shared by the read-mostly tests: JSON errors (ready file set), no Elixir address."""
    launched = _launch(tmp_path_factory.mktemp("worker"), SNAKEPIT_ARGV)
    yield launched
    launched.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Dedicated workers for tests that end or reconfigure the process; all cleaned up."""
    launched: list[Worker] = []

    def start(*args: str, ready_file: bool = True, stdin: int = subprocess.PIPE, **env: str) -> Worker:
        launched.append(_launch(tmp_path, list(args), ready_file, stdin, **env))
        return launched[-1]

    yield start
    for each in launched:
        each.close()


class FakeElixir(pb_grpc.BridgeServiceServicer):
    """A stand-in for Snakepit's BridgeServer that records what the worker sends."""

    def __init__(self) -> None:
        self.heartbeats: list[str] = []
        self.sessions: list[str] = []
        self.executed: list[tuple[pb.ExecuteElixirToolRequest, dict[str, str]]] = []
        self.registered: list[pb.RegisterToolsRequest] = []

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        self.heartbeats.append(request.session_id)
        return pb.HeartbeatResponse(session_valid=False)  # Any OK reply must count for the watchdog.

    def InitializeSession(
        self,
        request: pb.InitializeSessionRequest,
        context: Any,
    ) -> pb.InitializeSessionResponse:
        self.sessions.append(request.session_id)
        return pb.InitializeSessionResponse(success=True)

    def ExecuteElixirTool(
        self,
        request: pb.ExecuteElixirToolRequest,
        context: Any,
    ) -> pb.ExecuteElixirToolResponse:
        self.executed.append((request, dict(context.invocation_metadata())))
        if request.tool_name == "boom":
            return pb.ExecuteElixirToolResponse(success=False, error_message="kaboom")
        got = {key: json.loads(value.value) for key, value in request.parameters.items()}
        return pb.ExecuteElixirToolResponse(success=True, result=_json_any({"got": got}))

    def RegisterTools(self, request: pb.RegisterToolsRequest, context: Any) -> pb.RegisterToolsResponse:
        self.registered.append(request)
        ids = {t.name: f"id-{t.name}" for t in request.tools}
        return pb.RegisterToolsResponse(success=True, tool_ids=ids)


Elixir = tuple[FakeElixir, grpc.Server, str]


def _start_elixir(port: int = 0) -> Elixir:
    fake = FakeElixir()  # type: ignore[abstract]  # Implements only the RPCs a worker calls.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_BridgeServiceServicer_to_server(fake, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return fake, server, f"127.0.0.1:{port}"


@pytest.fixture
def elixir() -> Iterator[Elixir]:
    started = _start_elixir()
    yield started
    started[1].stop(None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port  # Nothing listens there once the socket closes.


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_unknown_flags_and_positionals_are_ignored(worker: Worker) -> None:
    me = worker.result("contract.whoami", session_id="s-flags")
    assert me["run_id"] == "run-1"
    assert me["instance_name"] == "test_instance"
    assert me["pid"] == worker.proc.pid
    assert me["session_id"] == "s-flags"


def test_both_readiness_signals_carry_the_port(worker: Worker) -> None:
    assert worker.ready_file is not None
    assert worker.ready_file.read_text() == str(worker.port)
    assert not Path(f"{worker.ready_file}.tmp").exists()
    assert f"GRPC_READY:{worker.port}\n".encode() in worker.output


def test_ping_and_heartbeat_are_answered(worker: Worker) -> None:
    pong = worker.stub.Ping(pb.PingRequest(message="connection_test"), timeout=5)
    assert pong.message == "pong: connection_test"
    assert pong.server_time.seconds > 0
    beat = worker.stub.Heartbeat(pb.HeartbeatRequest(session_id="session_1_2"), timeout=5)
    assert beat.session_valid
    assert beat.server_time.seconds > 0


def test_initialize_answers_locally_and_unused_rpcs_are_unimplemented(worker: Worker) -> None:
    assert worker.stub.InitializeSession(pb.InitializeSessionRequest(session_id="s-rpc"), timeout=5).success
    with pytest.raises(grpc.RpcError) as raised:  # nobody in Snakepit calls it (docs/contract.md §2: MAY)
        worker.stub.GetSession(pb.GetSessionRequest(session_id="s-rpc"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as raised:
        worker.stub.RegisterTools(pb.RegisterToolsRequest(session_id="s-rpc"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as raised:
        worker.stub.ExecuteElixirTool(pb.ExecuteElixirToolRequest(session_id="s-rpc"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_stream_telemetry_opens_and_ends_with_the_client(worker: Worker) -> None:
    controls = iter([pb.TelemetryControl(toggle=pb.TelemetryToggle(enabled=True))])
    events = list(worker.stub.StreamTelemetry(controls, timeout=5))
    assert events == []


def test_echo_preserves_json_types(worker: Worker) -> None:
    params: dict[str, Any] = {"i": 42, "f": 1.5, "n": None, "t": True, "s": "hé", "l": [1, "a"], "o": {}}
    reply = worker.call(_request("contract.echo", **params))
    assert reply.success
    assert reply.execution_time_ms >= 0
    decoded = json.loads(reply.result.value)
    assert decoded == params
    assert type(decoded["i"]) is int
    assert type(decoded["t"]) is bool
    assert worker.result("contract.add", a=2, b=3) == 5
    assert worker.result("contract.add", a=2, b=0.5) == 2.5


def test_application_errors_are_json_with_status_ok(worker: Worker) -> None:
    error = worker.error(_request("no.such.tool", session_id="s-err"))
    assert error["type"] == "ToolNotFound"
    assert error["context"] == {"tool_name": "no.such.tool", "session_id": "s-err"}
    assert worker.error(_request("contract.fail", type="ValueError", message="bad"))["type"] == "ValueError"
    assert worker.error(_request("contract.stream", count=1))["type"] == "InvalidParameters"
    not_json = pb.ExecuteToolRequest(
        tool_name="contract.echo", parameters={"x": any_pb2.Any(type_url=STRING_VALUE, value=b"hello")}
    )
    assert worker.error(not_json)["type"] == "InvalidParameters"


def test_json_errors_also_without_ready_file(spawn: Spawn) -> None:
    """Snakepit parses JSON errors from 0.7.4, which still uses the ready line: the error format cannot follow it."""
    worker = spawn(ready_file=False)
    reply = worker.call(_request("no.such.tool"))
    assert not reply.success
    assert json.loads(reply.error_message)["type"] == "ToolNotFound"


def test_stream_sends_chunks_then_one_empty_final(worker: Worker) -> None:
    chunks = list(worker.stub.ExecuteStreamingTool(_request("contract.stream", count=3), timeout=5))
    assert [c.chunk_id for c in chunks] == [f"contract.stream-{n}" for n in range(1, 5)]
    assert [json.loads(c.data) for c in chunks[:3]] == [{"index": i} for i in range(3)]
    assert chunks[1].data == b'{"index":1}'  # compact JSON, as every result
    assert [c.is_final for c in chunks] == [False, False, False, True]
    assert chunks[3].data == b""
    unary = list(worker.stub.ExecuteStreamingTool(_request("contract.add", a=1, b=2), timeout=5))
    assert [(json.loads(c.data) if c.data else None, c.is_final) for c in unary] == [(3, False), (None, True)]


def test_stream_fail_after_aborts_internal(worker: Worker) -> None:
    received: list[pb.ToolChunk] = []
    request = _request("contract.stream", count=5, fail_after=2, type="Boom", message="after two")
    with pytest.raises(grpc.RpcError) as raised:
        received.extend(worker.stub.ExecuteStreamingTool(request, timeout=5))
    assert len(received) == 2
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    details = json.loads(raised.value.details() or "")
    assert (details["type"], details["message"]) == ("Boom", "after two")
    with pytest.raises(grpc.RpcError) as raised:
        list(worker.stub.ExecuteStreamingTool(_request("no.such.tool"), timeout=5))
    assert raised.value.code() == grpc.StatusCode.INTERNAL


def test_cancelled_stream_stops_producing(worker: Worker) -> None:
    request = _request("contract.stream", count=10_000, interval_ms=20)
    stream = worker.stub.ExecuteStreamingTool(request, timeout=30)
    chunks = iter(stream)
    next(chunks)
    next(chunks)
    stream.cancel()  # type: ignore[no-untyped-call]  # Untyped in grpc-stubs.
    time.sleep(0.2)
    produced = worker.result("contract.whoami")["stream_chunks_produced"]
    time.sleep(0.3)
    assert worker.result("contract.whoami")["stream_chunks_produced"] == produced


def test_whoami_reports_calls_and_correlation(worker: Worker) -> None:
    first = worker.result("contract.whoami")
    second = worker.result("contract.whoami")
    assert second["call_count"] == first["call_count"] + 1
    assert first["correlation_id"] is None
    request = _request("contract.whoami")
    request.metadata["correlation_id"] = "corr-md"
    by_metadata = json.loads(worker.call(request).result.value)
    assert by_metadata["correlation_id"] == "corr-md"
    assert by_metadata["metadata"] == {"correlation_id": "corr-md"}
    # Snakepit sends the header only beside the metadata entry: the header alone is not read.
    by_header = worker.call(_request("contract.whoami"), metadata=(("x-snakepit-correlation-id", "corr-h"),))
    assert json.loads(by_header.result.value)["correlation_id"] is None


def test_programs_store_run_missing_and_cleanup(worker: Worker) -> None:
    stored = worker.result("contract.program.store", session_id="s-prog", name="p", source={"op": "x"})
    assert stored == {"stored": "p", "scope": "session"}
    worker.result("contract.program.store", name="g", source=[1], scope="global")
    assert worker.result("contract.program.run", session_id="s-prog", name="p")["runs"] == 1
    run = worker.result("contract.program.run", session_id="s-prog", name="p")
    assert run == {"name": "p", "scope": "session", "source": {"op": "x"}, "runs": 2}
    missing = worker.error(_request("contract.program.run", session_id="s-other", name="p"))
    assert missing["type"] == "ProgramNotFound"
    assert worker.result("contract.program.run", session_id="s-other", name="g")["scope"] == "global"
    assert worker.result("contract.program.list", session_id="s-prog")["session"] == ["p"]
    cleaned = worker.stub.CleanupSession(pb.CleanupSessionRequest(session_id="s-prog"), timeout=5)
    assert (cleaned.success, cleaned.resources_cleaned) == (True, 1)
    released = worker.error(_request("contract.program.run", session_id="s-prog", name="p"))
    assert released["type"] == "ProgramNotFound"
    again = worker.stub.CleanupSession(pb.CleanupSessionRequest(session_id="s-prog"), timeout=5)
    assert (again.success, again.resources_cleaned) == (True, 0)
    assert worker.result("contract.program.drop", name="g", scope="global") == {"dropped": True}


def test_session_id_parameter_wins_over_the_request_session(worker: Worker) -> None:
    # execute_in_session: the caller's session arrives as a parameter; the wire carries the worker's session.
    stored = _request("contract.program.store", session_id="worker-session", name="q", source=1)
    stored.parameters["session_id"].CopyFrom(_json_any("caller-session"))
    assert worker.call(stored).success
    assert worker.result("contract.program.list", session_id="caller-session")["session"] == ["q"]
    assert worker.result("contract.program.list", session_id="worker-session")["session"] == []


class _CreatesFile:
    """Unpickling this opens (creates) a file: proof that a worker deserialised a binary parameter."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_binary_parameters_are_never_unpickled(worker: Worker, tmp_path: Path) -> None:
    pickle.loads(pickle.dumps(_CreatesFile(tmp_path / "control"))).close()
    assert (tmp_path / "control").exists()  # The payload does what it claims when unpickled.
    payload = pickle.dumps(_CreatesFile(tmp_path / "pwned"))
    request = _request("contract.binary")
    request.binary_parameters["b"] = payload
    request.binary_parameters["a"] = b"\x00\x01"
    reply = worker.call(request)
    assert reply.success, reply.error_message
    assert json.loads(reply.result.value)["sizes"] == {"a": 2, "b": len(payload)}
    assert reply.binary_result == b"\x00\x01" + payload
    assert not (tmp_path / "pwned").exists()


def test_sleep_respects_the_deadline(worker: Worker) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        worker.call(_request("contract.sleep", seconds=30), timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    assert worker.result("contract.sleep", seconds=0.01) == {"slept": 0.01}


def test_call_elixir_without_address_is_elixir_unavailable(worker: Worker) -> None:
    assert worker.error(_request("contract.call_elixir", tool="t"))["type"] == "ElixirUnavailable"


def test_sigterm_during_a_call_exits_0_within_2s(spawn: Spawn) -> None:
    worker = spawn()
    pending = worker.stub.ExecuteTool.future(_request("contract.sleep", seconds=30), timeout=30)
    time.sleep(0.2)
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=5) == 0
    assert time.monotonic() - started < 2
    with pytest.raises(grpc.RpcError):
        pending.result(timeout=5)  # The in-flight call was cut off, not completed.


def test_stdin_eof_exits_70(spawn: Spawn) -> None:
    worker = spawn()
    assert worker.proc.stdin is not None
    worker.proc.stdin.close()
    assert worker.wait_exit(timeout=5) == 70


def test_stdin_that_is_not_a_pipe_is_not_watched(spawn: Spawn) -> None:
    # By hand (nohup, a container without -i): /dev/null reads EOF at once, which says nothing about Snakepit.
    worker = spawn(stdin=subprocess.DEVNULL)
    for _ in range(3):
        assert worker.result("contract.add", a=1, b=2) == 3
    assert worker.proc.poll() is None


def test_busy_port_fails_with_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        argv = [sys.executable, "-m", "reference_worker", "--port", str(taken.getsockname()[1])]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, stdin=subprocess.DEVNULL, timeout=20)
    assert done.returncode == 1
    assert b"GRPC_READY" not in done.stdout
    assert b"cannot start on 127.0.0.1:" in done.stderr and b"Failed to bind" in done.stderr, done.stderr


def test_heartbeat_watchdog_exits_70_when_elixir_goes_away(spawn: Spawn, elixir: Elixir) -> None:
    fake, server, address = elixir
    config = json.dumps({"interval_ms": 200, "timeout_ms": 500, "max_missed_heartbeats": 2})
    worker = spawn("--elixir-address", address, SNAKEPIT_HEARTBEAT_CONFIG=config)
    assert _wait_for(lambda: len(fake.heartbeats) >= 2, timeout=5)
    assert fake.heartbeats[0] == f"reference-worker-{worker.proc.pid}"
    assert worker.proc.poll() is None  # session_valid=false replies still count as alive.
    server.stop(None)
    assert worker.wait_exit(timeout=5) == 70


def test_call_elixir_and_register_tools_round_trip(spawn: Spawn, elixir: Elixir) -> None:
    fake, _server, address = elixir
    worker = spawn(SNAKEPIT_GRPC_ADDRESS=address)  # The env fallback for --elixir-address.
    request = _request("contract.call_elixir", session_id="s-ex", tool="t", parameters={"x": 1, "s": "hi"})
    request.metadata["correlation_id"] = "corr-1"
    reply = worker.call(request)
    assert reply.success, reply.error_message
    assert json.loads(reply.result.value) == {"got": {"x": 1, "s": "hi"}}
    sent, headers = fake.executed[-1]
    assert (sent.session_id, sent.tool_name) == ("s-ex", "t")
    assert {k: (v.type_url, v.value) for k, v in sent.parameters.items()} == {
        "x": (STRING_VALUE, b"1"),
        "s": (STRING_VALUE, b'"hi"'),
    }
    assert sent.metadata["correlation_id"] == "corr-1"
    assert headers["x-snakepit-correlation-id"] == "corr-1"
    assert fake.sessions[-1] == "s-ex"
    failed = worker.error(_request("contract.call_elixir", tool="boom"))
    assert (failed["type"], failed["message"]) == ("ElixirToolError", "kaboom")
    registered = worker.result("contract.register_tools", session_id="s-ex")
    names = worker.result("contract.catalogue")["tools"]
    assert registered == {"success": True, "tool_ids": {n: f"id-{n}" for n in names}, "error_message": ""}
    tools = fake.registered[-1].tools
    assert {t.name for t in tools if t.supports_streaming} == {"contract.stream"}
    assert fake.registered[-1].worker_id == f"reference-{worker.proc.pid}"


def test_call_elixir_reaches_a_late_elixir_side(spawn: Spawn) -> None:
    port = _free_port()
    config = json.dumps({"interval_ms": 100, "timeout_ms": 200})
    worker = spawn("--elixir-address", f"127.0.0.1:{port}", SNAKEPIT_HEARTBEAT_CONFIG=config)
    time.sleep(1.5)  # Heartbeats fail meanwhile, so the worker's channel sits in reconnect backoff.
    _fake, server, _address = _start_elixir(port)
    try:
        started = time.monotonic()
        assert worker.result("contract.call_elixir", tool="t", parameters={"a": 1}) == {"got": {"a": 1}}
        assert time.monotonic() - started < 3
        assert worker.proc.poll() is None
    finally:
        server.stop(None)


def test_heartbeat_is_served_while_a_tool_runs(worker: Worker) -> None:
    # Ordered by events, not timed: a worker that serves the Heartbeat only after the tool answers it 30 s late.
    sleeping = _request("contract.sleep", seconds=30)
    pending: grpc.Future[pb.ExecuteToolResponse] = worker.stub.ExecuteTool.future(sleeping, timeout=60)
    assert worker.stub.Heartbeat(pb.HeartbeatRequest(session_id="s"), timeout=20).session_valid
    assert not pending.done(), "the Heartbeat was answered only once the tool had ended"
    pending.cancel()


def test_starts_without_elixir_and_leads_its_process_group(spawn: Spawn) -> None:
    dead = f"127.0.0.1:{_free_port()}"
    config = json.dumps({"interval_ms": 50, "timeout_ms": 100, "max_missed_heartbeats": 1})
    worker = spawn("--elixir-address", dead, SNAKEPIT_PROCESS_GROUP="1", SNAKEPIT_HEARTBEAT_CONFIG=config)
    assert os.getpgid(worker.proc.pid) == worker.proc.pid
    time.sleep(0.5)  # Many failed heartbeats, all inside the startup budget: Elixir may come up later.
    assert worker.stub.Ping(pb.PingRequest(message="m"), timeout=5).message == "pong: m"
    assert worker.proc.poll() is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, HeartbeatConfig()),
        ("not json", HeartbeatConfig()),
        ("[1]", HeartbeatConfig()),
        (
            '{"interval_ms": 200, "timeout_ms": 500.5, "max_missed_heartbeats": 2}',
            HeartbeatConfig(interval_ms=200, timeout_ms=500.5, max_missed_heartbeats=2),
        ),
        (
            '{"enabled": false, "dependent": false, "interval_ms": null, "initial_delay_ms": 0}',
            HeartbeatConfig(enabled=False, dependent=False),
        ),
        (
            '{"enabled": "false", "timeout_ms": "500", "interval_ms": -1, "max_missed_heartbeats": 0, "dependent": 0,'
            ' "initial_delay_ms": NaN, "unknown": 3}',
            HeartbeatConfig(),
        ),
    ],
)
def test_heartbeat_config_parsing(raw: str | None, expected: HeartbeatConfig) -> None:
    assert load_heartbeat_config(raw) == expected


class _ScriptedElixir(ElixirClient):
    """Answers heartbeats from a script, then never again."""

    def __init__(self, answers: list[bool]) -> None:
        super().__init__("unused:0")
        self.answers = answers
        self.probes = 0

    async def heartbeat(self, session_id: str, timeout_s: float) -> bool:
        self.probes += 1
        return self.answers.pop(0) if self.answers else False


def _watch(client: _ScriptedElixir, dependent: bool) -> bool:
    """Run the watchdog 0.3 s at a 10 ms interval, 2 misses allowed; returns whether it declared an orphan."""
    orphaned: list[bool] = []
    config = HeartbeatConfig(interval_ms=10, max_missed_heartbeats=2, dependent=dependent)

    async def run() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heartbeat_watchdog(client, config, lambda: orphaned.append(True)), 0.3)

    asyncio.run(run())
    return bool(orphaned)


def test_watchdog_leaves_after_misses_only_when_dependent(monkeypatch: pytest.MonkeyPatch) -> None:
    dependent = _ScriptedElixir([True])
    assert _watch(dependent, dependent=True)
    assert dependent.probes == 3  # One answer, then two misses.
    assert not _watch(_ScriptedElixir([True]), dependent=False)
    assert not _watch(_ScriptedElixir([]), dependent=True)  # Never answered: still inside the startup budget.
    monkeypatch.setattr(elixir_module, "STARTUP_BUDGET_S", 0.0)
    assert _watch(_ScriptedElixir([]), dependent=True)


def test_deep_nesting_is_invalid_parameters_with_the_limit(worker: Worker) -> None:
    """Ensure 1,000-deep JSON is an application error naming the limit, never the decoder's RecursionError."""
    deep = pb.ExecuteToolRequest(tool_name="contract.echo", parameters={
        "x": any_pb2.Any(type_url=STRING_VALUE, value=b"[" * 1000 + b"]" * 1000)})
    error = worker.error(deep)
    assert error["type"] == "InvalidParameters" and "deeper than 512 levels" in error["message"]
    in_strings = json.dumps(["[" * 1000, {"k": "{" * 600}]).encode()  # brackets inside strings do not nest
    assert worker.call(pb.ExecuteToolRequest(tool_name="contract.echo", parameters={
        "x": any_pb2.Any(type_url=STRING_VALUE, value=in_strings)})).success
    assert worker.result("contract.echo", x=json.loads("[" * 512 + "]" * 512))["x"] is not None


def test_a_result_too_large_to_send_is_a_clean_error(spawn: Spawn) -> None:
    """Ensure a result over the message limit is success=false, ResultTooLarge, with no traceback in the log."""
    worker = spawn()
    error = worker.error(_request("contract.blob", size=260 << 20, binary=True))
    assert error["type"] == "ResultTooLarge" and error["message"].endswith("bytes in one reply"), error
    assert worker.result("contract.add", a=1, b=2) == 3  # still serving
    worker.proc.terminate()
    assert worker.proc.stdout is not None
    log = worker.output + worker.proc.stdout.read()
    assert b"Traceback" not in log and b"Error" not in log, log[-2000:]


_LONG = "x" * 70_000
_CODEC_CASES = [
    '"ping"', "1", "-0", "1.5e300", "123456789012345678901234567890", "null", "true", '{"a":[1,2.5,null,"\\u00e9"]}',
    " 1", "1 ", "\t[1]\n", json.dumps(_LONG), json.dumps(_LONG + '"'), json.dumps(_LONG + "\\"),
    json.dumps(_LONG + "\x01"),
    json.dumps(_LONG + "\u00e9"), json.dumps(_LONG + "\u00e9", ensure_ascii=False), '"' + _LONG, '"' + _LONG + '" ',
    '"' + _LONG + '"x"', json.dumps([_LONG]), "", "[1] x", "NaN", '"a', "[" * 600 + "]" * 600,
]


@pytest.mark.parametrize("text", _CODEC_CASES, ids=range(len(_CODEC_CASES)))
def test_codec_shortcuts_decode_as_the_json_module_does(text: str) -> None:
    """Ensure that the decoder's shortcuts (scanner called directly, long plain strings) give json.loads' value,
    and refuse what it refuses."""
    from reference_worker.codec import MAX_DEPTH, decode_params
    from reference_worker.errors import ToolError

    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        expected = ToolError
    if text.count("[") > MAX_DEPTH:
        expected = ToolError
    try:
        got = decode_params({"p": any_pb2.Any(value=text.encode())})["p"]
    except ToolError:
        got = ToolError
    assert got == expected or (got != got and expected != expected)  # NaN is not equal to itself
    assert type(got) is type(expected)


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, 'q"b\\s\x01\u00e9\U0001f600']}, _LONG, {"d": _LONG + '"'}, [_LONG + "\n"], 2**80,
    {"k": _LONG + "\u00e9"}, -0.0, 1e16,
], ids=range(8))
def test_codec_encodes_as_the_json_module_does(value: Any) -> None:
    """Ensure that the encoder built once (and its long-text shortcut) writes what json.dumps writes."""
    from reference_worker.codec import encode_json

    assert encode_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_codec_encoder_recovers_after_a_failed_call() -> None:
    """Ensure that NaN and Infinity fail as in json.dumps, and the next call is unaffected."""
    from reference_worker.codec import encode_json

    for bad in (float("nan"), {"x": [float("inf")]}):
        with pytest.raises(ValueError):
            encode_json(bad)
        assert encode_json({"ok": [1]}) == b'{"ok":[1]}'
