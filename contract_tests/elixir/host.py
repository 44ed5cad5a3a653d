"""Host emulator: a gRPC server that answers workers the way Snakepit's Elixir BridgeServer does."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

from contract_tests.contract.profiles import Profile
from contract_tests.elixir.session_store import DEFAULT_MAX_SESSIONS, SessionStore, SessionStoreError
from contract_tests.elixir.tool_registry import (
    Atom,
    RegisteredTool,
    RemoteToolSpec,
    ToolHandler,
    ToolKind,
    ToolRegistrationError,
    ToolRegistry,
    inspect_term,
)
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = (
    "Ping",
    "InitializeSession",
    "CleanupSession",
    "GetSession",
    "Heartbeat",
    "ExecuteTool",
    "ExecuteStreamingTool",
    "RegisterTools",
    "GetExposedElixirTools",
    "ExecuteElixirTool",
    "StreamTelemetry",
)

# Well above the reference worker's 100 MiB (snakepit: message-size) so the host is never the limiting side.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# BridgeServer tags every JSON value it sends with this type_url (snakepit: bridge-server-parameters).
STRING_VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"

_M = TypeVar("_M", bound=Message)
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


@dataclass
class HostCall:
    """One RPC the host received; `status`/`details` are filled in when the RPC completes."""

    method: str
    request: Message | None  # None for the client-streaming StreamTelemetry
    metadata: dict[str, str]
    at: float
    peer: str = ""  # the caller's end of the connection ("ipv4:127.0.0.1:54321"): one per worker channel
    status: grpc.StatusCode | None = None
    details: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def request_as(self, cls: type[_M]) -> _M:
        """The request narrowed to its message type (so callers keep static typing)."""
        if not isinstance(self.request, cls):
            raise TypeError(f"{self.method} request is {type(self.request).__name__}, not {cls.__name__}")
        return self.request

    def wait_done(self, timeout: float) -> grpc.StatusCode:
        """Block until the RPC has completed; returns its status code."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"{self.method} did not complete within {timeout} s")
        assert self.status is not None
        return self.status


@dataclass
class Faults:
    """Fault knobs, read on every RPC; single dict/set operations are atomic, so tests may set them anytime.

    Applied in order: hang (block until `stop()`, `release_hung()` or client cancel), delay, fail.
    """

    delay_s: dict[str, float] = field(default_factory=dict)
    fail: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)

    def clear(self) -> None:
        """Remove every fault."""
        self.delay_s.clear()
        self.fail.clear()
        self.hang.clear()


class _Abort(Exception):
    """End the RPC with a non-OK status (what `raise GRPC.RPCError` does in Elixir)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ElixirExit(Exception):
    """Raised by an emulated Elixir tool to exit (or throw) rather than raise: Snakepit's ToolRegistry rescues
    exceptions only, so the BridgeServer's RPC process dies and elixir-grpc ends the RPC with UNKNOWN
    "Internal Server Error" (snakepit: elixir-tool-exit)."""


class _ToolFailure(Exception):
    """`{:error, reason}` inside a tool RPC: becomes `success=false` + this `error_message`."""


class _JsonDecodeError(Exception):
    """A Jason-style decode error (`Jason.DecodeError.message/1` text)."""


def _timestamp_now() -> timestamp_pb2.Timestamp:
    # `System.system_time(:second)`, nanos 0 (snakepit: bridge-server-sessions).
    return timestamp_pb2.Timestamp(seconds=int(time.time()), nanos=0)


def _jason_error_at(raw: bytes, pos: int) -> _JsonDecodeError:
    """Jason's message for a failure at byte `pos` (`unexpected byte …` / `unexpected end of input …`)."""
    if pos >= len(raw):
        return _JsonDecodeError(f"unexpected end of input at position {pos}")
    byte = raw[pos]
    rendered = inspect_term(bytes([byte]))
    if byte < 0x80 and not rendered.startswith("<<"):
        return _JsonDecodeError(f"unexpected byte at position {pos}: 0x{byte:X} ({rendered})")
    return _JsonDecodeError(f"unexpected byte at position {pos}: 0x{byte:X}")


def jason_decode(raw: bytes) -> Any:
    """Decode JSON like `Jason.decode/1` (no NaN/Infinity); error positions are close to Jason's."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _jason_error_at(raw, exc.start) from None

    def reject_constant(name: str) -> Any:
        raise _jason_error_at(raw, len(text[: text.find(name)].encode()))

    try:
        return json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise _jason_error_at(raw, len(text[: exc.pos].encode())) from None


def _jason_encodable(value: Any) -> bool:
    """Whether Jason can encode the term: it has no encoder for tuples, which json.dumps would write as lists."""
    if isinstance(value, tuple):
        return False
    if isinstance(value, list):
        return all(_jason_encodable(item) for item in value)
    if isinstance(value, Mapping):
        return all(_jason_encodable(item) for item in value.values())
    return True


def jason_encode(value: Any) -> bytes:
    """`Jason.encode/1` (compact JSON), falling back to `inspect/1` as BridgeServer does (snakepit:
    elixir-tool-result)."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return inspect_term(bytes(value)).encode()
    if not _jason_encodable(value):
        return inspect_term(value).encode()
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError):
        return inspect_term(value).encode()


def _metadata_string(value: Any) -> str:
    """GetExposedElixirTools' metadata conversion: `to_string/1` for scalars, `inspect/1` otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return inspect_term(value)


class _Servicer(pb_grpc.BridgeServiceServicer):
    """Routes each RPC through `HostEmulator._dispatch` (call log, faults) to its behaviour."""

    def __init__(self, host: HostEmulator) -> None:
        self._host = host

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        return self._host._dispatch("Ping", request, context, self._host._ping)

    def InitializeSession(
        self, request: pb.InitializeSessionRequest, context: grpc.ServicerContext
    ) -> pb.InitializeSessionResponse:
        return self._host._dispatch("InitializeSession", request, context, self._host._initialize_session)

    def CleanupSession(
        self, request: pb.CleanupSessionRequest, context: grpc.ServicerContext
    ) -> pb.CleanupSessionResponse:
        return self._host._dispatch("CleanupSession", request, context, self._host._cleanup_session)

    def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.ServicerContext
    ) -> pb.GetSessionResponse:
        return self._host._dispatch("GetSession", request, context, self._host._get_session)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        return self._host._dispatch("Heartbeat", request, context, self._host._heartbeat)

    def ExecuteTool(
        self, request: pb.ExecuteToolRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteToolResponse:
        return self._host._dispatch("ExecuteTool", request, context, self._host._execute_tool)

    def ExecuteStreamingTool(
        self, request: pb.ExecuteToolRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ToolChunk]:
        yield from self._host._dispatch(
            "ExecuteStreamingTool", request, context, self._host._execute_streaming_tool
        )

    def RegisterTools(
        self, request: pb.RegisterToolsRequest, context: grpc.ServicerContext
    ) -> pb.RegisterToolsResponse:
        return self._host._dispatch("RegisterTools", request, context, self._host._register_tools)

    def GetExposedElixirTools(
        self, request: pb.GetExposedElixirToolsRequest, context: grpc.ServicerContext
    ) -> pb.GetExposedElixirToolsResponse:
        return self._host._dispatch(
            "GetExposedElixirTools", request, context, self._host._get_exposed_elixir_tools
        )

    def ExecuteElixirTool(
        self, request: pb.ExecuteElixirToolRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteElixirToolResponse:
        return self._host._dispatch("ExecuteElixirTool", request, context, self._host._execute_elixir_tool)

    def StreamTelemetry(
        self, request_iterator: Iterator[pb.TelemetryControl], context: grpc.ServicerContext
    ) -> Iterator[pb.TelemetryEvent]:
        yield from self._host._dispatch("StreamTelemetry", None, context, self._host._stream_telemetry)


def _builtin_echo(params: dict[str, Any], binary: dict[str, bytes]) -> Any:
    return params


def _builtin_add(params: dict[str, Any], binary: dict[str, bytes]) -> Any:
    return params["a"] + params["b"]


def _builtin_fail(params: dict[str, Any], binary: dict[str, bytes]) -> Any:
    raise RuntimeError(str(params.get("message", "elixir_fail always fails")))


def _builtin_exit(params: dict[str, Any], binary: dict[str, bytes]) -> Any:
    # `exit(:timeout)`, what a GenServer.call that times out does inside an Elixir tool.
    raise ElixirExit(":timeout")


# The parameters of the tools that add two numbers (the registry copies them per tool).
_A_AND_B = (
    {"name": "a", "type": "float", "required": True},
    {"name": "b", "type": "float", "required": True},
)


def _builtin_ok_tuple(params: dict[str, Any], binary: dict[str, bytes]) -> Any:
    # `{:ok, a + b}`, an Elixir tool written the idiomatic way: Jason cannot encode it, so Snakepit sends `{:ok, 3}`.
    return (Atom("ok"), params["a"] + params["b"])


class HostEmulator:
    """Plays Snakepit's BridgeServer + SessionStore + ToolRegistry for workers that call back into Elixir.

    Binds only 127.0.0.1. Every RPC is logged (`calls`, `wait_for_call`) and can be delayed,
    failed or hung through `faults`. Behaviour differences between eras come from `profile`.
    """

    def __init__(
        self,
        profile: Profile,
        store: SessionStore | None = None,
        *,
        sweep_interval_s: float | None = 60.0,
        max_workers: int = 64,
    ) -> None:
        self.profile = profile
        self._owns_store = store is None
        if store is None:
            store = SessionStore(max_sessions=DEFAULT_MAX_SESSIONS if profile.session_quota else None)
        self.store = store
        # Name/metadata validation and insert_new arrived in v0.6.6 (snakepit: tool-registration).
        self.tools = ToolRegistry(validate=profile.validates_tool_names)
        self.faults = Faults()
        self._sweep_interval_s = sweep_interval_s
        self._max_workers = max_workers
        self._lock = threading.RLock()
        self._calls_changed = threading.Condition(self._lock)
        self._calls: list[HostCall] = []
        self._waiters: set[threading.Event] = set()
        self._hangers: set[threading.Event] = set()
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._port: int | None = None
        self.expose_tool("elixir_echo", _builtin_echo, "Returns its parameters unchanged.")
        self.expose_tool(
            "elixir_add",
            _builtin_add,
            "Returns a + b.",
            parameters=_A_AND_B,
        )
        self.expose_tool(
            "elixir_fail",
            _builtin_fail,
            "Always raises; the error message is params['message'].",
            parameters=[{"name": "message", "type": "string", "default": "elixir_fail always fails"}],
        )
        self.expose_tool("elixir_exit", _builtin_exit, "Exits (:timeout): the RPC ends with status UNKNOWN.")
        self.expose_tool(
            "elixir_ok_tuple",
            _builtin_ok_tuple,
            "Returns {:ok, a + b}, which Jason cannot encode: the result is its inspect/1 text.",
            parameters=_A_AND_B,
        )

    # -- lifecycle --

    def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0 = ephemeral; a reserved port may be given)."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("host emulator already started")
            self._stopping.clear()
            executor = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="host-emulator")
            server = grpc.server(
                executor,
                options=[
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    # Fail loudly on a taken port instead of silently sharing it with another server.
                    ("grpc.so_reuseport", 0),
                ],
            )
            pb_grpc.add_BridgeServiceServicer_to_server(_Servicer(self), server)
            try:
                bound = server.add_insecure_port(f"127.0.0.1:{port}")
            except RuntimeError as exc:
                executor.shutdown(wait=False)
                raise OSError(f"cannot bind 127.0.0.1:{port}: {exc}") from exc
            if bound == 0:
                executor.shutdown(wait=False)
                raise OSError(f"cannot bind 127.0.0.1:{port}")
            server.start()
            self._server, self._executor, self._port = server, executor, bound
            if self._owns_store and self._sweep_interval_s:
                self.store.start_sweeper(self._sweep_interval_s)
        logger.info("host emulator (%s) listening on 127.0.0.1:%d", self.profile.name, bound)

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving and free the port; releases hung and delayed RPCs. Idempotent."""
        with self._lock:
            server, executor = self._server, self._executor
            self._server = self._executor = None
            if server is None:
                return
            self._stopping.set()
            for event in self._waiters:
                event.set()
        server.stop(grace).wait()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_store:
            self.store.stop_sweeper()
        logger.info("host emulator on port %s stopped", self._port)

    def __enter__(self) -> HostEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (kept after `stop()` so a restart can reuse it)."""
        if self._port is None:
            raise RuntimeError("host emulator not started")
        return self._port

    @property
    def address(self) -> str:
        """Where tests dial the host."""
        return f"127.0.0.1:{self.port}"

    @property
    def elixir_address_for_worker(self) -> str:
        """The `--elixir-address` Snakepit would pass: localhost at 0.6, 127.0.0.1 later (snakepit: elixir-address)."""
        return f"{self.profile.elixir_host}:{self.port}"

    # -- call log --

    def calls(self, method: str | None = None) -> list[HostCall]:
        """Snapshot of the calls received so far, optionally of one method."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for_call(
        self, method: str, timeout: float = 5.0, *, count: int = 1, completed: bool = False
    ) -> HostCall:
        """Block until the `count`-th call of `method` has arrived (and, if `completed`, finished)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")

        def ready() -> bool:
            matching = [c for c in self._calls if c.method == method]
            return len(matching) >= count and (not completed or matching[count - 1].done.is_set())

        with self._calls_changed:
            if not self._calls_changed.wait_for(ready, timeout):
                seen = len([c for c in self._calls if c.method == method])
                raise TimeoutError(f"waited {timeout} s for call #{count} of {method}; saw {seen}")
            return [c for c in self._calls if c.method == method][count - 1]

    def answered_peers(self, method: str) -> set[str]:
        """The peers (client connections) that have had a call of `method` answered OK; one per worker channel."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        with self._lock:
            return {c.peer for c in self._calls if c.method == method and c.status is grpc.StatusCode.OK}

    def clear_calls(self) -> None:
        """Forget the calls logged so far."""
        with self._lock:
            self._calls.clear()

    # -- Elixir tools --

    def expose_tool(
        self,
        name: str,
        handler: ToolHandler,
        description: str = "",
        exposed: bool = True,
        *,
        session_id: str | None = None,
        parameters: Sequence[Mapping[str, Any]] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> RegisteredTool:
        """Register a local Elixir tool for every session (or one); `exposed` lists it for workers.

        `handler(params, binary_params)` gets JSON-decoded parameters; returning bytes gives a
        `binary_result` where the profile supports it; raising gives `success=false`.
        """
        if session_id is None:
            self.tools.unregister(None, name)  # re-exposing a global tool replaces it
        return self.tools.register_elixir_tool(
            session_id,
            name,
            handler,
            description=description,
            parameters=parameters,
            metadata=metadata,
            exposed_to_python=exposed,
        )

    def release_hung(self) -> None:
        """Let RPCs blocked by `faults.hang` proceed (remove the method from `faults.hang` first)."""
        with self._lock:
            for event in self._hangers:
                event.set()

    # -- dispatch --

    def _record(self, method: str, request: Message | None, context: grpc.ServicerContext) -> HostCall:
        metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            text = value if isinstance(value, str) else value.decode("utf-8", "backslashreplace")
            metadata[key.lower()] = text
        call = HostCall(method=method, request=request, metadata=metadata, at=time.monotonic(), peer=context.peer())
        with self._calls_changed:
            self._calls.append(call)
            self._calls_changed.notify_all()
        logger.debug("%s received from %s", method, call.peer)
        return call

    def _finish(self, call: HostCall, code: grpc.StatusCode, details: str | None) -> None:
        with self._calls_changed:
            call.status, call.details = code, details
            call.done.set()
            self._calls_changed.notify_all()

    def _interruptible_wait(self, context: grpc.ServicerContext, timeout: float | None, hang: bool) -> None:
        """Wait `timeout` (None = forever) unless stop(), client cancellation or release_hung() intervenes."""
        event = threading.Event()
        with self._lock:
            self._waiters.add(event)
            if hang:
                self._hangers.add(event)
            stopping = self._stopping.is_set()
        try:
            if stopping or not context.add_callback(event.set):
                event.set()
            event.wait(timeout)
        finally:
            with self._lock:
                self._waiters.discard(event)
                self._hangers.discard(event)
        if self._stopping.is_set():
            raise _Abort(grpc.StatusCode.UNAVAILABLE, "host emulator stopped")
        if not context.is_active():
            raise _Abort(grpc.StatusCode.CANCELLED, "cancelled by the client")

    def _apply_faults(self, method: str, context: grpc.ServicerContext) -> None:
        if method in self.faults.hang:
            logger.debug("%s: hanging (fault)", method)
            self._interruptible_wait(context, None, hang=True)
        delay = self.faults.delay_s.get(method)
        if delay:
            self._interruptible_wait(context, delay, hang=False)
        failure = self.faults.fail.get(method)
        if failure is not None:
            raise _Abort(*failure)

    def _dispatch(
        self,
        method: str,
        request: _Req,
        context: grpc.ServicerContext,
        behaviour: Callable[[_Req, grpc.ServicerContext], _Resp],
    ) -> _Resp:
        call = self._record(method, request if isinstance(request, Message) else None, context)
        try:
            self._apply_faults(method, context)
            response = behaviour(request, context)
        except _Abort as abort:
            self._finish(call, abort.code, abort.details)
            logger.debug("%s -> %s %s", method, abort.code.name, abort.details)
            context.abort(abort.code, abort.details)
        except Exception as exc:
            self._finish(call, grpc.StatusCode.UNKNOWN, repr(exc))
            logger.exception("%s failed inside the host emulator", method)
            raise
        self._finish(call, grpc.StatusCode.OK, None)
        return response

    # -- RPC behaviours (v0.13.0 lib/snakepit/grpc/bridge_server.ex; snakepit: bridge-server-sessions) --

    def _ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        return pb.PingResponse(message=f"pong: {request.message}", server_time=_timestamp_now())

    def _initialize_session(
        self, request: pb.InitializeSessionRequest, context: grpc.ServicerContext
    ) -> pb.InitializeSessionResponse:
        # Idempotent; metadata of an existing session is not updated; config ignored (snakepit: bridge-server-sessions).
        try:
            self.store.create_session(request.session_id, metadata=dict(request.metadata))
        except SessionStoreError as exc:
            # `raise GRPC.RPCError, status: :internal, message: format_error(reason)`.
            raise _Abort(grpc.StatusCode.INTERNAL, exc.reason) from exc
        return pb.InitializeSessionResponse(success=True)

    def _cleanup_session(
        self, request: pb.CleanupSessionRequest, context: grpc.ServicerContext
    ) -> pb.CleanupSessionResponse:
        # `force` ignored; the session's tools stay in the registry (snakepit: cleanup-session).
        self.store.delete_session(request.session_id)
        return pb.CleanupSessionResponse(success=True, resources_cleaned=1)

    def _get_session(
        self, request: pb.GetSessionRequest, context: grpc.ServicerContext
    ) -> pb.GetSessionResponse:
        session = self.store.get_session(request.session_id)
        if session is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Session not found: {request.session_id}")
        return pb.GetSessionResponse(
            session_id=request.session_id,
            metadata=session.metadata,
            # Bug kept (snakepit: bridge-server-sessions): the monotonic creation time is sent as if it were wall-clock.
            created_at=timestamp_pb2.Timestamp(seconds=int(session.created_at), nanos=0),
            # Bug kept (snakepit: bridge-server-sessions): Elixir reads a `:tools` field Session lacks, so always 0.
            tool_count=0,
        )

    def _heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        # The lookup touches last_accessed, so heartbeats keep the session alive (snakepit: bridge-server-sessions).
        valid = self.store.get_session(request.session_id) is not None
        return pb.HeartbeatResponse(server_time=_timestamp_now(), session_valid=valid)

    def _register_tools(
        self, request: pb.RegisterToolsRequest, context: grpc.ServicerContext
    ) -> pb.RegisterToolsResponse:
        if self.store.get_session(request.session_id) is None:
            return pb.RegisterToolsResponse(success=False, error_message="not_found")
        specs = [
            RemoteToolSpec(
                name=tool.name,
                description=tool.description,
                metadata={
                    **tool.metadata,
                    "supports_streaming": "true" if tool.supports_streaming else "false",
                },
                parameters=list(tool.parameters),
            )
            for tool in request.tools
        ]
        try:
            tool_ids = self.tools.register(request.session_id, specs, request.worker_id)
        except ToolRegistrationError as exc:
            return pb.RegisterToolsResponse(success=False, error_message=exc.message)
        return pb.RegisterToolsResponse(success=True, tool_ids=tool_ids)

    def _get_exposed_elixir_tools(
        self, request: pb.GetExposedElixirToolsRequest, context: grpc.ServicerContext
    ) -> pb.GetExposedElixirToolsResponse:
        specs = []
        for tool in self.tools.list_exposed_elixir_tools(request.session_id):
            metadata = {
                str(k): _metadata_string(v) for k, v in tool.metadata.items() if str(k) != "parameters"
            }
            specs.append(
                pb.ToolSpec(
                    name=tool.name,
                    description=tool.description,
                    parameters=[self._parameter_spec(p) for p in tool.parameters],
                    metadata=metadata,
                    supports_streaming=metadata.get("supports_streaming", "false") == "true",
                )
            )
        return pb.GetExposedElixirToolsResponse(tools=specs)

    def _parameter_spec(self, param: Mapping[str, Any]) -> pb.ParameterSpec:
        spec = pb.ParameterSpec(
            name=str(param.get("name", "")),
            type=str(param.get("type", "any")),
            description=str(param.get("description", "")),
            required=bool(param.get("required", False)),
            validation_json=jason_encode(param.get("validation", {})).decode(),
        )
        if param.get("default") is not None:
            spec.default_value.CopyFrom(self._encode_result(param["default"])[0])
        return spec

    def _execute_elixir_tool(
        self, request: pb.ExecuteElixirToolRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteElixirToolResponse:
        start = time.monotonic()
        try:
            tool = self._lookup_tool(request.session_id, request.tool_name)
            if tool.kind is not ToolKind.LOCAL:
                raise _ToolFailure(f"Tool {request.tool_name} is not an Elixir tool")
            params = self._decode_parameters(request.parameters)
            result, binary = self._run_local(tool, params, {})
        except _ToolFailure as failure:
            return pb.ExecuteElixirToolResponse(
                success=False, error_message=str(failure), execution_time_ms=_elapsed_ms(start)
            )
        elapsed = _elapsed_ms(start)
        return pb.ExecuteElixirToolResponse(
            success=True,
            result=result,
            binary_result=binary,
            metadata={"execution_time": str(elapsed)},
            execution_time_ms=elapsed,
        )

    def _execute_tool(
        self, request: pb.ExecuteToolRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteToolResponse:
        start = time.monotonic()
        try:
            tool = self._lookup_tool(request.session_id, request.tool_name)
            if tool.kind is ToolKind.LOCAL:
                # HEAD merges binary parameters into the handler's input; v0.6.0 ignored them.
                binary = dict(request.binary_parameters) if self.profile.binary_result else {}
                params = self._decode_parameters(request.parameters)
                result, binary_result = self._run_local(tool, params, binary)
            else:
                raise _ToolFailure(self._remote_failure(tool, request.parameters))
        except _ToolFailure as failure:
            return pb.ExecuteToolResponse(
                success=False, error_message=str(failure), execution_time_ms=_elapsed_ms(start)
            )
        elapsed = _elapsed_ms(start)
        return pb.ExecuteToolResponse(
            success=True,
            result=result,
            binary_result=binary_result,
            metadata={"execution_time": str(elapsed), "tool_type": tool.kind.value},
            execution_time_ms=elapsed,
        )

    def _execute_streaming_tool(
        self, request: pb.ExecuteToolRequest, context: grpc.ServicerContext
    ) -> list[pb.ToolChunk]:
        if not self.profile.streaming_forwarding:
            # v0.6.0:bridge_server.ex:269-273.
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "Streaming tool execution not yet implemented")
        if self.store.get_session(request.session_id) is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Session not found: {request.session_id}")
        tool = self.tools.get_tool(request.session_id, request.tool_name)
        if tool is None:
            raise _Abort(
                grpc.StatusCode.NOT_FOUND,
                f"Tool {request.tool_name} not found for session {request.session_id}",
            )
        if tool.kind is ToolKind.LOCAL or not tool.supports_streaming:
            raise _Abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Streaming execution is not enabled for tool {request.tool_name}. "
                "Enable streaming support on the adapter (supports_streaming: true) "
                "or use ExecuteTool instead.",
            )
        try:
            self._decode_parameters(request.parameters)
        except _ToolFailure as failure:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(failure)) from None
        # The emulator has no pool, so forwarding to the registering worker fails like a missing one.
        raise _Abort(grpc.StatusCode.INTERNAL, f"Worker not found: {tool.worker_id}")

    def _stream_telemetry(self, request: None, context: grpc.ServicerContext) -> list[pb.TelemetryEvent]:
        # BridgeServer has no stream_telemetry/2: workers calling it get UNIMPLEMENTED (snakepit: telemetry-stream).
        raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented: StreamTelemetry")

    # -- tool helpers --

    def _lookup_tool(self, session_id: str, tool_name: str) -> RegisteredTool:
        # Missing session: `format_error(:not_found)` is the bare atom text (bridge_server.ex).
        if self.store.get_session(session_id) is None:
            raise _ToolFailure("not_found")
        tool = self.tools.get_tool(session_id, tool_name)
        if tool is None:
            raise _ToolFailure(f"Tool {tool_name} not found for session {session_id}")
        return tool

    def _remote_failure(self, tool: RegisteredTool, parameters: Mapping[str, any_pb2.Any]) -> str:
        """What a `:remote` tool gets: no pool here, its worker is never found (snakepit: bridge-server-parameters)."""
        reason = f"Worker not found: {tool.worker_id}"
        if not self.profile.strict_elixir_parameters:
            # v0.6.0 wrapped `inspect(reason)` and decoded nothing first.
            return f"Remote tool execution failed: {inspect_term(reason)}"
        self._decode_parameters(parameters)  # HEAD decodes (strictly) before looking up the worker
        return f"Remote tool execution failed: {reason}"

    def _decode_parameters(self, parameters: Mapping[str, any_pb2.Any]) -> dict[str, Any]:
        """`decode_tool_parameters`: JSON in every `Any.value` (snakepit: bridge-server-parameters).

        Strict (HEAD): a non-JSON value fails the call. Lenient (v0.6.0): the raw bytes are passed
        on, as text when they are UTF-8.
        """
        decoded: dict[str, Any] = {}
        for key in sorted(parameters):  # Elixir iterates small maps in key order
            value = parameters[key]
            try:
                decoded[key] = jason_decode(value.value)
            except _JsonDecodeError as exc:
                if not self.profile.strict_elixir_parameters:
                    try:
                        decoded[key] = value.value.decode("utf-8")
                    except UnicodeDecodeError:
                        decoded[key] = value.value
                elif value.type_url == STRING_VALUE_TYPE_URL:
                    # `{:invalid_parameter, key, message}` hits the generic clause: inspect(message).
                    raise _ToolFailure(f"Invalid parameter {key}: {inspect_term(str(exc))}") from None
                else:
                    raise _ToolFailure(f"Invalid parameter {key} ({value.type_url}): {exc}") from None
        return decoded

    def _run_local(
        self, tool: RegisteredTool, params: dict[str, Any], binary: dict[str, bytes]
    ) -> tuple[any_pb2.Any, bytes]:
        assert tool.handler is not None
        try:
            value = tool.handler(params, binary)
        except ElixirExit as exc:
            raise _Abort(grpc.StatusCode.UNKNOWN, "Internal Server Error") from exc
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            logger.debug("Elixir tool %s raised %r", tool.name, exc)
            if self.profile.strict_elixir_parameters:
                raise _ToolFailure(f"Tool execution failed: {message}") from exc
            # v0.6.0: "Tool execution failed: #{inspect(e)}" of the exception struct.
            raise _ToolFailure(
                f"Tool execution failed: %{type(exc).__name__}{{message: {inspect_term(message)}}}"
            ) from exc
        return self._encode_result(value)

    def _encode_result(self, value: Any) -> tuple[any_pb2.Any, bytes]:
        """`encode_tool_result`: JSON in a StringValue-tagged Any; bytes go to `binary_result` (>= 0.6.11)."""
        if isinstance(value, bytes | bytearray) and self.profile.binary_result:
            return any_pb2.Any(type_url=STRING_VALUE_TYPE_URL, value=b"{}"), bytes(value)
        return any_pb2.Any(type_url=STRING_VALUE_TYPE_URL, value=jason_encode(value)), b""


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
