"""CALLBACK: the worker as a client of Snakepit's BridgeServer (snakepit: bridge-server-parameters, ...)."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from contract_tests.contract.clause import clause, requires_tools
from contract_tests.contract.profiles import Profile
from contract_tests.driver.client import CORRELATION_HEADER, WorkerClient
from contract_tests.elixir.host import HostEmulator
from contract_tests.errors import expect, render
from contract_tests.judging.plugin import Launch, Settings
from contract_tests.protocol.codec import ToolReply, is_json
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb

# Snakepit >= 0.6.6 ToolRegistry rule (snakepit: tool-registration).
VALID_TOOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")


def _answer(reply: ToolReply) -> str:
    """What the worker answered the tool call, the cause a missing or wrong callback usually has."""
    return f"success=false, error {reply.error.raw.strip()}" if reply.error else f"success=true, {render(reply.value)}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@clause("CALLBACK-001")
@requires_tools("contract.call_elixir")
def test_waits_for_late_elixir_side(launch: Launch, profile: Profile) -> None:
    late = HostEmulator(profile)
    port = _free_port()
    address = f"{profile.elixir_host}:{port}"
    worker = launch(start=False, elixir_address=address)
    try:
        time.sleep(1.5)
        late.start(port=port)
        worker.wait_ready()
        worker.connect()
        expect(worker.is_alive(), "worker whose Elixir side came up 1.5 s late", "alive", worker.poll())
        assert worker.client is not None
        reply = worker.client.execute("contract.call_elixir", {"tool": "elixir_add", "parameters": {"a": 1, "b": 2}})
        expect(reply.ok and reply.value == 3, "contract.call_elixir once the Elixir side is up", "3",
               reply.error.raw if reply.error else reply.value)
    finally:
        worker.stop()
        late.stop()


@clause("CALLBACK-002")
@requires_tools("contract.register_tools")
def test_registered_tool_names_valid(client: WorkerClient, host: HostEmulator) -> None:
    host.clear_calls()
    reply = client.execute("contract.register_tools", {"session_id": "register-check"})
    expect(reply.ok, "contract.register_tools", "success", reply.error.raw if reply.error else reply.value)
    calls = host.calls("RegisterTools")
    expect(calls, "RegisterTools calls seen by the Elixir side", "at least one", "none")
    for call in calls:
        for tool in call.request_as(pb.RegisterToolsRequest).tools:
            name = tool.name.strip()
            expect(0 < len(name.encode()) <= 64 and VALID_TOOL_NAME.match(name), "registered tool name",
                   "1-64 bytes of [A-Za-z0-9_.-], starting alphanumeric", repr(tool.name))
    expect(isinstance(reply.value, dict) and reply.value.get("success") is True, "Elixir's RegisterTools reply",
           "success=true", reply.value)


# The caller session contract.call_elixir is made in (its `session_id` parameter, docs/contract.md §5).
CALLER_SESSION = "callback-caller-session"


@clause("CALLBACK-003")
@requires_tools("contract.call_elixir")
def test_call_elixir_round_trip(client: WorkerClient, host: HostEmulator) -> None:
    params = {"text": "hé", "n": 7, "flag": True, "nothing": None, "nested": {"k": [1, 2]}}
    host.clear_calls()
    # In a caller's session (execute_in_session): Snakepit finds Elixir tools per session (snakepit:
    # bridge-server-parameters), so the call into Elixir carries that session, not the worker's own.
    reply = client.execute("contract.call_elixir",
                           {"tool": "elixir_echo", "parameters": params, "session_id": CALLER_SESSION})
    calls = host.calls("ExecuteElixirTool")
    expect(calls, "contract.call_elixir made no ExecuteElixirTool call to the Elixir side", "one call",
           f"none; the worker answered: {_answer(reply)}")
    request = calls[-1].request_as(pb.ExecuteElixirToolRequest)
    expect(request.session_id == CALLER_SESSION, "ExecuteElixirToolRequest.session_id", CALLER_SESSION,
           request.session_id)
    for key, value in request.parameters.items():
        expect(is_json(value.value), f"Any.value of Elixir tool parameter {key!r}", "JSON text", value.value[:60])
    expect(reply.ok and reply.value == params, "contract.call_elixir result", render(params), _answer(reply))


@clause("CALLBACK-004")
@requires_tools("contract.call_elixir")
def test_propagates_correlation_id(client: WorkerClient, host: HostEmulator) -> None:
    # Two calls, two ids: each call into Elixir carries the id of the call that made it, not one kept from before.
    for correlation_id in ("corr-cb-4a", "corr-cb-4b"):
        host.clear_calls()
        reply = client.execute("contract.call_elixir", {"tool": "elixir_echo", "parameters": {}},
                               correlation_id=correlation_id)
        calls = host.calls("ExecuteElixirTool")
        expect(calls, "contract.call_elixir made no ExecuteElixirTool call to the Elixir side", "one call",
               f"none; the worker answered: {_answer(reply)}")
        request = calls[-1].request_as(pb.ExecuteElixirToolRequest)
        # As Snakepit reads it (snakepit: correlation-id): the request metadata first, else the header.
        seen = request.metadata.get("correlation_id") or calls[-1].metadata.get(CORRELATION_HEADER)
        expect(seen == correlation_id, "correlation id on the call into Elixir", correlation_id, seen)


# How long the worker is watched after an Elixir tool failed: a crash in its clean-up shows within this.
AFTER_FAILURE_WATCH_S = 2.0
# Elixir tools whose call fails: one that raises (success=false); one that exits, whose RPC ends with status UNKNOWN
# (snakepit: elixir-tool-exit); one whose result `{:ok, 3}` Jason cannot encode, which Snakepit sends as its inspect/1
# text (snakepit: elixir-tool-result): not JSON, so not a value the worker can return.
FAILING_ELIXIR_CALLS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("elixir_fail", {"message": "nope"}, "an Elixir tool that raises"),
    ("elixir_exit", {}, "an Elixir tool that exits (status UNKNOWN)"),
    ("elixir_ok_tuple", {"a": 1, "b": 2}, "an Elixir tool whose result is inspect/1 text, {:ok, 3}"),
)


@clause("CALLBACK-005")
@requires_tools("contract.call_elixir")
def test_elixir_failure_is_application_error(client: WorkerClient, contract_settings: Settings,
                                             profile: Profile) -> None:
    for tool, parameters, what in FAILING_ELIXIR_CALLS:
        reply = client.execute("contract.call_elixir", {"tool": tool, "parameters": parameters})
        expect(not reply.ok and reply.error is not None and reply.error.raw, what, "success=false", _answer(reply))
        if profile.json_errors:  # the type the catalogue gives an Elixir tool's failure (docs/contract.md §5)
            assert reply.error is not None
            expect(reply.error.type == "ElixirToolError", f"{what}: error type", "ElixirToolError",
                   reply.response.error_message[:200])
    # Watched a while, not glanced at: a worker whose handling of a failure takes it down a second later fails.
    watch_until = time.monotonic() + AFTER_FAILURE_WATCH_S * contract_settings.timeout_scale
    while True:
        reply = client.execute("contract.call_elixir", {"tool": "elixir_add", "parameters": {"a": 1, "b": 2}})
        expect(reply.ok and reply.value == 3, "contract.call_elixir after an Elixir tool failed", "3",
               _answer(reply))
        if time.monotonic() >= watch_until:
            break
        time.sleep(0.5)
