"""A bare grpcio worker: the physical limit of a Python worker on this machine (docs/bench.md).

`python -m contract_tests.bench.baselines --variant sync|async` is launched like any worker: it binds
`--port`, signals readiness both ways (ready file and GRPC_READY line), answers Ping, Heartbeat and
InitializeSession, and answers ExecuteTool with a constant JSON result. Two shortcuts keep the
payload and streaming figures comparable without doing any work: `contract.echo` returns the raw
parameter bytes spliced into one JSON object (no decoding), and ExecuteStreamingTool yields `count`
chunks `{"index": i}` then an empty final chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import any_pb2

from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

CONSTANT = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.StringValue", value=b'{"ok": true}')
_FINAL = pb.ToolChunk(chunk_id="final", data=b"", is_final=True)
_OPTIONS = [("grpc.max_send_message_length", 256 * 1024 * 1024), ("grpc.max_receive_message_length", 256 * 1024 * 1024)]


def reply(request: pb.ExecuteToolRequest) -> pb.ExecuteToolResponse:
    """The constant result; contract.echo splices the raw JSON parameters back, undecoded."""
    if request.tool_name != "contract.echo":
        return pb.ExecuteToolResponse(success=True, result=CONSTANT)
    body = b",".join(json.dumps(k).encode() + b":" + v.value for k, v in request.parameters.items())
    result = any_pb2.Any(type_url=CONSTANT.type_url, value=b"{" + body + b"}")
    return pb.ExecuteToolResponse(success=True, result=result)


def chunks(request: pb.ExecuteToolRequest) -> Iterator[pb.ToolChunk]:
    """`count` chunks {"index": i}, then the empty final chunk."""
    count_param = request.parameters.get("count")
    count = int(count_param.value) if count_param is not None else 0
    for i in range(count):
        yield pb.ToolChunk(chunk_id=str(i), data=b'{"index": %d}' % i)
    yield _FINAL


class SyncServicer(pb_grpc.BridgeServiceServicer):
    """Thread-pool variant."""

    def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        return pb.PingResponse(message=request.message)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(session_valid=True)

    def InitializeSession(self, request: Any, context: Any) -> pb.InitializeSessionResponse:
        return pb.InitializeSessionResponse(success=True)

    def ExecuteTool(self, request: pb.ExecuteToolRequest, context: Any) -> pb.ExecuteToolResponse:
        return reply(request)

    def ExecuteStreamingTool(self, request: pb.ExecuteToolRequest, context: Any) -> Iterator[pb.ToolChunk]:
        return chunks(request)


class AsyncServicer(pb_grpc.BridgeServiceServicer):
    """asyncio variant."""

    async def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        return pb.PingResponse(message=request.message)

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(session_valid=True)

    async def InitializeSession(self, request: Any, context: Any) -> pb.InitializeSessionResponse:
        return pb.InitializeSessionResponse(success=True)

    async def ExecuteTool(self, request: pb.ExecuteToolRequest, context: Any) -> pb.ExecuteToolResponse:
        return reply(request)

    async def ExecuteStreamingTool(
        self, request: pb.ExecuteToolRequest, context: Any
    ) -> AsyncIterator[pb.ToolChunk]:
        for chunk in chunks(request):
            yield chunk


def _instance(servicer_class: Any) -> Any:
    """The RPCs left out keep the generated base class's UNIMPLEMENTED answer (its stubs mark them abstract)."""
    return servicer_class()


def signal_ready(port: int) -> None:
    """Ready file (written then renamed) and the GRPC_READY line, like a worker for both eras."""
    ready_file = os.environ.get("SNAKEPIT_READY_FILE")
    if ready_file:
        with open(ready_file + ".tmp", "w") as handle:
            handle.write(str(port))
        os.replace(ready_file + ".tmp", ready_file)
    os.write(1, f"GRPC_READY:{port}\n".encode())


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("sync", "async"), default="sync")
    parser.add_argument("--port", type=int, default=0)
    return parser.parse_known_args(argv)[0]  # Snakepit's other flags are ignored.


def _serve_sync(port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=_OPTIONS)
    pb_grpc.add_BridgeServiceServicer_to_server(_instance(SyncServicer), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal_ready(bound)
    server.wait_for_termination()


async def _serve_async(port: int) -> None:
    server = grpc.aio.server(options=_OPTIONS)
    pb_grpc.add_BridgeServiceServicer_to_server(_instance(AsyncServicer), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    signal_ready(bound)
    await server.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    if os.environ.get("SNAKEPIT_PROCESS_GROUP", "").lower() in {"1", "true", "yes", "on"}:
        with contextlib.suppress(PermissionError):  # EPERM: Snakepit 0.13 already started it as a group leader
            os.setsid()
    if args.variant == "sync":
        _serve_sync(args.port)
    else:
        asyncio.run(_serve_async(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
