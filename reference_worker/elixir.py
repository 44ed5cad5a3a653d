"""The worker as a client of Snakepit's BridgeServer (`--elixir-address`): callbacks and heartbeat watchdog.

Everything here uses one cached grpc.aio channel in the server's event loop, so a call waiting on Elixir never
blocks Ping or Heartbeat. Nothing here runs before readiness: the Elixir side may start after the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import grpc

from .codec import json_any
from .errors import ToolError
from .proto import snakepit_bridge_pb2 as pb
from .proto import snakepit_bridge_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from .proto.snakepit_bridge_pb2_grpc import BridgeServiceAsyncStub

_LOG = logging.getLogger(__name__)
Headers = tuple[tuple[str, str], ...]

CORRELATION_HEADER = "x-snakepit-correlation-id"
# Budget of one tool callback into Elixir (InitializeSession + ExecuteElixirTool/RegisterTools together).
# Tool-path calls wait for the channel to connect within it: the Elixir side may start after the worker.
CALL_TIMEOUT_S = 10.0
# Before the first successful Heartbeat the Elixir side may still be starting (snakepit: connect-retry):
# tolerate failures.
STARTUP_BUDGET_S = 60.0
# Statuses meaning nobody answered; any other status came from a live server (e.g. one without Heartbeat).
_NO_ANSWER = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


class ElixirClient:
    """Lazily opened, cached async channel to the BridgeServer; one per process."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.aio.Channel | None = None
        self._stub: BridgeServiceAsyncStub | None = None

    def stub(self) -> BridgeServiceAsyncStub:
        """Create the channel on first use, inside the running loop (grpc.aio binds channels to a loop)."""
        if self._stub is None:
            options = [
                ("grpc.max_send_message_length", 256 << 20),
                ("grpc.max_receive_message_length", 256 << 20),
                # Reconnect within 1 s once a late or restarted Elixir side listens (default backoff: 120 s).
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ]
            self._channel = grpc.aio.insecure_channel(self.address, options=options)
            self._stub = pb_grpc.BridgeServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        """Close the channel if it was ever opened."""
        if self._channel is not None:
            await self._channel.close(None)

    async def heartbeat(self, session_id: str, timeout_s: float) -> bool:
        """One watchdog probe: True when Elixir answered at all (`session_valid=false` and errors too)."""
        try:
            await self.stub().Heartbeat(pb.HeartbeatRequest(session_id=session_id), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            _LOG.debug("heartbeat to %s: %s", self.address, exc.code())
            return exc.code() not in _NO_ANSWER
        return True

    async def _call(self, rpc: str, request: Any, headers: Headers, deadline: float) -> Any:
        """One RPC of a callback, within its budget, waiting for a late Elixir side. No answer is ElixirUnavailable;
        any other status is the tool's failure: an Elixir tool that exits ends its RPC with UNKNOWN (contract §4)."""
        method = getattr(self.stub(), rpc)
        try:
            return await method(request, timeout=_remaining(deadline), metadata=headers, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            failure = f"{rpc} on Elixir failed: {exc.code().name}: {exc.details()}"
            raise ToolError("ElixirUnavailable" if exc.code() in _NO_ANSWER else "ElixirToolError", failure) from None

    async def ensure_session(self, session_id: str, headers: Headers, deadline: float) -> None:
        """InitializeSession (idempotent on the Elixir side). Its failure is not reported: the RPC that follows
        reaches the same Elixir side and reports what is wrong (no answer, or the session it refused)."""
        with contextlib.suppress(ToolError):
            await self._call("InitializeSession", pb.InitializeSessionRequest(session_id=session_id), headers, deadline)

    async def execute_tool(
        self, session_id: str, tool: str, parameters: Mapping[str, Any], correlation_id: str | None
    ) -> Any:
        """ExecuteElixirTool with JSON-text parameters (Snakepit >= 0.7 rejects packed values)."""
        headers, deadline = _headers(correlation_id), asyncio.get_running_loop().time() + CALL_TIMEOUT_S
        await self.ensure_session(session_id, headers, deadline)
        request = pb.ExecuteElixirToolRequest(
            session_id=session_id,
            tool_name=tool,
            parameters={key: json_any(value) for key, value in parameters.items()},
            metadata={} if correlation_id is None else {"correlation_id": correlation_id},
        )
        reply = await self._call("ExecuteElixirTool", request, headers, deadline)
        if not reply.success:
            raise ToolError("ElixirToolError", reply.error_message)
        return elixir_result(tool, reply.result.value)

    async def register_tools(
        self,
        session_id: str,
        names: list[str],
        correlation_id: str | None,
    ) -> dict[str, object]:
        """RegisterTools for the catalogue; `contract.stream` is the only streaming tool."""
        headers, deadline = _headers(correlation_id), asyncio.get_running_loop().time() + CALL_TIMEOUT_S
        await self.ensure_session(session_id, headers, deadline)
        request = pb.RegisterToolsRequest(
            session_id=session_id,
            tools=[
                pb.ToolRegistration(
                    name=name,
                    description=f"contract tool {name}",
                    supports_streaming=name == "contract.stream",
                )
                for name in names
            ],
            worker_id=f"reference-{os.getpid()}",
        )
        reply = await self._call("RegisterTools", request, headers, deadline)
        return {
            "success": reply.success,
            "tool_ids": dict(reply.tool_ids),
            "error_message": reply.error_message,
        }


def elixir_result(tool: str, value: bytes) -> Any:
    """An Elixir tool's decoded result. For a term Jason cannot encode (`{:ok, 3}`, a pid) Snakepit sends inspect/1
    text, and its own bridge fails the call on it (docs/contract.md §4): returned, it would pass for the value."""
    try:
        return json.loads(value)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors.
        text = value[:200].decode("utf-8", "replace")
        raise ToolError("ElixirToolError", f"Elixir tool {tool!r} returned a result that is not JSON: {text}") from None


def _headers(correlation_id: str | None) -> Headers:
    return () if correlation_id is None else ((CORRELATION_HEADER, correlation_id),)


def _remaining(deadline: float) -> float:
    return max(deadline - asyncio.get_running_loop().time(), 0.001)


@dataclass(frozen=True)
class HeartbeatConfig:
    """Worker → Elixir heartbeat settings; defaults match Snakepit's Python bridge (snakepit: heartbeat-config-env)."""

    enabled: bool = True
    interval_ms: float = 2000.0
    timeout_ms: float = 10000.0
    max_missed_heartbeats: int = 3
    initial_delay_ms: float = 0.0
    dependent: bool = True


def load_heartbeat_config(raw: str | None) -> HeartbeatConfig:
    """Parse SNAKEPIT_HEARTBEAT_CONFIG, Snakepit's heartbeat map as Jason encodes it; unknown keys are ignored.

    A bad value warns and keeps its default: a typo must not kill workers."""
    config = HeartbeatConfig()
    try:
        items = json.loads(raw or "{}").items()
    except (ValueError, AttributeError):
        _LOG.warning("ignoring SNAKEPIT_HEARTBEAT_CONFIG: not a JSON object: %r", raw)
        return config
    known = {f.name for f in fields(HeartbeatConfig)}
    changes: dict[str, Any] = {}
    for key, value in items:
        if key not in known or value is None:
            continue
        if _valid(key, value):
            changes[key] = max(1, int(value)) if key == "max_missed_heartbeats" else value
        else:
            _LOG.warning("ignoring SNAKEPIT_HEARTBEAT_CONFIG key %s: bad value %r", key, value)
    return replace(config, **changes)


def _valid(name: str, value: Any) -> bool:
    """Booleans for the flags, numbers >= 0 (> 0 but for the delay) for the rest. Strings are not coerced: they
    reach a worker only from a user's config, on which Snakepit's own monitor fails (Process.send_after)."""
    if name in ("enabled", "dependent"):
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value > 0 or (value == 0 and name == "initial_delay_ms")


async def heartbeat_watchdog(
    client: ElixirClient,
    config: HeartbeatConfig,
    orphaned: Callable[[], None],
) -> None:
    """Dependent heartbeat: leave when Elixir stops answering, so a worker never outlives its pool.

    Before Elixir first answers, failures are tolerated for STARTUP_BUDGET_S (the Elixir side may start late);
    after that, `max_missed_heartbeats` consecutive failures call `orphaned` (dependent) or only log.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    session_id = f"reference-worker-{os.getpid()}"
    interval_s, timeout_s = config.interval_ms / 1000, config.timeout_ms / 1000
    ever_ok, missed = False, 0
    await asyncio.sleep(config.initial_delay_ms / 1000)
    while True:
        if await client.heartbeat(session_id, timeout_s):
            ever_ok, missed = True, 0
        elif ever_ok or loop.time() - started >= STARTUP_BUDGET_S:
            missed += 1
            if missed >= config.max_missed_heartbeats:
                if config.dependent:
                    _LOG.warning("Elixir at %s missed %d heartbeats: shutting down", client.address, missed)
                    orphaned()
                    return
                _LOG.warning("Elixir at %s missed %d heartbeats; independent mode", client.address, missed)
                missed = 0
        await asyncio.sleep(interval_s)
