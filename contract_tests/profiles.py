"""Profiles: what one era of real Snakepit does, as data the harness reads.

Every number here comes from ../shared/reference/snakepit-facts.md (cited as
"facts §N"); docs/contract.md turns them into the worker's spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Readiness(Enum):
    """How Snakepit learns that a worker listens (facts §2.3)."""

    READY_LINE = "GRPC_READY line on merged stdout/stderr"
    READY_FILE = "port written to SNAKEPIT_READY_FILE"


@dataclass(frozen=True)
class Profile:
    """Behaviour of one Snakepit era toward its workers."""

    name: str
    snakepit_version: str
    readiness: Readiness
    # v0.6 restarts its 30 s readiness timer on every output chunk (facts §9.7).
    readiness_timer_resets_on_output: bool
    readiness_timeout_s: float
    # SIGTERM, then SIGKILL after this many seconds (facts §2.7).
    shutdown_grace_s: float
    # v0.13 passes `127.0.0.1:<ephemeral>`; v0.6 `localhost:<grpc_port>` (facts §2.1).
    elixir_host: str
    # v0.6 sends "default_session"; later versions the worker's own session (facts §9.15).
    fixed_session_id: str | None
    sends_instance_flags: bool
    sets_process_group_env: bool
    initializes_worker_session: bool
    opens_telemetry_stream: bool
    heartbeat: bool
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    # Application errors: JSON object with type/message (v0.7.4+) or plain text (facts §3.6).
    json_errors: bool
    # v0.6 crashes its GRPCWorker on a non-OK ExecuteTool status (facts §9.3).
    non_ok_execute_status_crashes: bool
    # v0.6 delivers only non-final chunks and drops final-chunk data (facts §3.7).
    delivers_final_chunk: bool
    binary_result: bool
    correlation_header: bool
    # BridgeServer: strict JSON parameters and tool-name validation from v0.6.8/v0.7 (facts §4.2).
    strict_elixir_parameters: bool
    validates_tool_names: bool
    streaming_forwarding: bool


SNAKEPIT_0_6 = Profile(
    name="snakepit-0.6",
    snakepit_version="0.6.0",
    readiness=Readiness.READY_LINE,
    readiness_timer_resets_on_output=True,
    readiness_timeout_s=30.0,
    shutdown_grace_s=2.0,
    elixir_host="localhost",
    fixed_session_id="default_session",
    sends_instance_flags=False,
    sets_process_group_env=False,
    initializes_worker_session=False,
    opens_telemetry_stream=False,
    heartbeat=False,
    heartbeat_interval_s=2.0,
    heartbeat_timeout_s=10.0,
    json_errors=False,
    non_ok_execute_status_crashes=True,
    delivers_final_chunk=False,
    binary_result=False,
    correlation_header=False,
    strict_elixir_parameters=False,
    validates_tool_names=False,
    streaming_forwarding=False,
)

SNAKEPIT_0_13 = Profile(
    name="snakepit-0.13",
    snakepit_version="0.13.0",
    readiness=Readiness.READY_FILE,
    readiness_timer_resets_on_output=False,
    readiness_timeout_s=30.0,
    shutdown_grace_s=6.0,
    elixir_host="127.0.0.1",
    fixed_session_id=None,
    sends_instance_flags=True,
    sets_process_group_env=True,
    initializes_worker_session=True,
    opens_telemetry_stream=True,
    heartbeat=True,
    heartbeat_interval_s=2.0,
    heartbeat_timeout_s=10.0,
    json_errors=True,
    non_ok_execute_status_crashes=False,
    delivers_final_chunk=True,
    binary_result=True,
    correlation_header=True,
    strict_elixir_parameters=True,
    validates_tool_names=True,
    streaming_forwarding=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SNAKEPIT_0_6, SNAKEPIT_0_13)}
DEFAULT_PROFILE = SNAKEPIT_0_13.name


def get_profile(name: str) -> Profile:
    """Return the named profile or raise ValueError listing the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown profile {name!r}; known profiles: {known}") from None
