"""One run of scenario files through real Snakepit, in a container of the host image.

Snakepit spawns the worker under test inside the container, as it would on a user's machine. The container
has no network of its own (`--network none`: a private loopback only), because Snakepit 0.6.0's BridgeServer
binds 0.0.0.0 on the fixed port 50051 and Snakepit's Python bridge binds [::]; nothing needs to reach in.
The run is judged by its result lines alone: Snakepit can exit 0 when its pool never started, so a run that
printed no `run_end` line did not finish, whatever the exit status says.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reference_worker
from contract_tests.datafiles import data_dir
from contract_tests.e2e import image  # noqa: F401  (sets the testcontainers environment before its import)

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
    # The worker's documented failures per release (`<version>.toml` baselines), when it has any.
    baselines: Path | None = None


def reference() -> Worker:
    """The kit's reference worker, from this installation, run by the image's Python with its own wheels."""
    return Worker(
        name="reference",
        argv=("/opt/worker-venv/bin/python3", "-m", "reference_worker"),
        contract_tools=True,
        mounts=((Path(reference_worker.__file__).parent, "/opt/worker/reference_worker"),),
        env={"PYTHONPATH": "/opt/worker"},
    )


BRIDGE_SERVER = "/opt/snakepit-sources/snakepit/priv/python/grpc_server.py"
# Our adapter implementing the contract tools on the bridge's adapter API (fixtures/workers/snakepit_bridge).
BRIDGE_ADAPTER_DIR = data_dir() / "workers" / "snakepit_bridge"
BRIDGE_ADAPTER = "contract_adapter.ContractAdapter"


def snakepit_bridge(adapter_dir: Path | None = None) -> Worker:
    """Snakepit's own Python bridge of the same version, as GRPCPython starts it, with the kit's contract adapter
    so that every scenario runs; without that adapter (an installation that lacks it) the bridge's showcase
    adapter, which has no contract tools."""
    python = "/opt/bridge-venv/bin/python3"
    adapter_dir = adapter_dir or BRIDGE_ADAPTER_DIR
    if (adapter_dir / "contract_adapter.py").is_file():
        return Worker(name="snakepit-bridge", argv=(python, BRIDGE_SERVER, "--adapter", BRIDGE_ADAPTER),
                      contract_tools=True, mounts=((adapter_dir, "/opt/bridge-adapter"),),
                      env={"PYTHONPATH": "/opt/bridge-adapter"}, baselines=adapter_dir / "baselines")
    return Worker(name="snakepit-bridge",
                  argv=(python, BRIDGE_SERVER, "--adapter", "snakepit_bridge.adapters.showcase.ShowcaseAdapter"),
                  contract_tools=False)


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


def run(tag: str, scenarios: list[Mapping[str, Any]], worker: Worker, timeout_s: float | None = None) -> LiveRun:
    """Run the scenarios, as given (each step's expectation already resolved for this release), in one container
    and one BEAM; the container and the scenario files are removed afterwards, also on error or Ctrl-C."""
    staged = Path(tempfile.mkdtemp(prefix="snakepit-e2e-scenarios-"))
    try:
        files = []
        for scenario in scenarios:
            path = staged / f"{scenario['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(scenario), encoding="utf-8")
            files.append(f"{CONTAINER_SCENARIOS}/{scenario['name']}.json")
        return _run_container(tag, files, staged, worker,
                              timeout_s or _BASE_TIMEOUT_S + _PER_SCENARIO_S * len(scenarios))
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _run_container(tag: str, files: list[str], staged: Path, worker: Worker, timeout_s: float) -> LiveRun:
    status, log = run_container(tag, files, [(staged, CONTAINER_SCENARIOS), *worker.mounts],
                                {"SNAKEPIT_E2E_WORKER_ARGV": json.dumps(list(worker.argv)), **worker.env}, timeout_s)
    events = parse_events(log)
    return LiveRun(events=events, finished=any(e.get("event") == "run_end" for e in events), exit_status=status,
                   log=log)


def run_container(tag: str, command: list[str], mounts: Sequence[tuple[Path, str]], env: Mapping[str, str],
                  timeout_s: float, entrypoint: list[str] | None = None) -> tuple[int | None, str]:
    """One container of the host image with no network, the mounts read-only: its exit status (None when it
    outlived `timeout_s`) and everything it printed. The container is removed afterwards, also on error or Ctrl-C."""
    from testcontainers.core.container import DockerContainer

    from contract_tests.driver import container as worker_containers

    # The owner label lets the next run (of this tier or of the suite) remove the container of a SIGKILLed one.
    worker_containers.sweep_orphans()
    replaced: dict[str, Any] = {"entrypoint": entrypoint} if entrypoint else {}
    container = DockerContainer(tag, network_mode="none",
                                labels={LABEL: "1", worker_containers.OWNER_LABEL: worker_containers.owner_identity()},
                                **replaced)
    container.with_command(command)
    for host_path, inside in mounts:
        container.with_volume_mapping(str(host_path), inside, "ro")
    for key, value in env.items():
        container.with_env(key, value)
    status: int | None = None
    try:
        container.start()
    except BaseException:  # Ctrl-C while the engine creates it: the container exists, its handle does not yet
        worker_containers.remove_owned()
        raise
    try:
        wrapped = container.get_wrapped_container()
        try:
            status = int(wrapped.wait(timeout=timeout_s)["StatusCode"])
        except Exception:  # the engine's read timeout: the run hung; what it printed so far is the evidence
            status = None
        log = wrapped.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
    finally:
        container.stop()
    return status, log
