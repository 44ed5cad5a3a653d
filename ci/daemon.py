"""A private Docker daemon in its own state directory: adopt a running one, start one, stop only our own.

Everything lives under one directory (default /var/tmp/snakepit-contract-engine, or
$SNAKEPIT_CONTRACT_ENGINE_DIR): docker.sock, root/ (data-root), exec/ (exec-root), dockerd.pid, dockerd.log.
A daemon this module starts is recorded in started-by-bootstrap.json; a daemon running without that record
(for instance one started by hand) is used but never stopped.

Linux only, by nature: dockerd, its mounts and `umount` are Linux's, and the containers tier needs the containers'
processes to be this kernel's. It reads /proc itself rather than through contract_tests/driver/processes.py (psutil)
because it runs under the machine's python3 before any environment with the kit's dependencies exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_ENV = "SNAKEPIT_CONTRACT_ENGINE_DIR"
DEFAULT_STATE_DIR = Path("/var/tmp/snakepit-contract-engine")
# overlay2 starts containers in ~0.1 s; vfs works everywhere but takes seconds per container.
STORAGE_DRIVERS = ("overlay2", "vfs")
# Every container the project starts carries this label key (value: its run id); `down` removes them all.
RUN_LABEL = "snakepit-contract.run"
# sun_path in struct sockaddr_un, terminating NUL included; containerd's sockets live under the exec-root.
UNIX_SOCKET_PATH_MAX = 108


class EngineUnavailable(RuntimeError):
    """No Docker engine can run here; the containers tier cannot run (NOT-RUN, never PASS)."""


@dataclass(frozen=True)
class EngineDir:
    """The paths of one private engine."""

    root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EngineDir:
        return cls(Path(env.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR))

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def data_root(self) -> Path:
        return self.root / "root"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def ownership(self) -> Path:
        return self.root / "started-by-bootstrap.json"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


def dockerd_argv(engine: EngineDir, storage_driver: str) -> list[str]:
    """dockerd on its own socket, with no bridge and no iptables rules (containers use --network host)."""
    return [
        "dockerd",
        f"--storage-driver={storage_driver}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--data-root", str(engine.data_root),
        "--exec-root", str(engine.exec_root),
        "--pidfile", str(engine.pidfile),
        "-H", engine.docker_host,
    ]  # fmt: skip


def docker_env(engine: EngineDir, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment for docker commands against this engine (legacy builder: no buildx plugin here)."""
    return {**env, "DOCKER_HOST": engine.docker_host, "DOCKER_BUILDKIT": "0"}


def engine_answers(engine: EngineDir, timeout: float = 10.0) -> bool:
    """Whether a daemon answers on the engine's socket."""
    if not engine.socket.exists() or shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=docker_env(engine), capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


@dataclass(frozen=True)
class Ownership:
    """What the bootstrap recorded about a daemon it started."""

    pid: int
    storage_driver: str
    started_at: float


def read_ownership(engine: EngineDir) -> Ownership | None:
    """The record of a daemon the bootstrap started that is still that process, else None."""
    try:
        record = json.loads(engine.ownership.read_text(encoding="utf-8"))
        owned = Ownership(int(record["pid"]), str(record["storage_driver"]), float(record["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return owned if is_dockerd_of(owned.pid, engine) else None


def write_ownership(engine: EngineDir, owned: Ownership) -> None:
    record = {"pid": owned.pid, "storage_driver": owned.storage_driver, "started_at": owned.started_at}
    engine.ownership.write_text(json.dumps(record) + "\n", encoding="utf-8")


def is_dockerd_of(pid: int, engine: EngineDir) -> bool:
    """Whether pid is a live dockerd serving this engine's socket (guards against reused pids)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and Path(os.fsdecode(argv[0])).name == "dockerd" and os.fsencode(engine.docker_host) in argv


def running_pid(engine: EngineDir) -> int | None:
    """The pid of a live dockerd of this engine per its pidfile, answering or not, whoever started it."""
    try:
        pid = int(engine.pidfile.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if is_dockerd_of(pid, engine) and _alive(pid) else None


def start(
    engine: EngineDir, drivers: Sequence[str] = STORAGE_DRIVERS, ready_timeout: float = 60.0
) -> Ownership:
    """Start dockerd with the first storage driver that works, and record it as ours."""
    longest = engine.exec_root / "containerd" / "containerd.sock.ttrpc"
    if len(os.fsencode(longest)) >= UNIX_SOCKET_PATH_MAX:
        raise ValueError(f"the engine directory {engine.root} is too long: its sockets (e.g. {longest}) exceed "
                         f"the {UNIX_SOCKET_PATH_MAX - 1}-byte socket path limit; choose a shorter {STATE_DIR_ENV}")
    for path in (engine.root, engine.data_root, engine.exec_root):
        path.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for driver in drivers:
        with engine.log.open("ab") as log:
            process = subprocess.Popen(
                dockerd_argv(engine, driver), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the caller's terminal must not reach the daemon directly
            )  # fmt: skip
        # Recorded at once, so that `down` can stop it even if this start is interrupted.
        owned = Ownership(process.pid, driver, time.time())
        write_ownership(engine, owned)
        deadline = time.monotonic() + ready_timeout
        while process.poll() is None and time.monotonic() < deadline:
            if engine_answers(engine, timeout=5.0):
                return owned
            time.sleep(0.2)
        if process.poll() is None:
            _terminate(process.pid)
            process.wait()
        engine.ownership.unlink(missing_ok=True)
        unmount_leftovers(engine)
        failures.append(f"{driver}: exit {process.returncode}; log: {_log_tail(engine)}")
    raise EngineUnavailable("dockerd did not start here:\n  " + "\n  ".join(failures))


def stop(engine: EngineDir, grace: float = 30.0) -> bool:
    """Stop the daemon only if the bootstrap started it; True when one was stopped."""
    owned = read_ownership(engine)
    if owned is None:
        return False
    _terminate(owned.pid, grace)
    engine.ownership.unlink(missing_ok=True)
    return True


def _terminate(pid: int, grace: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a daemon we started may be our own unreaped child)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def wipe(engine: EngineDir) -> None:
    """Remove a stopped engine's state (images, layers, socket, logs), unmounting what the daemon left mounted."""
    if engine_answers(engine, timeout=5.0) or running_pid(engine) is not None:
        raise RuntimeError(f"a dockerd still runs on {engine.root}; stop it first")
    unmount_leftovers(engine)
    mounted = mounts_under(engine.root)
    if mounted:
        raise RuntimeError(f"still mounted under {engine.root}: {', '.join(mounted[:5])}")
    shutil.rmtree(engine.root)


def unmount_leftovers(engine: EngineDir) -> None:
    """Unmount what a dead dockerd left under its state directory (its netns, a private data-root), deepest first."""
    for point in sorted(mounts_under(engine.root), key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)


def mounts_under(root: Path, mountinfo: Path = Path("/proc/self/mounts")) -> list[str]:
    prefix = str(root.resolve()) + "/"
    points = (line.split()[1] for line in mountinfo.read_text(encoding="utf-8").splitlines() if line.strip())
    return [point for point in points if (point + "/").startswith(prefix)]


def _log_tail(engine: EngineDir, lines: int = 5) -> str:
    try:
        text = engine.log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:]) or "(empty log)"


def remove_labelled_containers(engine: EngineDir) -> int:
    """Remove every container carrying the project's run label on this engine; returns how many."""
    listed = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label={RUN_LABEL}"],
        env=docker_env(engine), capture_output=True, text=True, check=True,
    )  # fmt: skip
    ids = listed.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "--force", *ids], env=docker_env(engine), capture_output=True, check=True)
    return len(ids)
