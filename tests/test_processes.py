"""Self-tests of contract_tests/driver/processes.py, the one place the kit inspects processes, and of the kit's runs
without what only Linux gives (another process's environment): the closest this machine comes to macOS."""

from __future__ import annotations

import ast
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from contract_tests.driver import processes

ROOT = Path(__file__).resolve().parent.parent
# Says when its Python runs: until then, right after exec, it is hardly a process yet (RSS below 1 MiB).
SLEEPER = [sys.executable, "-c", "import time; print('sleeping', flush=True); time.sleep(60)"]


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def sleeper(marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """A live child in a process group of its own, carrying a marker in its environment."""
    with subprocess.Popen(SLEEPER, env={**os.environ, "PROCESSES_SELF_TEST": marker}, start_new_session=True,
                          stdout=subprocess.PIPE) as child:
        try:
            # Popen returns when exec has begun; argv, environment and memory are the child's own once it spoke.
            assert child.stdout is not None
            spoke, _, _ = select.select([child.stdout], [], [], 120)
            assert spoke and child.stdout.readline() == b"sleeping\n", "the sleeper never started"
            yield child
        finally:
            child.kill()


def test_liveness_groups_and_command_lines(sleeper: subprocess.Popen[bytes]) -> None:
    """Ensure a live process is alive, leads its group and shows its argv; a zombie and a reaped one are gone."""
    assert processes.alive(sleeper.pid)
    assert processes.group_members(sleeper.pid) == [sleeper.pid]
    assert processes.command_line(sleeper.pid) == SLEEPER
    sleeper.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.Process(sleeper.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not processes.alive(sleeper.pid)  # a zombie: dead, not yet reaped
    assert processes.group_members(sleeper.pid) == []
    assert processes.start_ticks(sleeper.pid) is None
    sleeper.wait()
    assert not processes.alive(sleeper.pid) and processes.command_line(sleeper.pid) is None


def test_start_ticks_name_one_process(sleeper: subprocess.Popen[bytes]) -> None:
    """Ensure the start time is stable for one process and tells two processes apart."""
    first = processes.start_ticks(sleeper.pid)
    assert first is not None and first.isdigit() and first == processes.start_ticks(sleeper.pid)
    assert processes.start_ticks(os.getpid()) not in (None, first)  # this process started long before


@pytest.mark.skipif(not processes.ENVIRONMENTS_READABLE, reason=processes.ENVIRONMENTS_HIDDEN)
def test_environments_find_the_marked_process(sleeper: subprocess.Popen[bytes], marker: str) -> None:
    """Ensure the environment sweep finds a process by a variable it carries, and only that process."""
    carriers = processes.environment_carriers("PROCESSES_SELF_TEST")
    assert {pid: value for pid, value in carriers.items() if value == marker} == {sleeper.pid: marker}
    assert processes.environment_value(sleeper.pid, "PROCESSES_SELF_TEST") == marker
    assert processes.environment_value(sleeper.pid, "PROCESSES_SELF_TEST_UNSET") is None


def test_hidden_environments_find_nothing(sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure that where environments are hidden the sweeps say nothing rather than guess."""
    monkeypatch.setattr(processes, "ENVIRONMENTS_READABLE", False)
    assert processes.environment_carriers("PROCESSES_SELF_TEST") == {}
    assert processes.environment_value(sleeper.pid, "PROCESSES_SELF_TEST") is None


@pytest.mark.parametrize("everything_listed", [True, False], ids=["all-sockets", "own-processes-only"])
def test_sockets_by_owner(monkeypatch: pytest.MonkeyPatch, everything_listed: bool) -> None:
    """Ensure a listening socket is found with its owner and port, whether the OS lists every socket (Linux) or
    only each of the user's own processes' (macOS without root), and a closed one is not."""
    if not everything_listed:
        def refuse(kind: str = "inet") -> list[object]:
            raise psutil.AccessDenied(pid=None)
        monkeypatch.setattr(psutil, "net_connections", refuse)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port in processes.listening_ports()
        assert processes.listening_owners(port) == {os.getpid()}
        assert port in processes.socket_ports([os.getpid()])
    assert port not in processes.listening_ports() and processes.listening_owners(port) == set()


def test_resources_of_a_live_process(sleeper: subprocess.Popen[bytes]) -> None:
    """Ensure RSS and CPU time are figures for a live process and None once it is gone."""
    rss, cpu = processes.rss_mib(sleeper.pid), processes.cpu_s(sleeper.pid)
    assert rss is not None and 1 < rss < 4096
    assert cpu is not None and cpu >= 0
    sleeper.kill()
    sleeper.wait()
    assert processes.rss_mib(sleeper.pid) is None and processes.cpu_s(sleeper.pid) is None
    assert not processes.alive(processes.impossible_pid())


# Calls and files only Linux has: on the path of a run they would fail on macOS.
_LINUX_ONLY_NAMES = frozenset({"prctl", "sched_getaffinity", "sched_setaffinity", "pipe2", "memfd_create", "eventfd",
                               "splice", "epoll", "SIGRTMIN", "SIGRTMAX", "SIGPWR", "SIGSTKFLT", "PR_SET_PDEATHSIG"})
# Where they may be, guarded by processes.LINUX or by running only in a Linux container.
_LINUX_ONLY_ALLOWED = {"contract_tests/driver/processes.py"}


def _linux_only_uses(path: Path) -> list[str]:
    """`line what` for each /proc or /sys path and each Linux-only name in one Python file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(("/proc", "/sys/")):
            found.append(f"{node.lineno} {node.value}")
        if isinstance(node, ast.Attribute) and node.attr in _LINUX_ONLY_NAMES:
            found.append(f"{node.lineno} {node.attr}")
        if isinstance(node, ast.Name) and node.id in _LINUX_ONLY_NAMES:
            found.append(f"{node.lineno} {node.id}")
    return found


def test_linux_only_calls_stay_in_processes_py() -> None:
    """Ensure no module of the kit or the reference worker reads /proc or /sys or calls what only Linux has,
    but processes.py, where each such use is guarded: the path of a run works on macOS too."""
    uses = {str(path.relative_to(ROOT)): hits
            for path in sorted([*(ROOT / "contract_tests").rglob("*.py"), *(ROOT / "reference_worker").rglob("*.py")])
            if (hits := _linux_only_uses(path))}
    assert set(uses) <= _LINUX_ONLY_ALLOWED, uses


@pytest.mark.parametrize("planted", ['open(f"/proc/{pid}/stat")', "os.sched_getaffinity(0)",
                                     "libc.prctl(1, signal.SIGKILL)", 'Path("/sys/fs/cgroup")', "signal.SIGRTMIN"])
def test_the_linux_only_scan_finds_a_planted_use(tmp_path: Path, planted: str) -> None:
    """Ensure the scan above can fail: one Linux-only use is found, on its line."""
    module = tmp_path / "module.py"
    module.write_text(f"import os\n{planted}\n")
    assert [hit.split(" ")[0] for hit in _linux_only_uses(module)] == ["2"]


# What a macOS run cannot see is switched off here: LINUX and ENVIRONMENTS_READABLE false, before the kit starts.
_WITHOUT_LINUX = ("from contract_tests.driver import processes; "
                  "processes.LINUX = processes.ENVIRONMENTS_READABLE = False; "
                  "from contract_tests.cli import main; raise SystemExit(main())")


def test_a_run_without_the_linux_only_parts_judges_the_rest_and_not_run_says_why(tmp_path: Path) -> None:
    """Ensure a run that cannot read other processes' environments (as on macOS) judges the process, socket and
    cleanup clauses as usual and reports CLEANUP-009 NOT-RUN with the reason: no verdict, never a wrong one."""
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LINUX, "run", "--only", "PROC-008,PROC-016,CLEANUP-004,CLEANUP-009",
         "--profile", "snakepit-0.13", "-n", "0", "--report-dir", str(tmp_path)],
        env={**os.environ, "TMPDIR": str(tmp_path)}, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-2000:]
    outcomes = {c["id"]: (c["outcome"], c["reason"])
                for c in json.loads((tmp_path / "conformance.json").read_text())["clauses"]}
    assert outcomes.pop("CLEANUP-009") == ("NOT-RUN", f"not run: {processes.ENVIRONMENTS_HIDDEN}"), run.stdout[-2000:]
    assert {outcome for outcome, _ in outcomes.values()} == {"PASS"}, outcomes
    assert set(outcomes) == {"PROC-008", "PROC-016", "CLEANUP-004"}


def test_the_containers_tier_refuses_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ensure --worker-image off Linux is a clear refusal before any engine is asked, not a run that misjudges."""
    container = pytest.importorskip("contract_tests.driver.container", reason="the containers extra is missing")
    monkeypatch.setattr(processes, "LINUX", False)
    with pytest.raises(container.ContainerEngineError, match="the containers tier needs Linux"):
        container.check_image("any/image:1")
