"""Self-tests of the launcher and readiness waits: argv, env, failures, shutdown, reaping."""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from contract_tests.contract.profiles import SNAKEPIT_0_6, SNAKEPIT_0_13, Profile
from contract_tests.driver import processes
from contract_tests.driver.launcher import WorkerProcess, WorkerSpec, new_run_id, reap_tagged
from contract_tests.driver.readiness import ReadyFileWait, ReadyLineWait
from contract_tests.driver.run_tag import RUN_TAG, RUN_TAG_ENV
from contract_tests.errors import WorkerStartError

FAST_06 = dataclasses.replace(SNAKEPIT_0_6, readiness_timeout_s=1.0, shutdown_grace_s=0.5)
FAST_013 = dataclasses.replace(SNAKEPIT_0_13, readiness_timeout_s=1.0, shutdown_grace_s=0.5, heartbeat=False,
                               initializes_worker_session=False, opens_telemetry_stream=False)


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def _spec(command: list[str], profile: Profile = FAST_013) -> WorkerSpec:
    return WorkerSpec(command=command, profile=profile, elixir_address="127.0.0.1:1")


def test_argv_appends_snakepit_flags_in_order() -> None:
    """Ensure Snakepit's flags follow the worker's own args in Snakepit's order (snakepit: launch-argv)."""
    spec = dataclasses.replace(_spec(["w", "--adapter", "x"]), run_id="abc1234", instance_token="t")
    assert spec.build_argv() == [
        "w", "--adapter", "x", "--port", "0", "--elixir-address", "127.0.0.1:1", "--snakepit-run-id", "abc1234",
        "--snakepit-instance-name", spec.instance_name, "--snakepit-instance-token", "t",
    ]
    assert "--snakepit-instance-name" not in _spec(["w"], FAST_06).build_argv()


def test_port_flag_skipped_when_any_arg_contains_it() -> None:
    """Ensure the substring rule of maybe_add_arg is kept (snakepit: launch-argv)."""
    argv = _spec(["w", "--port-range=1"]).build_argv()
    assert "--port" not in argv and argv.count("--snakepit-run-id") == 1


def test_env_per_profile() -> None:
    """Ensure 0.13 sets its ready file, process group and heartbeat config; 0.6 none of them."""
    env13 = dataclasses.replace(_spec(["w"]), profile=SNAKEPIT_0_13).build_env(Path("/tmp/ready"))
    assert env13["SNAKEPIT_READY_FILE"] == "/tmp/ready" and env13["SNAKEPIT_PROCESS_GROUP"] == "1"
    assert '"interval_ms": 2000' in env13["SNAKEPIT_HEARTBEAT_CONFIG"]
    env06 = _spec(["w"], FAST_06).build_env(None)
    assert not {"SNAKEPIT_READY_FILE", "SNAKEPIT_PROCESS_GROUP", "SNAKEPIT_HEARTBEAT_CONFIG"} & set(env06)
    assert env06[RUN_TAG_ENV] == RUN_TAG and env06["PYTHONUNBUFFERED"] == "1"


def test_run_id_is_seven_base36_chars() -> None:
    """Ensure run ids match Snakepit's extraction regex [0-9a-z]{7}."""
    for _ in range(50):
        run_id = new_run_id()
        assert len(run_id) == 7 and run_id.isalnum() and run_id == run_id.lower()


def test_ready_line_parsing_like_snakepit_06() -> None:
    """Ensure the first marked line of a chunk is parsed, anywhere in the line."""
    assert ReadyLineWait.parse_chunk(b"log line\n2025 - INFO - GRPC_READY:43211\n") == 43211
    assert ReadyLineWait.parse_chunk(b"no marker here\n") is None
    assert ReadyLineWait.parse_chunk(b"GRPC_READY:") is None


def test_ready_file_parsing_like_integer_parse(tmp_path: Path) -> None:
    """Ensure leading digits count and empty or junk files mean 'not ready yet'."""
    wait = ReadyFileWait(tmp_path / "ready", 1.0)
    assert wait.read_port() is None
    for content, port in ((b"", None), (b"abc", None), (b"4321\n", 4321), (b" 55 trailing", 55)):
        wait.path.write_bytes(content)
        assert wait.read_port() == port


def test_exit_before_ready_fails_at_once_with_status_and_output(tmp_path: Path) -> None:
    """Ensure a worker that dies during startup is reported at once with its status and last output."""
    # At once: on its exit, not at the readiness timeout, which is long here so that no load can reach it first.
    patient = dataclasses.replace(FAST_013, readiness_timeout_s=120.0)
    worker = WorkerProcess(_spec(_script(tmp_path, "import sys; print('cannot start: no config'); sys.exit(3)"),
                                 patient))
    started = time.monotonic()
    with pytest.raises(WorkerStartError) as caught, worker:
        pass
    assert caught.value.step == "exit" and time.monotonic() - started < patient.readiness_timeout_s / 2
    assert caught.value.exit_status == 3 and "cannot start: no config" in caught.value.output_tail


@pytest.mark.parametrize("profile", [FAST_06, FAST_013], ids=lambda p: p.name)
def test_silent_worker_times_out_with_hint(tmp_path: Path, profile: Profile) -> None:
    """Ensure a worker that never signals readiness fails after the profile's deadline, with a hint."""
    worker = WorkerProcess(_spec(_script(tmp_path, "import time; time.sleep(30)"), profile))
    with pytest.raises(WorkerStartError, match="Hint"), worker:
        pass
    assert worker.poll() is not None  # killed by the launcher, not left behind


def test_sigterm_ignorer_is_killed_after_grace(tmp_path: Path) -> None:
    """Ensure stop() escalates to SIGKILL after the grace period and says so."""
    body = """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(os.environ["SNAKEPIT_READY_FILE"], "w").write("1")
        time.sleep(30)
    """
    worker = WorkerProcess(_spec(_script(tmp_path, body)))
    worker.spawn()
    assert worker.wait_ready() == 1
    result = worker.stop()
    assert result.killed and result.exit_status == -9 and 0.4 < result.elapsed_s < 3


def test_reaper_kills_tagged_strays(tmp_path: Path) -> None:
    """Ensure a grandchild that outlived its worker is found by its run tag and killed."""
    pid_file = tmp_path / "grandchild.pid"
    body = f"""
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        open({str(pid_file)!r}, "w").write(str(child.pid))
    """
    worker = WorkerProcess(_spec(_script(tmp_path, body)))
    worker.spawn()
    assert worker.wait_exit(10) == 0
    stray = int(pid_file.read_text())
    assert stray in reap_tagged()
    deadline = time.monotonic() + 5
    while processes.alive(stray) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.alive(stray)
    worker.stop()
    assert not os.path.exists(worker.tmp_dir)
