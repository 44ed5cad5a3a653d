"""Self-tests of the committed gRPC stubs."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_stubs", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation() -> None:
    """Ensure the stubs are exactly what protos/generate.py makes from the .proto today."""
    assert _generator().main(["--check"]) == 0


@pytest.mark.parametrize("copy", [0, 1], ids=["kit", "reference-worker"])
def test_check_fails_on_one_stale_byte_in_either_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], copy: int) -> None:
    """Ensure --check compares both copies byte for byte: one byte more in one stub file fails it, naming the file."""
    generator = _generator()
    copies = [Path(shutil.copytree(stub_dir, tmp_path / str(n) / "proto", ignore=shutil.ignore_patterns("__pycache__")))
              for n, stub_dir in enumerate(generator.STUB_DIRS)]
    stale = copies[copy] / "snakepit_bridge_pb2_grpc.py"
    stale.write_bytes(stale.read_bytes() + b"\n")
    monkeypatch.setattr(generator, "STUB_DIRS", tuple(copies))
    assert generator.main(["--check"]) == 1
    assert f"{copy}/proto/snakepit_bridge_pb2_grpc.py" in capsys.readouterr().err


def test_service_has_snakepits_eleven_rpcs() -> None:
    """Ensure the service keeps Snakepit's package, name and RPC set."""
    service = pb.DESCRIPTOR.services_by_name["BridgeService"]
    assert service.full_name == "snakepit.bridge.BridgeService"
    assert sorted(m.name for m in service.methods) == sorted([
        "Ping", "InitializeSession", "CleanupSession", "GetSession", "Heartbeat", "ExecuteTool",
        "ExecuteStreamingTool", "RegisterTools", "GetExposedElixirTools", "ExecuteElixirTool", "StreamTelemetry",
    ])


def test_field_numbers_match_snakepit_wire() -> None:
    """Ensure the field numbers Snakepit 0.13 puts on the wire are the ones we use."""
    expected = {
        "ExecuteToolRequest": {"session_id": 1, "tool_name": 2, "parameters": 3, "metadata": 4, "stream": 5,
                               "binary_parameters": 6},
        "ExecuteToolResponse": {"success": 1, "result": 2, "error_message": 3, "metadata": 4,
                                "execution_time_ms": 5, "binary_result": 6},
        "ToolChunk": {"chunk_id": 1, "data": 2, "is_final": 3, "metadata": 4},
        "HeartbeatResponse": {"server_time": 1, "session_valid": 2},
        "GetSessionResponse": {"session_id": 1, "metadata": 2, "created_at": 3, "tool_count": 4},
        "TelemetryEvent": {"event_parts": 1, "measurements": 2, "metadata": 3, "timestamp_ns": 4,
                           "correlation_id": 5},
    }
    for message, fields in expected.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == fields, message
