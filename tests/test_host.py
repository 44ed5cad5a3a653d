"""Tests for the host emulator (BridgeServer + SessionStore + ToolRegistry stand-in), both profiles."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2

from contract_tests.contract.profiles import SNAKEPIT_0_6, SNAKEPIT_0_13, Profile
from contract_tests.elixir.host import STRING_VALUE_TYPE_URL, HostEmulator, jason_decode, jason_encode
from contract_tests.elixir.session_store import (
    InvalidSession,
    SessionNotFound,
    SessionQuotaExceeded,
    SessionStore,
    SessionUpdateFailed,
)
from contract_tests.elixir.tool_registry import (
    Atom,
    RemoteToolSpec,
    ToolKind,
    ToolRegistrationError,
    ToolRegistry,
    inspect_term,
)
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

PROFILES = [pytest.param(SNAKEPIT_0_6, id="0.6"), pytest.param(SNAKEPIT_0_13, id="0.13")]


class FakeClock:
    """Settable clock so TTL tests advance time instead of sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def json_any(value: Any) -> any_pb2.Any:
    """A parameter the way Snakepit sends it: JSON text, StringValue type_url (snakepit: parameter-encoding)."""
    return any_pb2.Any(type_url=STRING_VALUE_TYPE_URL, value=json.dumps(value).encode())


def packed_string(value: str) -> any_pb2.Any:
    """What SessionContext.call_elixir_tool sends for a str (snakepit: bridge-server-parameters): protobuf, not JSON."""
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value=value))
    return packed


# ---------------------------------------------------------------- SessionStore


def test_create_is_idempotent_and_keeps_first_metadata() -> None:
    store = SessionStore(clock=FakeClock())
    first = store.create_session("s", metadata={"a": "1"})
    again = store.create_session("s", metadata={"a": "2", "b": "3"})
    assert again.metadata == {"a": "1"}
    assert again.created_at == first.created_at
    assert store.stats()["sessions_created"] == 1


def test_empty_session_id_is_rejected() -> None:
    store = SessionStore()
    with pytest.raises(ValueError) as info:
        store.create_session("")
    assert isinstance(info.value, InvalidSession)
    assert info.value.reason == "invalid_id"


def test_get_touches_and_extends_life() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock, default_ttl_s=10)
    store.create_session("s")
    clock.advance(8)
    session = store.get_session("s")
    assert session is not None and session.last_accessed == clock.now
    clock.advance(9)  # 17 s after creation, 9 s after the touch
    assert store.sweep() == 0
    clock.advance(1.5)
    assert store.sweep() == 1
    assert store.get_session("s") is None


def test_expiry_is_strict_and_only_sweep_removes() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock, default_ttl_s=10)
    store.create_session("s")
    clock.advance(10)
    assert store.sweep() == 0  # last_accessed + ttl == now is not expired
    clock.advance(5)
    # Expired but not swept: still there (Elixir get_session does not check expiry).
    assert store.session_exists("s")
    peeked = store.peek_session("s")
    assert peeked is not None and peeked.expired(clock.now)
    assert store.sweep() == 1
    assert not store.session_exists("s")


def test_per_session_ttl() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock, default_ttl_s=3600)
    store.create_session("short", ttl=1)
    store.create_session("long")
    clock.advance(2)
    assert store.sweep() == 1
    assert store.list_sessions() == ["long"]


def test_quota() -> None:
    store = SessionStore(max_sessions=2)
    store.create_session("a")
    store.create_session("b")
    with pytest.raises(SessionQuotaExceeded) as info:
        store.create_session("c")
    assert info.value.reason == "session_quota_exceeded"
    # Snakepit checks the quota before the existence check, so even an existing id fails at quota.
    with pytest.raises(SessionQuotaExceeded):
        store.create_session("a")
    with pytest.raises(SessionQuotaExceeded):
        store.store_worker_session("c", "worker-1")
    store.store_worker_session("a", "worker-1")  # an existing session is fine
    store.delete_session("a")
    store.create_session("c")
    assert SessionStore(max_sessions=None).create_session("x").id == "x"


def test_delete_is_idempotent_and_stats_count() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock, default_ttl_s=5)
    store.create_session("a")
    store.create_session("b")
    store.delete_session("a")
    store.delete_session("a")
    clock.advance(6)
    assert store.sweep() == 1
    store.sweep()
    assert store.stats() == {
        "sessions_created": 2,
        "sessions_deleted": 2,  # Elixir counts every delete call
        "sessions_expired": 1,
        "cleanup_runs": 2,
        "current_sessions": 0,
        "global_programs_stored": 0,
        "global_programs_deleted": 0,
        "global_programs_expired": 0,
    }


def test_program_api_of_v06() -> None:
    """Ensure session programs live and die with their session, and global programs have their own TTL."""
    clock = FakeClock()
    store = SessionStore(clock=clock, default_ttl_s=100)
    store.create_session("s")
    store.store_program("s", "p", {"code": 1})
    store.update_program("s", "p", {"code": 2})
    assert store.get_program("s", "p") == {"code": 2}
    assert store.peek_session("s").stats["program_count"] == 1  # type: ignore[union-attr]
    with pytest.raises(SessionNotFound):
        store.get_program("s", "missing")
    store.store_global_program("g", [1, 2])
    assert store.get_global_program("g") == [1, 2]
    store.delete_session("s")
    with pytest.raises(SessionNotFound):
        store.get_program("s", "p")
    clock.advance(store.global_program_ttl_s + 1)
    store.sweep()
    with pytest.raises(SessionNotFound):
        store.get_global_program("g")
    assert store.stats()["global_programs_expired"] == 1


def test_store_worker_session_upserts() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock)
    store.store_worker_session("s", "worker-1")
    created = store.get_session("s")
    assert created is not None and created.last_worker_id == "worker-1"
    clock.advance(3)
    store.store_worker_session("s", "worker-2")
    session = store.peek_session("s")
    assert session is not None
    assert session.last_worker_id == "worker-2" and session.last_accessed == clock.now
    assert store.stats()["sessions_created"] == 1


def test_update_session() -> None:
    store = SessionStore(clock=FakeClock())
    store.create_session("s")

    def add_key(session: Any) -> Any:
        session.metadata["k"] = "v"
        return session

    assert store.update_session("s", add_key).metadata == {"k": "v"}

    def boom(session: Any) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(SessionUpdateFailed):
        store.update_session("s", boom)
    with pytest.raises(SessionNotFound):
        store.update_session("missing", add_key)
    returned = store.get_session("s")
    assert returned is not None
    returned.metadata["mutated"] = "outside"  # snapshots: the store is not affected
    assert store.peek_session("s") is not None
    assert "mutated" not in store.peek_session("s").metadata  # type: ignore[union-attr]


def test_background_sweeper() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock, default_ttl_s=1)
    store.create_session("s")
    clock.advance(5)
    store.start_sweeper(interval_s=0.02)
    try:
        deadline = time.monotonic() + 2
        while store.session_exists("s") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not store.session_exists("s")
    finally:
        store.stop_sweeper()
    store.stop_sweeper()


# ---------------------------------------------------------------- ToolRegistry


def _handler(params: dict[str, Any], binary: dict[str, bytes]) -> Any:
    return params


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "{:invalid_tool_name, :empty}"),
        ("   ", "{:invalid_tool_name, :empty}"),
        ("a" * 65, "{:invalid_tool_name, :too_long}"),
        ("-leading-dash", "{:invalid_tool_name, :invalid_format}"),
        ("has space", "{:invalid_tool_name, :invalid_format}"),
        ("ünïcode", "{:invalid_tool_name, :invalid_format}"),
    ],
)
def test_registry_rejects_bad_names(name: str, error: str) -> None:
    registry = ToolRegistry(validate=True)
    with pytest.raises(ToolRegistrationError) as info:
        registry.register("s", [RemoteToolSpec(name=name)], "w")
    assert info.value.message == error
    # v0.6.0 had no validation at all.
    assert ToolRegistry(validate=False).register("s", [RemoteToolSpec(name=name)], "w") == {name: f"s:{name}"}


def test_registry_trims_and_accepts_valid_names() -> None:
    registry = ToolRegistry(validate=True)
    ids = registry.register("s", [RemoteToolSpec(name="  ok.Name_1-x  "), RemoteToolSpec(name="a" * 64)], "w")
    assert ids == {"ok.Name_1-x": "s:ok.Name_1-x", "a" * 64: f"s:{'a' * 64}"}
    tool = registry.get_tool("s", "ok.Name_1-x")
    assert tool is not None and tool.kind is ToolKind.REMOTE and tool.worker_id == "w"


def test_registry_metadata_limits() -> None:
    registry = ToolRegistry(validate=True)
    too_many = {f"k{i}": "v" for i in range(33)}
    with pytest.raises(ToolRegistrationError, match="too_many_entries"):
        registry.register("s", [RemoteToolSpec(name="t", metadata=too_many)], "w")
    with pytest.raises(ToolRegistrationError, match="too_large"):
        registry.register("s", [RemoteToolSpec(name="t", metadata={"k": "x" * 5000})], "w")
    registry.register("s", [RemoteToolSpec(name="t", metadata={f"k{i}": "v" for i in range(32)})], "w")


def test_registry_duplicates_reject_the_whole_batch() -> None:
    registry = ToolRegistry(validate=True)
    with pytest.raises(ToolRegistrationError) as info:
        registry.register(
            "s", [RemoteToolSpec(name="a"), RemoteToolSpec(name="b"), RemoteToolSpec(name="a")], "w"
        )
    assert info.value.message == '{:duplicate_tool, "a"}'
    assert registry.list_tools("s") == []
    registry.register("s", [RemoteToolSpec(name="b")], "w")
    with pytest.raises(ToolRegistrationError, match='duplicate_tool, "b"'):
        registry.register("s", [RemoteToolSpec(name="c"), RemoteToolSpec(name="b")], "w")
    assert registry.get_tool("s", "c") is None  # rolled back
    registry.register("other", [RemoteToolSpec(name="b")], "w")  # sessions are separate namespaces


def test_registry_v06_overwrites() -> None:
    registry = ToolRegistry(validate=False)
    registry.register("s", [RemoteToolSpec(name="a", description="one")], "w1")
    registry.register("s", [RemoteToolSpec(name="a", description="two")], "w2")
    tool = registry.get_tool("s", "a")
    assert tool is not None and tool.description == "two" and tool.worker_id == "w2"


def test_registry_global_tools_and_cleanup() -> None:
    registry = ToolRegistry(validate=True)
    registry.register_elixir_tool(None, "g", _handler)
    registry.register_elixir_tool("s", "hidden", _handler, exposed_to_python=False)
    assert registry.get_tool("any-session", "g") is not None
    with pytest.raises(ToolRegistrationError, match="duplicate_tool"):
        registry.register("s", [RemoteToolSpec(name="g")], "w")
    assert [t.name for t in registry.list_exposed_elixir_tools("s")] == ["g"]
    assert registry.cleanup_session("s") == 1


def test_inspect_term_matches_elixir() -> None:
    assert inspect_term(("a", 1, None, True)) == '{"a", 1, nil, true}'
    assert inspect_term('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert inspect_term(b"\xff\x00") == "<<255, 0>>"
    assert inspect_term("\x01") == "<<1>>"
    assert inspect_term({"k": [1, 2]}) == '%{"k" => [1, 2]}'


def test_jason_helpers() -> None:
    assert jason_decode(b' {"a": [1, 2.5, null]} ') == {"a": [1, 2.5, None]}
    with pytest.raises(Exception, match=r"unexpected byte at position 0: 0x68 \(\"h\"\)"):
        jason_decode(b"hello")
    with pytest.raises(Exception, match="unexpected end of input at position 7"):
        jason_decode(b'{"a": 1')
    with pytest.raises(Exception, match="unexpected byte at position 0: 0x4E"):
        jason_decode(b"NaN")
    assert jason_encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert jason_encode(float("nan")) == b"nan"  # not JSON: inspect/1 fallback
    # Jason has no encoder for tuples (json.dumps would write a list): inspect/1 text, as Snakepit sends it.
    assert jason_encode((Atom("ok"), {"k": [1]})) == b'{:ok, %{"k" => [1]}}'
    assert jason_encode({"k": [("a", 1)]}) == b'%{"k" => [{"a", 1}]}'


# ---------------------------------------------------------------- gRPC fixtures


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> Profile:
    value: Profile = request.param
    return value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def host(profile: Profile, clock: FakeClock) -> Iterator[HostEmulator]:
    emulator = HostEmulator(profile, store=SessionStore(clock=clock))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def stub(host: HostEmulator) -> Iterator[pb_grpc.BridgeServiceStub]:
    with grpc.insecure_channel(host.address) as channel:
        yield pb_grpc.BridgeServiceStub(channel)


def init(stub: pb_grpc.BridgeServiceStub, session_id: str = "s1", **metadata: str) -> None:
    assert stub.InitializeSession(
        pb.InitializeSessionRequest(session_id=session_id, metadata=metadata)
    ).success


def rpc_error(fn: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = fn(*args, **kwargs)
        if isinstance(result, Iterator):
            list(result)
    return info.value


# ---------------------------------------------------------------- lifecycle


def test_addresses(host: HostEmulator, profile: Profile) -> None:
    assert host.address == f"127.0.0.1:{host.port}"
    expected_host = "localhost" if profile is SNAKEPIT_0_6 else "127.0.0.1"
    assert host.elixir_address_for_worker == f"{expected_host}:{host.port}"


def test_stop_is_idempotent_and_frees_the_port() -> None:
    first = HostEmulator(SNAKEPIT_0_13)
    first.start()
    port = first.port
    with grpc.insecure_channel(first.address) as channel:
        pb_grpc.BridgeServiceStub(channel).Ping(pb.PingRequest(message="x"), timeout=5)
    first.stop()
    first.stop()
    assert not first.running
    with HostEmulator(SNAKEPIT_0_13) as second:
        second.stop()
        second.start(port=port)
        assert second.port == port
        with grpc.insecure_channel(second.address) as channel:
            assert pb_grpc.BridgeServiceStub(channel).Ping(pb.PingRequest(message="y"), timeout=5).message
    assert not second.running


def test_start_on_reserved_port_and_refuses_taken_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = HostEmulator(SNAKEPIT_0_6)
    host.start(port=port)
    try:
        assert host.port == port
        with pytest.raises(RuntimeError):
            host.start()
        with pytest.raises(OSError):
            HostEmulator(SNAKEPIT_0_6).start(port=port)
    finally:
        host.stop()


# ---------------------------------------------------------------- session RPCs


def test_ping(stub: pb_grpc.BridgeServiceStub) -> None:
    reply = stub.Ping(pb.PingRequest(message="connection_test"))
    assert reply.message == "pong: connection_test"
    assert abs(reply.server_time.seconds - time.time()) < 5 and reply.server_time.nanos == 0


def test_initialize_session_is_idempotent(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    reply = stub.InitializeSession(pb.InitializeSessionRequest(session_id="s1", metadata={"a": "1"}))
    assert reply.success and not reply.error_message and len(reply.available_tools) == 0
    init(stub, "s1", a="2", b="3")
    assert stub.GetSession(pb.GetSessionRequest(session_id="s1")).metadata == {"a": "1"}
    assert host.store.stats()["sessions_created"] == 1


def test_initialize_session_errors(profile: Profile) -> None:
    host = HostEmulator(profile, store=SessionStore(max_sessions=1))
    with host, grpc.insecure_channel(host.address) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        init(stub, "first")
        error = rpc_error(stub.InitializeSession, pb.InitializeSessionRequest(session_id="second"))
        assert error.code() == grpc.StatusCode.INTERNAL
        assert error.details() == "session_quota_exceeded"
        error = rpc_error(stub.InitializeSession, pb.InitializeSessionRequest(session_id=""))
        assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "invalid_id")


def test_default_quota_follows_the_profile() -> None:
    assert HostEmulator(SNAKEPIT_0_6).store.max_sessions is None  # quotas arrived in v0.6.7
    assert HostEmulator(SNAKEPIT_0_13).store.max_sessions == 10_000


def test_cleanup_session(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    init(stub)
    stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="s1", worker_id="w", tools=[pb.ToolRegistration(name="t")])
    )
    for _ in range(2):  # idempotent
        reply = stub.CleanupSession(pb.CleanupSessionRequest(session_id="s1", force=True))
        assert reply.success and reply.resources_cleaned == 1
    assert not host.store.session_exists("s1")
    assert host.tools.get_tool("s1", "t") is not None  # tools outlive the session (snakepit: cleanup-session)


def test_get_session(stub: pb_grpc.BridgeServiceStub, host: HostEmulator, clock: FakeClock) -> None:
    error = rpc_error(stub.GetSession, pb.GetSessionRequest(session_id="nope"))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Session not found: nope")
    init(stub, "s1", k="v")
    stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="s1", worker_id="w", tools=[pb.ToolRegistration(name="t")])
    )
    reply = stub.GetSession(pb.GetSessionRequest(session_id="s1"))
    assert reply.session_id == "s1" and reply.metadata == {"k": "v"}
    assert reply.created_at.seconds == int(clock.now)  # monotonic seconds (snakepit: bridge-server-sessions)
    assert reply.tool_count == 0  # snakepit: bridge-server-sessions


def test_heartbeat_validity_and_touch(
    stub: pb_grpc.BridgeServiceStub, host: HostEmulator, clock: FakeClock
) -> None:
    assert not stub.Heartbeat(pb.HeartbeatRequest(session_id="s1")).session_valid
    init(stub)
    clock.advance(100)
    reply = stub.Heartbeat(pb.HeartbeatRequest(session_id="s1"))
    assert reply.session_valid and abs(reply.server_time.seconds - time.time()) < 5
    session = host.store.peek_session("s1")
    assert session is not None and session.last_accessed == clock.now


# ---------------------------------------------------------------- tool registration


def test_register_tools_needs_a_session(stub: pb_grpc.BridgeServiceStub) -> None:
    reply = stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="nope", tools=[pb.ToolRegistration(name="t")])
    )
    assert not reply.success and reply.error_message == "not_found"


def test_register_tools(stub: pb_grpc.BridgeServiceStub, host: HostEmulator, profile: Profile) -> None:
    init(stub)
    tools = [pb.ToolRegistration(name="alpha", supports_streaming=True), pb.ToolRegistration(name="beta")]
    reply = stub.RegisterTools(pb.RegisterToolsRequest(session_id="s1", worker_id="python-1", tools=tools))
    assert reply.success and dict(reply.tool_ids) == {"alpha": "s1:alpha", "beta": "s1:beta"}
    alpha = host.tools.get_tool("s1", "alpha")
    assert alpha is not None and alpha.worker_id == "python-1"
    assert alpha.metadata["supports_streaming"] == "true" and alpha.supports_streaming

    again = stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="s1", worker_id="python-2", tools=tools[:1])
    )
    if profile.validates_tool_names:  # not idempotent (snakepit: tool-registration)
        assert not again.success and again.error_message == '{:duplicate_tool, "alpha"}'
    else:
        assert again.success and again.tool_ids == {"alpha": "s1:alpha"}


def test_register_tools_validation(stub: pb_grpc.BridgeServiceStub, profile: Profile) -> None:
    init(stub)
    bad = stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="s1", tools=[pb.ToolRegistration(name="bad name")])
    )
    # BridgeServer adds "supports_streaming" before validation, so 32 user entries make 33.
    crowded = pb.ToolRegistration(name="crowded", metadata={f"k{i}": "v" for i in range(32)})
    full = stub.RegisterTools(pb.RegisterToolsRequest(session_id="s1", tools=[crowded]))
    trimmed = stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="s1", tools=[pb.ToolRegistration(name=" sp ")])
    )
    if profile.validates_tool_names:
        assert (bad.success, bad.error_message) == (False, "{:invalid_tool_name, :invalid_format}")
        assert (full.success, full.error_message) == (False, "{:invalid_metadata, :too_many_entries}")
        assert trimmed.tool_ids == {"sp": "s1:sp"}
    else:
        assert bad.success and full.success
        assert trimmed.tool_ids == {" sp ": "s1: sp "}


def test_get_exposed_elixir_tools(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    host.expose_tool("hidden_tool", _handler, exposed=False)
    host.expose_tool("per_session", _handler, "only s2", session_id="s2", metadata={"tags": ["x"], "n": 2})
    tools = {
        t.name: t for t in stub.GetExposedElixirTools(pb.GetExposedElixirToolsRequest(session_id="s1")).tools
    }
    assert set(tools) == {"elixir_echo", "elixir_add", "elixir_fail", "elixir_exit", "elixir_ok_tuple"}
    add = tools["elixir_add"]
    assert add.description == "Returns a + b." and not add.supports_streaming
    assert add.metadata["exposed_to_python"] == "true" and "parameters" not in add.metadata
    assert [(p.name, p.type, p.required) for p in add.parameters] == [
        ("a", "float", True),
        ("b", "float", True),
    ]
    assert add.parameters[0].validation_json == "{}" and not add.parameters[0].HasField("default_value")
    fail_default = tools["elixir_fail"].parameters[0].default_value
    assert json.loads(fail_default.value) == "elixir_fail always fails"
    s2 = {
        t.name: t for t in stub.GetExposedElixirTools(pb.GetExposedElixirToolsRequest(session_id="s2")).tools
    }
    assert s2["per_session"].metadata["tags"] == '["x"]' and s2["per_session"].metadata["n"] == "2"


# ---------------------------------------------------------------- ExecuteElixirTool / ExecuteTool


def test_execute_elixir_tool_success(stub: pb_grpc.BridgeServiceStub) -> None:
    init(stub)
    reply = stub.ExecuteElixirTool(
        pb.ExecuteElixirToolRequest(
            session_id="s1", tool_name="elixir_add", parameters={"a": json_any(2), "b": json_any(3)}
        )
    )
    assert reply.success and not reply.error_message
    assert reply.result.type_url == STRING_VALUE_TYPE_URL and reply.result.value == b"5"
    assert reply.metadata["execution_time"] == str(reply.execution_time_ms)
    echo = stub.ExecuteElixirTool(
        pb.ExecuteElixirToolRequest(
            session_id="s1", tool_name="elixir_echo", parameters={"x": json_any({"k": [1]})}
        )
    )
    assert echo.result.value == b'{"x":{"k":[1]}}'  # compact JSON, like Jason.encode
    tagged = stub.ExecuteElixirTool(
        pb.ExecuteElixirToolRequest(
            session_id="s1", tool_name="elixir_ok_tuple", parameters={"a": json_any(1), "b": json_any(2)}
        )
    )
    assert tagged.success and tagged.result.value == b"{:ok, 3}"  # inspect/1 of a term Jason cannot encode


def test_execute_elixir_tool_packed_string_parameter(
    stub: pb_grpc.BridgeServiceStub, profile: Profile
) -> None:
    init(stub)
    reply = stub.ExecuteElixirTool(
        pb.ExecuteElixirToolRequest(
            session_id="s1", tool_name="elixir_echo", parameters={"x": packed_string("x")}
        )
    )
    if profile.strict_elixir_parameters:
        assert not reply.success
        assert reply.error_message == 'Invalid parameter x: "unexpected byte at position 1: 0x1"'
    else:  # v0.6.0 passed the raw protobuf bytes to the tool
        assert reply.success and json.loads(reply.result.value) == {"x": "\n\x01x"}


def test_execute_elixir_tool_other_type_url(stub: pb_grpc.BridgeServiceStub, profile: Profile) -> None:
    init(stub)
    value = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.Value", value=b"not json")
    reply = stub.ExecuteElixirTool(
        pb.ExecuteElixirToolRequest(session_id="s1", tool_name="elixir_echo", parameters={"v": value})
    )
    if profile.strict_elixir_parameters:
        assert reply.error_message == (
            "Invalid parameter v (type.googleapis.com/google.protobuf.Value): "
            'unexpected byte at position 0: 0x6E ("n")'
        )
    else:
        assert reply.success and json.loads(reply.result.value) == {"v": "not json"}


def test_execute_elixir_tool_failures(stub: pb_grpc.BridgeServiceStub, profile: Profile) -> None:
    def call(session_id: str, tool: str, **params: Any) -> pb.ExecuteElixirToolResponse:
        request = pb.ExecuteElixirToolRequest(
            session_id=session_id, tool_name=tool, parameters={k: json_any(v) for k, v in params.items()}
        )
        reply = stub.ExecuteElixirTool(request)
        assert not reply.success and not reply.HasField("result")
        return reply

    assert call("nope", "elixir_echo").error_message == "not_found"
    init(stub)
    assert call("s1", "missing").error_message == "Tool missing not found for session s1"
    failed = call("s1", "elixir_fail", message="boom").error_message
    if profile.strict_elixir_parameters:
        assert failed == "Tool execution failed: boom"
    else:
        assert failed == 'Tool execution failed: %RuntimeError{message: "boom"}'
    stub.RegisterTools(
        pb.RegisterToolsRequest(session_id="s1", worker_id="w", tools=[pb.ToolRegistration(name="py")])
    )
    assert call("s1", "py").error_message == "Tool py is not an Elixir tool"
    # An Elixir tool that exits: the BridgeServer's RPC process dies and elixir-grpc answers UNKNOWN.
    exited = rpc_error(stub.ExecuteElixirTool, pb.ExecuteElixirToolRequest(session_id="s1", tool_name="elixir_exit"))
    assert (exited.code(), exited.details()) == (grpc.StatusCode.UNKNOWN, "Internal Server Error")


def test_binary_results(stub: pb_grpc.BridgeServiceStub, host: HostEmulator, profile: Profile) -> None:
    host.expose_tool("blob", lambda params, binary: b"\x00\x01" + binary.get("extra", b""))
    init(stub)
    reply = stub.ExecuteElixirTool(pb.ExecuteElixirToolRequest(session_id="s1", tool_name="blob"))
    assert reply.success
    if profile.binary_result:
        assert (reply.binary_result, reply.result.value) == (b"\x00\x01", b"{}")
    else:  # no binary_result before v0.6.11: Jason encodes the binary as a JSON string
        assert reply.binary_result == b"" and json.loads(reply.result.value) == "\x00\x01"
    tool_reply = stub.ExecuteTool(
        pb.ExecuteToolRequest(session_id="s1", tool_name="blob", binary_parameters={"extra": b"\x02"})
    )
    assert tool_reply.success and tool_reply.metadata["tool_type"] == "local"
    if profile.binary_result:  # HEAD merges binary_parameters into the local tool's input
        assert tool_reply.binary_result == b"\x00\x01\x02"


def test_execute_tool(stub: pb_grpc.BridgeServiceStub, profile: Profile) -> None:
    missing = stub.ExecuteTool(pb.ExecuteToolRequest(session_id="nope", tool_name="elixir_add"))
    assert not missing.success and missing.error_message == "not_found"
    init(stub)
    reply = stub.ExecuteTool(
        pb.ExecuteToolRequest(
            session_id="s1", tool_name="elixir_add", parameters={"a": json_any(1.5), "b": json_any(2)}
        )
    )
    assert reply.success and json.loads(reply.result.value) == 3.5
    assert reply.metadata["tool_type"] == "local" and reply.metadata["execution_time"] == str(
        reply.execution_time_ms
    )
    unknown = stub.ExecuteTool(pb.ExecuteToolRequest(session_id="s1", tool_name="ghost"))
    assert unknown.error_message == "Tool ghost not found for session s1"
    stub.RegisterTools(
        pb.RegisterToolsRequest(
            session_id="s1", worker_id="python-42", tools=[pb.ToolRegistration(name="py")]
        )
    )
    remote = stub.ExecuteTool(pb.ExecuteToolRequest(session_id="s1", tool_name="py"))
    assert not remote.success
    if profile.strict_elixir_parameters:
        assert remote.error_message == "Remote tool execution failed: Worker not found: python-42"
    else:
        assert remote.error_message == 'Remote tool execution failed: "Worker not found: python-42"'


def test_execute_streaming_tool(stub: pb_grpc.BridgeServiceStub, profile: Profile) -> None:
    def status(session_id: str, tool: str) -> tuple[grpc.StatusCode, str]:
        error = rpc_error(
            stub.ExecuteStreamingTool, pb.ExecuteToolRequest(session_id=session_id, tool_name=tool)
        )
        return error.code(), error.details() or ""

    if not profile.streaming_forwarding:
        init(stub)
        assert status("s1", "elixir_echo") == (
            grpc.StatusCode.UNIMPLEMENTED,
            "Streaming tool execution not yet implemented",
        )
        return
    assert status("nope", "x") == (grpc.StatusCode.NOT_FOUND, "Session not found: nope")
    init(stub)
    assert status("s1", "x") == (grpc.StatusCode.NOT_FOUND, "Tool x not found for session s1")
    code, details = status("s1", "elixir_echo")
    assert code == grpc.StatusCode.UNIMPLEMENTED and details.startswith("Streaming execution is not enabled")
    tools = [pb.ToolRegistration(name="gen", supports_streaming=True), pb.ToolRegistration(name="plain")]
    stub.RegisterTools(pb.RegisterToolsRequest(session_id="s1", worker_id="w9", tools=tools))
    assert status("s1", "plain")[0] == grpc.StatusCode.UNIMPLEMENTED
    assert status("s1", "gen") == (grpc.StatusCode.INTERNAL, "Worker not found: w9")


def test_stream_telemetry_is_unimplemented(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    error = rpc_error(
        stub.StreamTelemetry, iter([pb.TelemetryControl(toggle=pb.TelemetryToggle(enabled=True))])
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    call = host.wait_for_call("StreamTelemetry", completed=True)
    assert call.request is None and call.status == grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------- call log and faults


def test_call_log(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    before = time.monotonic()
    stub.Ping(pb.PingRequest(message="one"), metadata=(("x-snakepit-correlation-id", "corr-1"),))
    call = host.wait_for_call("Ping", completed=True)
    assert call.request_as(pb.PingRequest).message == "one"
    assert call.metadata["x-snakepit-correlation-id"] == "corr-1"
    assert call.at >= before and call.status == grpc.StatusCode.OK
    with pytest.raises(TypeError):
        call.request_as(pb.HeartbeatRequest)

    timer = threading.Timer(0.1, lambda: stub.Heartbeat(pb.HeartbeatRequest(session_id="late")))
    timer.start()
    try:
        late = host.wait_for_call("Heartbeat", timeout=5)
        assert late.request_as(pb.HeartbeatRequest).session_id == "late"
    finally:
        timer.join()
    stub.Ping(pb.PingRequest(message="two"))
    assert host.wait_for_call("Ping", count=2).request_as(pb.PingRequest).message == "two"
    assert [c.method for c in host.calls()] == ["Ping", "Heartbeat", "Ping"]
    assert len(host.calls("Ping")) == 2
    host.clear_calls()
    assert host.calls() == []
    with pytest.raises(TimeoutError):
        host.wait_for_call("Ping", timeout=0.05)
    with pytest.raises(ValueError):
        host.wait_for_call("Pnig", timeout=0.05)


def test_answered_peers_count_connections(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    """Ensure answered calls are told apart by connection, and a failed one does not count."""
    for _ in range(2):
        stub.Heartbeat(pb.HeartbeatRequest(session_id="one-channel"))
    assert len(host.answered_peers("Heartbeat")) == 1
    host.faults.fail["Heartbeat"] = (grpc.StatusCode.UNAVAILABLE, "elixir is down")
    # Its own connection, as another worker process would have (channels in one process share subchannels).
    with grpc.insecure_channel(host.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        other = pb_grpc.BridgeServiceStub(channel)
        rpc_error(other.Heartbeat, pb.HeartbeatRequest(session_id="refused"))
        host.wait_for_call("Heartbeat", count=3, completed=True)
        assert len(host.answered_peers("Heartbeat")) == 1
        host.faults.clear()
        other.Heartbeat(pb.HeartbeatRequest(session_id="answered"))
    peers = host.answered_peers("Heartbeat")
    assert len(peers) == 2 and all(re.fullmatch(r"ipv[46]:.*:\d+", peer) for peer in peers)
    with pytest.raises(ValueError):
        host.answered_peers("Heartbeet")


def test_fault_delay_and_fail(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    host.faults.delay_s["Ping"] = 0.3
    started = time.monotonic()
    stub.Ping(pb.PingRequest(message="slow"))
    assert time.monotonic() - started >= 0.3
    del host.faults.delay_s["Ping"]

    host.faults.fail["Heartbeat"] = (grpc.StatusCode.UNAVAILABLE, "elixir is down")
    error = rpc_error(stub.Heartbeat, pb.HeartbeatRequest(session_id="s"))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "elixir is down")
    call = host.wait_for_call("Heartbeat", completed=True)
    assert (call.status, call.details) == (grpc.StatusCode.UNAVAILABLE, "elixir is down")
    host.faults.clear()
    assert not stub.Heartbeat(pb.HeartbeatRequest(session_id="s")).session_valid


def test_fault_hang_until_client_deadline(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    host.faults.hang.add("Heartbeat")
    error = rpc_error(stub.Heartbeat, pb.HeartbeatRequest(session_id="s"), timeout=0.3)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert host.wait_for_call("Heartbeat").wait_done(5) == grpc.StatusCode.CANCELLED


def test_fault_hang_release(stub: pb_grpc.BridgeServiceStub, host: HostEmulator) -> None:
    host.faults.hang.add("Ping")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(stub.Ping, pb.PingRequest(message="held"), timeout=10)
        host.wait_for_call("Ping")
        assert not future.done()
        host.faults.hang.discard("Ping")
        host.release_hung()
        assert future.result(timeout=5).message == "pong: held"


def test_fault_hang_released_by_stop() -> None:
    host = HostEmulator(SNAKEPIT_0_13)
    host.start()
    host.faults.hang.add("Ping")
    with grpc.insecure_channel(host.address) as channel, concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(pb_grpc.BridgeServiceStub(channel).Ping, pb.PingRequest(message="x"), timeout=10)
        call = host.wait_for_call("Ping")
        started = time.monotonic()
        host.stop()
        assert time.monotonic() - started < 3
        with pytest.raises(grpc.RpcError) as info:
            future.result(timeout=5)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert call.wait_done(5) == grpc.StatusCode.UNAVAILABLE
