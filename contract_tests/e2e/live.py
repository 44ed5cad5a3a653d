"""One run of scenario files through real Snakepit, in a container of the host image.

Snakepit spawns the worker under test inside the container, as it would on a user's machine. The container
has no network of its own (`--network none`: a private loopback only), because Snakepit 0.6.0's BridgeServer
binds 0.0.0.0 on the fixed port 50051 and Snakepit's Python bridge binds [::]; nothing needs to reach in.
The run is judged by its result lines alone: Snakepit can exit 0 when its pool never started, so a run that
printed no `run_end` line did not finish, whatever the exit status says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import contract_tests
import reference_worker
from contract_tests.e2e import image  # noqa: F401  (sets the testcontainers environment before its import)
from contract_tests.scenarios import SCENARIO_DIR

RESULT_PREFIX = "SNAKEPIT-E2E "
CONTAINER_SCENARIOS = "/scenarios"
LABEL = "snakepit-contract.e2e"
_BASE_TIMEOUT_S = 180.0
_PER_SCENARIO_S = 90.0


@dataclass(frozen=True)
class Worker:
    """The worker under test as Snakepit launches it inside the container: [executable, script, args...]."""

    name: str
    argv: tuple[str, ...]
    contract_tools: bool
    mounts: tuple[tuple[Path, str], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def reference() -> Worker:
    """The kit's reference worker, from this installation, run by the image's Python with its own wheels."""
    return Worker(
        name="reference",
        argv=("/opt/worker-venv/bin/python3", "-m", "reference_worker"),
        contract_tools=True,
        mounts=((Path(reference_worker.__file__).parent, "/opt/worker/reference_worker"),
                (Path(contract_tests.__file__).parent, "/opt/worker/contract_tests")),
        env={"PYTHONPATH": "/opt/worker"},
    )


def snakepit_bridge() -> Worker:
    """Snakepit's own Python bridge of the same version, with its showcase adapter, as GRPCPython starts it."""
    return Worker(
        name="snakepit-bridge",
        argv=("/opt/bridge-venv/bin/python3", "/opt/snakepit-sources/snakepit/priv/python/grpc_server.py",
              "--adapter", "snakepit_bridge.adapters.showcase.ShowcaseAdapter"),
        contract_tools=False,
    )


WORKERS = {"reference": reference, "snakepit-bridge": snakepit_bridge}


@dataclass
class LiveRun:
    """What the container printed: the result events, whether the run finished, and the raw log for evidence."""

    events: list[dict[str, Any]]
    finished: bool
    exit_status: int | None
    log: str

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


def parse_events(log: str) -> list[dict[str, Any]]:
    events = []
    for line in log.splitlines():
        if line.startswith(RESULT_PREFIX):
            event = json.loads(line[len(RESULT_PREFIX):])
            if isinstance(event, dict):
                events.append(event)
    return events


def run(tag: str, scenario_names: list[str], worker: Worker, timeout_s: float | None = None) -> LiveRun:
    """Run the scenarios in one container; it is removed afterwards, also on error or Ctrl-C."""
    from testcontainers.core.container import DockerContainer

    from contract_tests import container as worker_containers

    timeout_s = timeout_s or _BASE_TIMEOUT_S + _PER_SCENARIO_S * len(scenario_names)
    # The owner label lets the next run (of this tier or of the suite) remove the container of a SIGKILLed one.
    worker_containers.sweep_orphans()
    container = DockerContainer(tag, network_mode="none",
                                labels={LABEL: "1", worker_containers.OWNER_LABEL: worker_containers.owner_identity()})
    container.with_command([f"{CONTAINER_SCENARIOS}/{name}.json" for name in scenario_names])
    container.with_volume_mapping(str(SCENARIO_DIR), CONTAINER_SCENARIOS, "ro")
    for host_path, inside in worker.mounts:
        container.with_volume_mapping(str(host_path), inside, "ro")
    container.with_env("SNAKEPIT_E2E_WORKER_ARGV", json.dumps(list(worker.argv)))
    for key, value in worker.env.items():
        container.with_env(key, value)
    status: int | None = None
    container.start()
    try:
        wrapped = container.get_wrapped_container()
        try:
            status = int(wrapped.wait(timeout=timeout_s)["StatusCode"])
        except Exception:  # the engine's read timeout: the run hung; what it printed so far is the evidence
            status = None
        log = wrapped.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
    finally:
        container.stop()
    events = parse_events(log)
    return LiveRun(events=events, finished=any(e.get("event") == "run_end" for e in events), exit_status=status,
                   log=log)
