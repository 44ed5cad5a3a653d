"""The reference worker, but forwarding InitializeSession and Heartbeat to Elixir as Snakepit's own bridge does.

Snakepit's Python bridge keeps no sessions: it proxies both RPCs to the BridgeServer, so its own session lives in
Elixir's SessionStore and Snakepit's heartbeats keep it alive. Scenario self-tests run this to check the emulator
does not count that session as the scenario's.
"""

from __future__ import annotations

import sys

from reference_worker import server
from reference_worker.proto import snakepit_bridge_pb2 as pb
from reference_worker.servicer import BridgeServicer
from reference_worker.tools import Context


class ForwardingServicer(BridgeServicer):
    async def InitializeSession(
        self, request: pb.InitializeSessionRequest, context: Context
    ) -> pb.InitializeSessionResponse:
        elixir = self._state.elixir
        assert elixir is not None
        reply: pb.InitializeSessionResponse = await elixir.stub().InitializeSession(request, timeout=5)
        return reply

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        elixir = self._state.elixir
        assert elixir is not None
        reply: pb.HeartbeatResponse = await elixir.stub().Heartbeat(request, timeout=5)
        return reply


if __name__ == "__main__":
    server.BridgeServicer = ForwardingServicer  # type: ignore[attr-defined]
    sys.exit(server.main())
