"""The reference worker image on a real Docker engine: starts with Snakepit's flags appended, answers on 127.0.0.1.

Needs the engine and the image (`python -m ci.engine up`); tox -e containers provides both and sets
SNAKEPIT_CONTRACT_REQUIRE_ENGINE=1, which turns a missing engine into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ci.daemon import RUN_LABEL, EngineDir, engine_answers
from ci.project_images import REFERENCE_WORKER, project_version
from contract_tests.protocol.proto import snakepit_bridge_pb2 as pb
from contract_tests.protocol.proto import snakepit_bridge_pb2_grpc as pb_grpc

READY = re.compile(r"GRPC_READY:(\d+)")
IMAGE = REFERENCE_WORKER.latest


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": ENGINE.docker_host}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=check, timeout=60)


def _engine() -> EngineDir:
    """The engine DOCKER_HOST names when it is one of ours (<state>/docker.sock), else the default state dir."""
    host = os.environ.get("DOCKER_HOST", "")
    socket = Path(host.removeprefix("unix://"))
    ours = host.startswith("unix://") and socket.name == "docker.sock"
    return EngineDir(socket.parent) if ours else EngineDir.from_env()


ENGINE = _engine()


@pytest.fixture(scope="module", autouse=True)
def engine_with_image() -> None:
    problem = ""
    if not engine_answers(ENGINE):
        problem = f"no Docker engine answers on {ENGINE.socket} (python -m ci.engine up)"
    elif _docker("image", "inspect", IMAGE, check=False).returncode != 0:
        problem = f"image {IMAGE} is not built (python -m ci.engine build)"
    if problem and os.environ.get("SNAKEPIT_CONTRACT_REQUIRE_ENGINE") == "1":
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


@pytest.fixture
def worker() -> Iterator[tuple[str, int]]:
    """The image started as Snakepit starts a worker (--port 0 and its flags appended), on the host network."""
    run_id = f"selftest-{uuid.uuid4().hex[:8]}"
    container = _docker(
        "run", "--detach", "--network", "host", "--label", f"{RUN_LABEL}={run_id}", IMAGE,
        "--port", "0", "--snakepit-run-id", run_id, "--snakepit-instance-name", "image-test",
    ).stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (ready := READY.search(_docker("logs", container).stdout)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready, f"no GRPC_READY line: {_docker('logs', container).stdout[-500:]}"
        yield container, int(ready.group(1))
    finally:
        _docker("rm", "--force", container, check=False)


def test_the_worker_in_the_image_answers_ping_on_loopback(worker: tuple[str, int]) -> None:
    _, port = worker
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = pb_grpc.BridgeServiceStub(channel).Ping(pb.PingRequest(message="from the host"), timeout=10)
    assert reply.message == "pong: from the host"


def test_sigterm_stops_the_container_promptly_with_status_0_or_143(worker: tuple[str, int]) -> None:
    container, _ = worker
    _docker("stop", "--time", "10", container)
    status = int(_docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout)
    assert status in (0, 143)


def test_the_image_is_tagged_with_the_project_version() -> None:
    latest = _docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout
    versioned = _docker("image", "inspect", "--format", "{{.Id}}", f"{REFERENCE_WORKER.repository}:{project_version()}")
    assert latest == versioned.stdout
