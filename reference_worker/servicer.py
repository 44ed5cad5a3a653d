"""BridgeService as a worker serves it (docs/contract.md §2): local liveness answers, the tool catalogue."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from .codec import STRING_VALUE_URL, decode_params, encode_json
from .errors import ToolError, format_error
from .proto import snakepit_bridge_pb2 as pb
from .proto import snakepit_bridge_pb2_grpc as pb_grpc
from .tools import STREAMING, UNARY, BinaryResult, Call, Context, WorkerState

_LOG = logging.getLogger(__name__)
# The largest message the server sends or receives; a reply's result and binary_result must fit in it.
MAX_MESSAGE = 256 << 20
MAX_REPLY_BYTES = MAX_MESSAGE - (1 << 20)  # room for the reply's other fields and framing
_ELIXIR_ONLY = "served by the Elixir side, not by workers"


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _as_tool_error(exc: Exception) -> ToolError:
    """A tool that raises something unexpected is still an application error, typed by its class."""
    if isinstance(exc, ToolError):
        return exc
    _LOG.debug("tool raised", exc_info=exc)
    return ToolError(type(exc).__name__, str(exc))


class BridgeServicer(pb_grpc.BridgeServiceServicer):
    """Answers liveness RPCs locally and at once, so they never wait behind a tool or on Elixir."""

    def __init__(self, state: WorkerState) -> None:
        self._state = state

    def _error_message(self, error: ToolError, request: pb.ExecuteToolRequest) -> str:
        return format_error(
            error.error_type,
            error.message,
            tool_name=request.tool_name,
            session_id=request.session_id,
        )

    async def Ping(self, request: pb.PingRequest, context: Context) -> pb.PingResponse:
        return pb.PingResponse(message=f"pong: {request.message}", server_time=_now())

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        # Answered locally: proxying to Elixir would make worker liveness depend on Elixir's (snakepit: heartbeat).
        return pb.HeartbeatResponse(server_time=_now(), session_valid=True)

    async def InitializeSession(
        self, request: pb.InitializeSessionRequest, context: Context
    ) -> pb.InitializeSessionResponse:
        # Sessions need no set-up here: ExecuteTool never requires one (docs/contract.md §3).
        return pb.InitializeSessionResponse(success=True)

    async def CleanupSession(
        self,
        request: pb.CleanupSessionRequest,
        context: Context,
    ) -> pb.CleanupSessionResponse:
        released = self._state.release_session(request.session_id)
        return pb.CleanupSessionResponse(success=True, resources_cleaned=released)

    async def ExecuteTool(self, request: pb.ExecuteToolRequest, context: Context) -> pb.ExecuteToolResponse:
        state = self._state
        state.call_count += 1
        state.calls_running += 1
        try:
            return await self._execute(request, context)
        finally:
            state.calls_running -= 1

    async def _execute(self, request: pb.ExecuteToolRequest, context: Context) -> pb.ExecuteToolResponse:
        started = time.perf_counter_ns()
        state = self._state
        try:
            handler = UNARY.get(request.tool_name)
            if handler is None:
                raise ToolError("ToolNotFound", f"unknown tool {request.tool_name!r}")
            value = await handler(Call(state, request, decode_params(request.parameters), context))
            data = b""
            if type(value) is BinaryResult:
                value, data = value
            result = encode_json(value)
            if len(result) + len(data) > MAX_REPLY_BYTES:
                # Sent anyway, gRPC would fail the call with RESOURCE_EXHAUSTED and log a traceback.
                raise ToolError("ResultTooLarge", f"the result is {len(result) + len(data)} bytes; this worker "
                                f"sends at most {MAX_REPLY_BYTES} bytes in one reply")
        except Exception as exc:
            return pb.ExecuteToolResponse(
                success=False,
                error_message=self._error_message(_as_tool_error(exc), request),
                execution_time_ms=(time.perf_counter_ns() - started) // 1_000_000,
            )
        # Filled in place: a result message passed to the constructor would be copied, payload and all.
        reply = pb.ExecuteToolResponse(success=True, binary_result=data)
        reply.result.type_url = STRING_VALUE_URL
        reply.result.value = result
        reply.execution_time_ms = (time.perf_counter_ns() - started) // 1_000_000
        return reply

    async def ExecuteStreamingTool(
        self, request: pb.ExecuteToolRequest, context: Context
    ) -> AsyncIterator[pb.ToolChunk]:
        """Payload chunks `<tool>-<n>`, then one empty final chunk; failures abort INTERNAL, error inside."""
        state = self._state
        state.call_count += 1
        state.calls_running += 1
        name = request.tool_name
        sent = 0
        try:
            call = Call(state, request, decode_params(request.parameters), context)
            producer = STREAMING.get(name)
            if producer is not None:
                # Cancellation of the RPC cancels this task at its next await, which stops the producer.
                async for item in producer(call):
                    sent += 1
                    state.stream_chunks_produced += 1
                    yield pb.ToolChunk(chunk_id=f"{name}-{sent}", data=item)
            else:
                handler = UNARY.get(name)
                if handler is None:
                    raise ToolError("ToolNotFound", f"unknown tool {name!r}")
                value = await handler(call)
                if type(value) is BinaryResult:
                    value = value.value
                sent += 1
                state.stream_chunks_produced += 1
                yield pb.ToolChunk(chunk_id=f"{name}-{sent}", data=encode_json(value))
        except Exception as exc:
            await context.abort(grpc.StatusCode.INTERNAL, self._error_message(_as_tool_error(exc), request))
        finally:
            state.calls_running -= 1
        yield pb.ToolChunk(chunk_id=f"{name}-{sent + 1}", is_final=True)

    async def StreamTelemetry(self, controls: Any, context: Context) -> AsyncIterator[pb.TelemetryEvent]:
        """Minimal but correct: headers at once (the opener never waits), no events, ends with the client.

        Snakepit drops uncatalogued events anyway; emitting none is allowed (docs/contract.md §2, MAY).
        """
        await context.send_initial_metadata(())
        async for _control in controls:
            pass
        return
        yield  # Unreachable: makes this an async generator, which grpc.aio serves as a response stream.

    async def GetSession(self, request: pb.GetSessionRequest, context: Context) -> pb.GetSessionResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetSession: nobody in Snakepit calls it on a worker")

    async def RegisterTools(
        self,
        request: pb.RegisterToolsRequest,
        context: Context,
    ) -> pb.RegisterToolsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"RegisterTools is {_ELIXIR_ONLY}")

    async def GetExposedElixirTools(
        self, request: pb.GetExposedElixirToolsRequest, context: Context
    ) -> pb.GetExposedElixirToolsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"GetExposedElixirTools is {_ELIXIR_ONLY}")

    async def ExecuteElixirTool(
        self, request: pb.ExecuteElixirToolRequest, context: Context
    ) -> pb.ExecuteElixirToolResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"ExecuteElixirTool is {_ELIXIR_ONLY}")
