"""Self-tests of the containers tier (contract_tests/driver/container.py): specs, owners, and real containers.

The tests using the `image` fixture start real containers of the reference worker image on the engine at
DOCKER_HOST; they SKIP, saying why, when no engine answers or the image is not built, and FAIL instead when
SNAKEPIT_CONTRACT_REQUIRE_ENGINE=1 (the `containers` tox env, which provides both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract_tests import cli, errors
from contract_tests.contract.clause import TESTS
from contract_tests.contract.profiles import SNAKEPIT_0_6, SNAKEPIT_0_13
from contract_tests.driver import processes
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec
from contract_tests.driver.run_tag import RUN_TAG, RUN_TAG_ENV
from contract_tests.elixir.host import HostEmulator
from contract_tests.errors import HarnessError, WorkerStartError

container = pytest.importorskip("contract_tests.driver.container",
                                reason="the containers extra (testcontainers) is missing")
docker = pytest.importorskip("docker")

IMAGE = os.environ.get("SNAKEPIT_CONTRACT_TEST_IMAGE", "snakepit-contract/reference-worker:latest")
REPO = Path(__file__).resolve().parent.parent
MUTANT_DIR = REPO / "fixtures" / "mutants"
MUTANT_REPOSITORY = "snakepit-contract-test/mutant"


def _container_spec(profile: Any = SNAKEPIT_0_13, **overrides: Any) -> WorkerSpec:
    return WorkerSpec(command=(), profile=profile, elixir_address="127.0.0.1:1", image=IMAGE, **overrides)


# -- pure parts ------------------------------------------------------------------------------------

def test_image_spec_passes_only_snakepits_flags() -> None:
    """Ensure the image's ENTRYPOINT is the command: the container gets Snakepit's flags and nothing else."""
    argv = dataclasses.replace(_container_spec(), run_id="abc1234").build_argv()
    assert argv == ["--port", "0", "--elixir-address", "127.0.0.1:1", "--snakepit-run-id", "abc1234",
                    "--snakepit-instance-name", "test_snakepit_contract_nonode@nohost"]


def test_image_spec_refuses_a_command_too() -> None:
    """Ensure a command of this machine never ends up in front of Snakepit's flags inside a container."""
    with pytest.raises(ValueError, match="ENTRYPOINT is its command"):
        WorkerSpec(command=("python3", "-m", "reference_worker"), profile=SNAKEPIT_0_13,
                   elixir_address="127.0.0.1:1", image=IMAGE)


def test_image_spec_env_is_snakepits_not_this_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure a container keeps its image's environment: only Snakepit's variables and the run tag are added."""
    monkeypatch.setenv("SOME_HOST_ONLY_VARIABLE", "1")
    env = _container_spec().build_env(Path("/tmp/x/snakepit_ready"))
    assert "SOME_HOST_ONLY_VARIABLE" not in env and "PATH" not in env and "SNAKEPIT_PYTHON" not in env
    assert env["SNAKEPIT_READY_FILE"] == "/tmp/x/snakepit_ready" and env["SNAKEPIT_PROCESS_GROUP"] == "1"
    assert env[RUN_TAG_ENV] == RUN_TAG and "SNAKEPIT_HEARTBEAT_CONFIG" in env
    assert "SOME_HOST_ONLY_VARIABLE" in WorkerSpec(command=("w",), profile=SNAKEPIT_0_6,
                                                   elixir_address="127.0.0.1:1").build_env(None)


def test_run_label_is_the_first_process_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure xdist workers inherit the controller's label, and a run started inside another claims its own."""
    monkeypatch.setenv(container.RUN_LABEL_ENV, "outer-run")  # inherited from the process that started this one
    assert container.run_label() == "outer-run"
    container.claim_run_label()
    assert container.run_label() == RUN_TAG and os.environ[container.RUN_LABEL_ENV] == RUN_TAG
    monkeypatch.delenv(container.RUN_LABEL_ENV)
    assert container.run_label() == RUN_TAG


def test_owner_identity_tells_a_dead_or_reused_pid() -> None:
    """Ensure only containers of a dead owner count as orphans: a live one, or another machine's running one, stay."""
    assert not container.owner_is_gone(container.owner_identity(), running=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert container.owner_is_gone(f"{processes.boot_id()}/{dead.pid}/1", running=True)
    me = container.owner_identity().rsplit("/", 1)[0]
    assert container.owner_is_gone(f"{me}/0", running=True)  # pid reused by another process: start time differs
    assert container.owner_is_gone("not-an-identity", running=False)
    assert not container.owner_is_gone("other-boot/1/1", running=True)
    assert container.owner_is_gone("other-boot/1/1", running=False)


def test_killed_owner_not_yet_reaped_is_gone() -> None:
    """Ensure an owner killed with its run (a zombie until someone reaps it) already counts as dead."""
    owner = subprocess.Popen(["sleep", "30"])
    try:
        identity = container.owner_identity(owner.pid)
        assert not container.owner_is_gone(identity, running=True)
        owner.kill()
        deadline = time.monotonic() + 10
        while processes.alive(owner.pid):  # killed, not reaped: a zombie
            assert time.monotonic() < deadline, "the killed process never became a zombie"
            time.sleep(0.01)
        assert container.owner_is_gone(identity, running=True)
    finally:
        owner.kill()
        owner.wait()


def test_one_worker_at_a_time(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ensure a command and an image together are a usage error naming both (exit 3)."""
    monkeypatch.setenv("SNAKEPIT_CONTRACT_WORKER_CMD", "python3 -m reference_worker")
    assert cli.main(["run", "--worker-image", IMAGE, "-n", "0"], out=io.StringIO()) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Give one worker, not several" in err and "SNAKEPIT_CONTRACT_WORKER_CMD" in err and "--worker-image" in err


def test_no_engine_is_exit_3_naming_docker_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Ensure an unreachable engine stops the run before any check, naming DOCKER_HOST and how to start one."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert cli.main(["run", "--worker-image", IMAGE, "-n", "0"], out=io.StringIO()) == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"DOCKER_HOST=unix://{tmp_path}/no-engine.sock" in err and "ci.engine up" in err


# -- real engine -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image() -> str:
    """The reference worker image on a reachable engine, or SKIP (FAIL where one is required) saying what is missing."""
    try:
        container.check_image(IMAGE)
    except container.ContainerEngineError as err:
        if os.environ.get("SNAKEPIT_CONTRACT_REQUIRE_ENGINE") == "1":
            pytest.fail(f"no engine or no image: {err}")
        pytest.skip(f"no engine or no image: {err}")
    return IMAGE


def _containers(label: str) -> list[dict[str, Any]]:
    """The engine's list entries (Id, Labels, State): no per-container reads that a concurrent removal would fail."""
    engine = container.client()
    try:
        found: list[dict[str, Any]] = engine.api.containers(all=True, filters={"label": label})
        return found
    finally:
        engine.close()


@pytest.fixture
def host() -> Iterator[HostEmulator]:
    with HostEmulator(SNAKEPIT_0_13) as emulator:
        yield emulator


def test_container_worker_starts_answers_and_stops_on_sigterm(image: str, host: HostEmulator) -> None:
    """Ensure a container of the image gets ready (file on the bind mount), answers Ping on 127.0.0.1,
    carries the run and owner labels, exits 0 on SIGTERM to its PID 1 within the grace, and is removed."""
    spec = dataclasses.replace(_container_spec(), elixir_address=host.elixir_address_for_worker, image=image)
    with WorkerProcess(spec) as worker:
        assert worker.container is not None and worker.client is not None and worker.ready_file is not None
        assert worker.client.ping("from the host", timeout=5) is not None
        labelled = _containers(f"{container.OWNER_LABEL}={container.owner_identity()}")
        assert [c["Id"][:12] for c in labelled] == [worker.container.id]
        assert labelled[0]["Labels"][container.RUN_LABEL] == container.run_label()
        assert (processes.command_line(worker.pid) or [])[:3] == ["python3", "-m", "reference_worker"]
        assert not worker.process_group  # the engine stops a container as a whole
        result = worker.stop()
    assert (result.exit_status, result.killed) == (0, False)
    assert not _containers(f"{container.OWNER_LABEL}={container.owner_identity()}")


def test_container_output_and_line_readiness(image: str) -> None:
    """Ensure Snakepit 0.6's GRPC_READY line arrives through the container's log stream, with the exit status."""
    profile = dataclasses.replace(SNAKEPIT_0_6, heartbeat=False)
    with HostEmulator(profile) as emulator:
        spec = dataclasses.replace(_container_spec(profile), elixir_address=emulator.elixir_address_for_worker)
        worker = WorkerProcess(spec)
        with worker:
            assert worker.ready_file is None and worker.port is not None
            assert worker.output is not None and f"GRPC_READY:{worker.port}" in worker.output.text()
        assert worker.stop_result is not None and worker.stop_result.exit_status == 0


def test_container_stdin_eof_ends_the_worker(image: str, host: HostEmulator) -> None:
    """Ensure closing the attached stdin is an EOF for PID 1: the reference worker leaves as orphaned (70)."""
    spec = dataclasses.replace(_container_spec(), elixir_address=host.elixir_address_for_worker)
    with WorkerProcess(spec) as worker:
        worker.detach_snakepit_side()
        worker.close_stdin()
        assert worker.wait_exit(10) == 70


def test_container_killed_when_sigterm_is_ignored(image: str, host: HostEmulator) -> None:
    """Ensure a PID 1 that does not leave on SIGTERM is SIGKILLed after the grace, exit code 137 (128+9)."""
    spec = dataclasses.replace(_container_spec(), elixir_address=host.elixir_address_for_worker)
    with WorkerProcess(spec) as worker:
        worker.send_signal(signal.SIGSTOP)  # a stopped PID 1 cannot act on SIGTERM
        result = worker.stop(grace_s=0.5)
    assert result.killed and result.exit_status == 128 + signal.SIGKILL


def test_container_removed_by_someone_else_is_no_exit(image: str, host: HostEmulator) -> None:
    """Ensure a container removed under the suite (another run's cleanup) is a harness error, never a worker's exit
    that a clause such as PROC-014 would take for the expected one."""
    spec = dataclasses.replace(_container_spec(), elixir_address=host.elixir_address_for_worker)
    with WorkerProcess(spec) as worker:
        assert worker.container is not None
        engine = container.client()
        engine.api.remove_container(worker.container.id, force=True)
        engine.close()
        with pytest.raises(HarnessError, match="removed by another process"):
            worker.wait_exit(10)


def test_sweep_removes_only_containers_of_dead_owners(image: str) -> None:
    """Ensure the start-of-run sweep removes a crashed run's containers, and keeps a live owner's and those of
    another tool (run label, no owner: ci.engine's own checks)."""
    engine = container.client()
    dead = subprocess.Popen(["true"])
    dead.wait()
    owners = {"dead": f"{processes.boot_id()}/{dead.pid}/1", "live": container.owner_identity()}
    made = {name: engine.containers.create(image, labels={container.RUN_LABEL: "sweep-test",
                                                          container.OWNER_LABEL: owner})
            for name, owner in owners.items()}
    made["other tool's"] = engine.containers.create(image, labels={container.RUN_LABEL: "sweep-test"})
    try:
        container.sweep_orphans()
        left = {c["Id"] for c in _containers(f"{container.RUN_LABEL}=sweep-test")}
        assert left == {made["live"].id, made["other tool's"].id}
    finally:
        container.remove_containers(f"{container.RUN_LABEL}=sweep-test")
        engine.close()


def _suite(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A suite run against the image whose PROC-012 check keeps a container up for a few seconds; its temp files
    go to tmp_path/tmp, where a SIGKILLed run's leftovers stay the test's own."""
    (tmp_path / "tmp").mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "--profile", "snakepit-0.13",
         "--worker-image", IMAGE, "--only", "PROC-012", str(REPO / "contract_tests" / "clauses" / "test_process.py")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})


def _owned_by(pid: int) -> list[dict[str, Any]]:
    return [c for c in _containers(container.RUN_LABEL)
            if c["Labels"].get(container.OWNER_LABEL, "").split("/")[1:2] == [str(pid)]]


def _wait_for_container(run: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not _owned_by(run.pid):
        assert run.poll() is None and time.monotonic() < deadline, "the suite never started a container"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_removes_its_containers(image: str, tmp_path: Path, sig: signal.Signals) -> None:
    """Ensure Ctrl-C (SIGINT) or a CI runner's SIGTERM mid-check still removes every container of the run."""
    run = _suite(tmp_path)
    try:
        _wait_for_container(run)
        run.send_signal(sig)
        run.wait(60)
        assert not _owned_by(run.pid)
        assert not list((tmp_path / "tmp").glob("snakepit-contract-*")), "the worker's temp dir outlived the run"
    finally:
        run.kill()
        run.wait()


def test_crashed_run_is_swept_by_the_next(image: str, tmp_path: Path) -> None:
    """Ensure the containers of a SIGKILLed run outlive it, and the next run's sweep removes them."""
    run = _suite(tmp_path)
    try:
        _wait_for_container(run)
        run.kill()
        run.wait()
        assert _owned_by(run.pid), "a SIGKILLed run cannot clean up: its container must still be there"
        container.sweep_orphans()
        assert not _owned_by(run.pid)
    finally:
        run.kill()
        run.wait()


def test_bench_measures_an_image(image: str, tmp_path: Path) -> None:
    """Ensure `bench --worker-image` measures containers of the image next to the local baselines, and says so."""
    done = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "bench", "--worker-image", image, "--calls", "20", "--warmup", "0",
         "--repeat", "1", "--launches", "1", "--stream-chunks", "50", "--stream-runs", "1", "--payload-calls", "1",
         "--payload-50mib-calls", "0", "--pool-calls", "0", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == errors.EXIT_CONFORMANT, done.stdout + done.stderr
    worker = json.loads((tmp_path / "bench.json").read_text())["targets"]["worker"]
    assert worker["image"] == image and worker["command"] == [] and worker["summary"]["calls_per_s"]


@pytest.fixture(scope="module")
def mutant_image(image: str) -> Iterator[Callable[[str], str]]:
    """Images of fixtures/mutants/<name>.py: the reference image with the mutants copied in and that mutant as
    its ENTRYPOINT (committed from a container, no build, no network); removed afterwards, and those of a dead
    test process (they keep the owner label of the container they were committed from) before."""
    engine = container.client()
    for old in engine.images.list(name=MUTANT_REPOSITORY):
        if container.owner_is_gone(old.labels.get(container.OWNER_LABEL, ""), running=False):
            with contextlib.suppress(docker.errors.APIError):
                engine.images.remove(old.id, force=True)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(MUTANT_DIR, arcname="mutants", filter=lambda info: None if "__pycache__" in info.name else info)
    made: dict[str, str] = {}

    def make(name: str) -> str:
        if name in made:
            return made[name]
        repository, tag = MUTANT_REPOSITORY, f"{name.replace('_', '-')}-{RUN_TAG[:8]}"
        box = engine.containers.create(image, labels={container.RUN_LABEL: container.run_label(),
                                                      container.OWNER_LABEL: container.owner_identity()})
        try:
            box.put_archive("/", archive.getvalue())
            box.commit(repository=repository, tag=tag,
                       changes=[f'ENTRYPOINT ["python3", "/mutants/{name}.py"]', "LABEL snakepit-contract.run="])
        finally:
            box.remove(force=True)
        made[name] = f"{repository}:{tag}"
        return made[name]

    yield make
    for tag in made.values():
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(tag, force=True)
    engine.close()


# Mutants whose defect cannot be shipped as an image, and why (the defect, not the clause, is the obstacle).
_NOT_AN_IMAGE = {
    "fails_to_restart": "counts its starts in a file under /tmp, and every container has its own /tmp",
}


def _process_mutants() -> list[Any]:
    """Every worker mutant of a PROC or CLEANUP clause: (name, its first profile, its targets, its timeout scale)."""
    params = []
    for mutant in json.loads((MUTANT_DIR / "catalogue.json").read_text())["mutants"]:
        name, profile, targets = mutant["name"], mutant["profiles"][0], tuple(mutant["targets"])
        if mutant.get("kind", "worker") != "worker" or not any(t.startswith(("PROC-", "CLEANUP-")) for t in targets):
            continue
        skip = [pytest.mark.skip(reason=_NOT_AN_IMAGE[name])] if name in _NOT_AN_IMAGE else []
        params.append(pytest.param(name, profile, targets, mutant.get("timeout_scale", 1.0), id=f"{name}-{profile}",
                                   marks=skip))
    return params


def test_container_that_exits_at_once_reports_status_and_output(mutant_image: Callable[[str], str],
                                                                 host: HostEmulator) -> None:
    """Ensure a worker that dies before its pid can be read still yields its exit status and output (a start error
    with evidence), as a local process does."""
    spec = dataclasses.replace(_container_spec(), elixir_address=host.elixir_address_for_worker,
                               image=mutant_image("rejects_unknown_flags"), extra_args=["--snakepit-future-flag"])
    with pytest.raises(WorkerStartError) as caught, WorkerProcess(spec):
        pass
    assert caught.value.exit_status == 2 and "unrecognized arguments: --snakepit-future-flag" in str(caught.value)


def _not_in_container(clause_id: str) -> bool:
    """Whether the clause's checks carry the not_in_container marker (NOT-RUN with an image)."""
    cli.load_clauses()
    for name in TESTS[clause_id]:
        module, function = name.rsplit(".", 1)
        marks = getattr(getattr(importlib.import_module(module), function), "pytestmark", [])
        if any(mark.name == "not_in_container" for mark in marks):
            return True
    return False


@pytest.mark.parametrize(("mutant", "profile", "targets", "scale"), _process_mutants())
def test_process_mutant_images_are_caught(mutant_image: Callable[[str], str], tmp_path: Path, mutant: str,
                                          profile: str, targets: tuple[str, ...], scale: float) -> None:
    """Ensure every PROC/CLEANUP mutant of fixtures/mutants, shipped as an image, FAILs its clauses in a container,
    except those a container cannot judge: NOT-RUN there, never PASS."""
    run = subprocess.run(
        [sys.executable, "-m", "contract_tests.cli", "run", "--worker-image", mutant_image(mutant), "--only",
         ",".join(targets), "--profile", profile, "--level", "all", "-n", "0", "--timeout-scale", str(scale),
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "conformance.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in report["clauses"]}
    assert outcomes == {t: "NOT-RUN" if _not_in_container(t) else "FAIL" for t in targets}, run.stdout[-3000:]
    caught = any(outcome == "FAIL" for outcome in outcomes.values())
    assert run.returncode == (errors.EXIT_NOT_CONFORMANT if caught else errors.EXIT_HARNESS), run.stdout[-3000:]
