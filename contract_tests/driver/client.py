"""A gRPC client toward the worker that speaks like Snakepit's Elixir client.

It builds requests the way the chosen profile does (session id on the wire,
correlation metadata and header, JSON parameters) and keeps a short trace of
what was sent and received, which failing clauses attach as evidence.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from contract_tests.contract.profiles import Profile
from contract_tests.protocol.codec import ToolReply, decode_reply, encode_parameters
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

# Elixir sets no size limit; 256 MiB leaves room for the 50 MiB clauses and more.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Snakepit dials each worker on its own connection; never share a subchannel.
    ("grpc.use_local_subchannel_pool", 1),
]
CORRELATION_HEADER = "x-snakepit-correlation-id"
_TRACE_LINES = 40
Headers = tuple[tuple[str, str], ...]
_correlation_ids = itertools.count(1)


def worker_session_id() -> str:
    """A session id shaped like Snakepit's: session_<unique int>_<µs> (snakepit: worker-session-id)."""
    return f"session_{next(_correlation_ids)}_{time.time_ns() // 1000}"


def _short(message: object, limit: int = 160) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class StreamResult:
    """Everything an ExecuteStreamingTool call produced, in order."""

    chunks: list[pb.ToolChunk] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""

    @property
    def final_chunks(self) -> list[pb.ToolChunk]:
        return [c for c in self.chunks if c.is_final]

    @property
    def payload_chunks(self) -> list[pb.ToolChunk]:
        return [c for c in self.chunks if not c.is_final]


class TelemetryStream:
    """The StreamTelemetry bidi stream Snakepit 0.13 opens on each worker."""

    def __init__(self, stub: pb_grpc.BridgeServiceStub, timeout_s: float | None) -> None:
        self._controls: queue.Queue[pb.TelemetryControl | None] = queue.Queue()
        self._controls.put(pb.TelemetryControl(toggle=pb.TelemetryToggle(enabled=True)))
        self.events: list[pb.TelemetryEvent] = []
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.initial_metadata_at: float | None = None
        self.opened_at = time.monotonic()
        self._call = stub.StreamTelemetry(iter(self._controls.get, None), timeout=timeout_s)
        self._reader = threading.Thread(target=self._read, name="telemetry-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            self._call.initial_metadata()
            self.initial_metadata_at = time.monotonic()
            for event in self._call:
                self.events.append(event)
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            self.code, self.details = err.code(), err.details() or ""

    def send(self, control: pb.TelemetryControl) -> None:
        self._controls.put(control)

    def wait_initial_metadata(self, timeout_s: float) -> bool:
        """True once headers arrived; False on timeout or when the stream ended first."""
        deadline = time.monotonic() + timeout_s
        while self.initial_metadata_at is None and self.code is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.initial_metadata_at is not None

    def wait_end(self, timeout_s: float) -> grpc.StatusCode | None:
        """The stream's final status once it ended, or None if it is still open after `timeout_s`."""
        self._reader.join(timeout=timeout_s)
        return self.code

    def close(self) -> None:
        self._controls.put(None)
        self._call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves Call.cancel untyped
        self._reader.join(timeout=2)


class WorkerClient:
    """Calls the worker under test as the chosen Snakepit profile would."""

    def __init__(self, target: str, profile: Profile, session_id: str | None = None) -> None:
        self.target = target
        self.profile = profile
        self.session_id = profile.fixed_session_id or session_id or worker_session_id()
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.BridgeServiceStub(self.channel)
        self.trace: collections.deque[str] = collections.deque(maxlen=_TRACE_LINES)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.channel.close()

    def note(self, line: str) -> None:
        with self._lock:
            self.trace.append(f"{time.monotonic():.3f} {line}")

    def _unary(self, method: str, request: Any, timeout: float | None, **kwargs: Any) -> Any:
        self.note(f"-> {method} {_short(request)}")
        try:
            reply = getattr(self.stub, method)(request, timeout=timeout, **kwargs)
        except grpc.RpcError as err:
            self.note(f"<- {method} status {err.code().name}: {_short(err.details())}")
            raise
        self.note(f"<- {method} OK {_short(reply)}")
        return reply

    def ping(self, message: str = "connection_test", timeout: float | None = 5.0) -> pb.PingResponse:
        reply: pb.PingResponse = self._unary("Ping", pb.PingRequest(message=message), timeout)
        return reply

    def heartbeat(self, session_id: str | None = None, timeout: float | None = 10.0) -> pb.HeartbeatResponse:
        # Snakepit leaves client_time unset (snakepit: heartbeat).
        request = pb.HeartbeatRequest(session_id=session_id or self.session_id)
        reply: pb.HeartbeatResponse = self._unary("Heartbeat", request, timeout)
        return reply

    def initialize_session(self, timeout: float | None = 30.0) -> pb.InitializeSessionResponse:
        """InitializeSession as Snakepit 0.13 sends it after the handshake (snakepit: worker-session-init)."""
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        request = pb.InitializeSessionRequest(
            session_id=self.session_id,
            metadata={"elixir_node": "snakepit_contract@127.0.0.1", "initialized_at": now.ToJsonString()},
            config=pb.SessionConfig(enable_caching=True, cache_ttl_seconds=60, enable_telemetry=False),
        )
        reply: pb.InitializeSessionResponse = self._unary("InitializeSession", request, timeout)
        return reply

    def open_telemetry(self, timeout_s: float | None = None) -> TelemetryStream:
        self.note("-> StreamTelemetry toggle(enabled=true)")
        return TelemetryStream(self.stub, timeout_s)

    def tool_request(
        self,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        binary: Mapping[str, bytes] | None = None,
        correlation_id: str | None = None,
        stream: bool = False,
    ) -> tuple[pb.ExecuteToolRequest, Headers]:
        """The request and headers the profile's client would send (snakepit: correlation-id)."""
        metadata: dict[str, str] = {}
        headers: Headers = ()
        if self.profile.correlation_header:
            cid = correlation_id or f"contract-{next(_correlation_ids)}"
            metadata["correlation_id"] = cid
            headers = ((CORRELATION_HEADER, cid),)
        request = pb.ExecuteToolRequest(
            session_id=self.session_id,
            tool_name=tool,
            parameters=encode_parameters(params or {}),
            metadata=metadata,
            stream=stream,
            binary_parameters=dict(binary or {}),
        )
        return request, headers

    def execute_request(
        self, request: pb.ExecuteToolRequest, headers: Headers = (), timeout: float = 60.0
    ) -> ToolReply:
        response = self._unary("ExecuteTool", request, timeout, metadata=headers or None)
        return decode_reply(response, self.profile.json_errors)

    def execute(
        self,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        binary: Mapping[str, bytes] | None = None,
        correlation_id: str | None = None,
        timeout: float = 60.0,
    ) -> ToolReply:
        request, headers = self.tool_request(tool, params, binary=binary, correlation_id=correlation_id)
        return self.execute_request(request, headers, timeout)

    def execute_future(
        self, tool: str, params: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> grpc.Future[pb.ExecuteToolResponse]:
        """Start an ExecuteTool call without waiting (for overlap and cancellation clauses)."""
        request, headers = self.tool_request(tool, params)
        self.note(f"-> ExecuteTool (async) {_short(request)}")
        future: grpc.Future[pb.ExecuteToolResponse] = self.stub.ExecuteTool.future(
            request, timeout=timeout, metadata=headers or None
        )
        return future

    def stream_call(
        self, tool: str, params: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> grpc.CallIterator[pb.ToolChunk]:
        """The raw streaming call; iterate it, cancel() it."""
        request, headers = self.tool_request(tool, params, stream=True)
        self.note(f"-> ExecuteStreamingTool {_short(request)}")
        call: grpc.CallIterator[pb.ToolChunk] = self.stub.ExecuteStreamingTool(
            request, timeout=timeout, metadata=headers or None
        )
        return call

    def stream(self, tool: str, params: Mapping[str, Any] | None = None, timeout: float = 60.0) -> StreamResult:
        result = StreamResult()
        try:
            for chunk in self.stream_call(tool, params, timeout):
                result.chunks.append(chunk)
                self.note(f"<- ToolChunk {_short(chunk)}")
        except grpc.RpcError as err:
            result.code, result.details = err.code(), err.details() or ""
        self.note(f"<- ExecuteStreamingTool end {result.code.name} {_short(result.details)}")
        return result
