"""The contract tool catalogue (docs/contract.md §5): one small coroutine per tool, and their registry."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import grpc

from .elixir import ElixirClient
from .errors import ToolError
from .proto import snakepit_bridge_pb2 as pb

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


@dataclass
class Program:
    """A worker-held program: its JSON source and how often it ran in this process."""

    source: Any
    runs: int = 0


@dataclass
class WorkerState:
    """Process-wide state the tools report on; touched only from the event loop thread."""

    run_id: str | None
    instance_name: str | None
    elixir: ElixirClient | None
    pid: int = field(default_factory=os.getpid)
    call_count: int = 0
    calls_running: int = 0
    stream_chunks_produced: int = 0
    session_programs: dict[str, dict[str, Program]] = field(default_factory=dict)
    global_programs: dict[str, Program] = field(default_factory=dict)
    children: list[asyncio.subprocess.Process] = field(default_factory=list)

    def stop_children(self) -> None:
        """Kill the processes contract.spawn_child started: nothing the worker made outlives it."""
        for child in self.children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        self.children.clear()

    def release_session(self, session_id: str) -> int:
        """Drop a session's programs (CleanupSession); returns how many were released."""
        return len(self.session_programs.pop(session_id, {}))


class Call:
    """One tool invocation: what a handler may look at."""

    __slots__ = ("context", "params", "request", "state")

    def __init__(
        self, state: WorkerState, request: pb.ExecuteToolRequest, params: dict[str, Any], context: Context
    ) -> None:
        self.state = state
        self.request = request
        self.params = params
        self.context = context

    @property
    def session(self) -> str:
        """The `session_id` parameter when given (execute_in_session), else the request's session."""
        session = self.params.get("session_id")
        return session if isinstance(session, str) and session else self.request.session_id

    def correlation_id(self) -> str | None:
        """`metadata["correlation_id"]`, else None. Snakepit sends the id there and in the `x-snakepit-correlation-id`
        header alike (both from 0.7.0), so the header adds nothing."""
        return self.request.metadata.get("correlation_id") or None


class BinaryResult(NamedTuple):
    """A JSON result plus `binary_result` bytes (Snakepit >= 0.6.11)."""

    value: Any
    data: bytes


UnaryTool = Callable[[Call], Awaitable[Any]]
# A streaming tool yields each chunk's data, JSON text already encoded: the servicer sends it as it is (encoding a
# small value through encode_json was most of the worker's own cost per chunk, docs/bench.md).
StreamTool = Callable[[Call], AsyncIterator[bytes]]
_MISSING: Any = object()


def _param(call: Call, key: str, kinds: tuple[type, ...], default: Any = _MISSING) -> Any:
    """A typed parameter; bools never pass as numbers, nor floats as integers; null means the default if any.

    Missing (without a default) or mistyped → InvalidParameters.
    """
    value = call.params.get(key)
    if value is None:
        if default is _MISSING:
            raise ToolError("InvalidParameters", f"missing parameter {key!r}")
        return default
    if not isinstance(value, kinds) or (type(value) is bool and bool not in kinds):
        raise ToolError("InvalidParameters", f"parameter {key!r} has the wrong type: {value!r}")
    return value


def _natural(call: Call, key: str, default: Any = _MISSING) -> Any:
    """A non-negative integer parameter."""
    value = _param(call, key, (int,), default)
    if value is not None and value < 0:
        raise ToolError("InvalidParameters", f"parameter {key!r} must be >= 0, not {value}")
    return value


def _scope(call: Call) -> str:
    scope = _param(call, "scope", (str,), "session")
    if scope not in ("session", "global"):
        raise ToolError("InvalidParameters", f"scope must be 'session' or 'global', not {scope!r}")
    return str(scope)


async def catalogue(call: Call) -> Any:
    """The names this worker implements, so the suite knows which clauses it can check."""
    return {"tools": list(CATALOGUE), "version": 1}


async def echo(call: Call) -> Any:
    """Exactly the parameters received, decoded."""
    return call.params


async def add(call: Call) -> Any:
    """a + b; two integers give an integer."""
    return _param(call, "a", (int, float)) + _param(call, "b", (int, float))


async def fail(call: Call) -> Any:
    """An application error of the requested type."""
    error_type = _param(call, "type", (str,), "ContractError")
    raise ToolError(error_type, _param(call, "message", (str,), "contract.fail"))


async def sleep(call: Call) -> Any:
    """Sleeps in the event loop: cancellation and the deadline cancel this coroutine at once."""
    seconds = _param(call, "seconds", (int, float))
    if seconds < 0:
        raise ToolError("InvalidParameters", "seconds must be >= 0")
    await asyncio.sleep(seconds)
    return {"slept": seconds}


async def stream(call: Call) -> AsyncIterator[bytes]:
    """`count` chunks `{"index": i}`; with `fail_after` = n <= count the stream fails after n chunks."""
    count = _natural(call, "count")
    interval_s = max(_param(call, "interval_ms", (int, float), 0), 0) / 1000
    fail_after = _natural(call, "fail_after", None)
    error_type = _param(call, "type", (str,), "ContractError")
    message = _param(call, "message", (str,), f"stream failed after {fail_after} chunks")
    limit = count if fail_after is None else min(count, fail_after)
    for index in range(limit):
        if index and interval_s > 0:
            await asyncio.sleep(interval_s)
        yield b'{"index":%d}' % index  # what encode_json({"index": index}) gives
    if fail_after is not None and fail_after <= count:
        raise ToolError(error_type, message)


async def stream_unary(call: Call) -> Any:
    """contract.stream is streaming only."""
    raise ToolError("InvalidParameters", "contract.stream is streaming only: use ExecuteStreamingTool")


async def binary(call: Call) -> Any:
    """Sizes and digests of the opaque binary parameters (never unpickled); echoes them when `echo`."""
    blobs = call.request.binary_parameters
    keys = sorted(blobs)
    value = {
        "sizes": {key: len(blobs[key]) for key in keys},
        "sha256": {key: hashlib.sha256(blobs[key]).hexdigest() for key in keys},
    }
    if _param(call, "echo", (bool,), True):
        return BinaryResult(value, b"".join(blobs[key] for key in keys))
    return value


async def blob(call: Call) -> Any:
    """A large result, as JSON text or as `binary_result`."""
    size = _natural(call, "size")
    if _param(call, "binary", (bool,), False):
        return BinaryResult({"size": size}, b"x" * size)
    return {"size": size, "data": "x" * size}


async def whoami(call: Call) -> Any:
    """Who served this call: lets the suite check affinity, flags and correlation propagation."""
    state = call.state
    return {
        "pid": state.pid,
        "run_id": state.run_id,
        "instance_name": state.instance_name,
        "session_id": call.request.session_id,
        "call_count": state.call_count,
        "calls_running": state.calls_running,
        "stream_chunks_produced": state.stream_chunks_produced,
        "correlation_id": call.correlation_id(),
        "metadata": dict(call.request.metadata),
    }


async def program_store(call: Call) -> Any:
    """Store a program per session (default) or process-wide; storing again resets its run count."""
    name, scope = _param(call, "name", (str,)), _scope(call)
    if "source" not in call.params:
        raise ToolError("InvalidParameters", "missing parameter 'source'")
    programs = call.state.session_programs
    table = call.state.global_programs if scope == "global" else programs.setdefault(call.session, {})
    table[name] = Program(call.params["source"])
    return {"stored": name, "scope": scope}


async def program_run(call: Call) -> Any:
    """Run a stored program; session programs shadow global ones."""
    name = _param(call, "name", (str,))
    program = call.state.session_programs.get(call.session, {}).get(name)
    scope = "session"
    if program is None:
        program, scope = call.state.global_programs.get(name), "global"
    if program is None:
        raise ToolError("ProgramNotFound", f"no program {name!r} in session {call.session!r} or global scope")
    program.runs += 1
    return {"name": name, "scope": scope, "source": program.source, "runs": program.runs}


async def program_list(call: Call) -> Any:
    """Program names visible to this session, sorted."""
    state = call.state
    return {
        "session": sorted(state.session_programs.get(call.session, {})),
        "global": sorted(state.global_programs),
    }


async def program_drop(call: Call) -> Any:
    """Forget a program; dropping a missing one is not an error."""
    name, scope = _param(call, "name", (str,)), _scope(call)
    state = call.state
    table = state.global_programs if scope == "global" else state.session_programs.get(call.session, {})
    return {"dropped": table.pop(name, None) is not None}


def _elixir(call: Call) -> ElixirClient:
    if call.state.elixir is None:
        raise ToolError("ElixirUnavailable", "no Elixir address (--elixir-address, SNAKEPIT_GRPC_ADDRESS)")
    return call.state.elixir


async def call_elixir(call: Call) -> Any:
    """Call an Elixir tool through the BridgeServer, propagating the correlation id."""
    tool = _param(call, "tool", (str,))
    parameters = _param(call, "parameters", (dict,), {})
    return await _elixir(call).execute_tool(call.session, tool, parameters, call.correlation_id())


async def register_tools(call: Call) -> Any:
    """Register the catalogue with the BridgeServer."""
    return await _elixir(call).register_tools(call.session, list(CATALOGUE), call.correlation_id())


async def spawn_child(call: Call) -> Any:
    """Start a long-sleeping child process, as workers that run subprocesses do; returns its pid."""
    child = await asyncio.create_subprocess_exec(
        "sleep", "3600",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    call.state.children.append(child)
    return {"pid": child.pid}


STREAMING: dict[str, StreamTool] = {"contract.stream": stream}
UNARY: dict[str, UnaryTool] = {
    "contract.catalogue": catalogue,
    "contract.echo": echo,
    "contract.add": add,
    "contract.fail": fail,
    "contract.sleep": sleep,
    "contract.stream": stream_unary,
    "contract.binary": binary,
    "contract.blob": blob,
    "contract.whoami": whoami,
    "contract.program.store": program_store,
    "contract.program.run": program_run,
    "contract.program.list": program_list,
    "contract.program.drop": program_drop,
    "contract.call_elixir": call_elixir,
    "contract.register_tools": register_tools,
    "contract.spawn_child": spawn_child,
}
CATALOGUE: tuple[str, ...] = tuple(sorted(UNARY.keys() | STREAMING.keys()))
