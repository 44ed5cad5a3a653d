"""Worker instances as containers of an image: the containers tier (docs/worker-image.md).

One container per worker, created through testcontainers' client on the host network, with the image's
ENTRYPOINT followed by Snakepit's flags as its command and only Snakepit's variables added to the image's
environment. The worker's private folder (its ready file) is bind-mounted at the same path. Its stdin, stdout
and stderr are attached before it starts, so no output is lost and write boundaries stay as a BEAM Port sees
them. ContainerProcess answers like subprocess.Popen, so readiness, handshake and stop stay the launcher's own:
signals go to the container's PID 1 through the engine and the exit status is the container's.

The testcontainers reaper cannot run here (its image cannot be pulled), so every container carries the run's
label and its owner process's identity: the suite removes its own at the end and on Ctrl-C, and removes those
of dead owners (a crashed or SIGKILLed run) when it starts.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Read by testcontainers at import: no reaper, and the engine at DOCKER_HOST reached as given (no guessed
# gateway address: this machine has a /.dockerenv file that would make testcontainers guess one).
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"
os.environ["TC_HOST"] = "127.0.0.1"

# testcontainers' own client library, for what its containers do not wrap (attach, kill, labels).
import docker
import docker.errors
from docker.utils.socket import frames_iter
from testcontainers.core.docker_client import DockerClient

from contract_tests.driver import processes
from contract_tests.driver.ownership import owner_identity as owner_identity
from contract_tests.driver.ownership import owner_is_gone as owner_is_gone
from contract_tests.driver.run_tag import RUN_TAG, RUN_TAG_ENV
from contract_tests.errors import HarnessError

RUN_LABEL = "snakepit-contract.run"
RUN_LABEL_ENV = "SNAKEPIT_CONTRACT_CONTAINER_RUN"  # set by the run's first process, inherited by its xdist workers
OWNER_LABEL = "snakepit-contract.owner"
ENGINE_HELP = ("set DOCKER_HOST to a running engine's socket; from a checkout, `python -m ci.engine up` starts one "
               "and prints it, and `python -m ci.engine build` builds the images (docs/containers.md)")
# Docker reports a death by signal N as exit code 128+N, as a shell does.
_SIGNAL_EXIT_BASE = 128
_EXEC_WAIT_S = 5.0


class ContainerEngineError(Exception):
    """No engine, or no such image: the run cannot judge a worker image."""


def claim_run_label() -> None:
    """Make this process's run tag the run's label: called by the xdist controller (or the only process) before
    its workers start, so a run started from inside another run does not share, and remove, that run's containers."""
    os.environ[RUN_LABEL_ENV] = RUN_TAG


def run_label() -> str:
    """Shared by every xdist worker of one run, so the whole run's containers can be found."""
    return os.environ.get(RUN_LABEL_ENV) or RUN_TAG


def client() -> docker.DockerClient:
    """testcontainers' client of the engine at DOCKER_HOST; ContainerEngineError with what to do when none answers."""
    try:
        engine: docker.DockerClient = DockerClient(timeout=20).client
        engine.ping()
    except docker.errors.DockerException as err:
        where = os.environ.get("DOCKER_HOST", "unset (the default socket)")
        raise ContainerEngineError(f"no container engine answers at DOCKER_HOST={where}: {err}; "
                                   f"{ENGINE_HELP}") from None
    return engine


def check_image(image: str) -> None:
    """The engine answers and holds the image (nothing is pulled: no registry is reachable here)."""
    if not processes.LINUX:
        raise ContainerEngineError(
            "the containers tier needs Linux: the checks watch each container's processes as processes of this "
            "machine, and Docker Desktop runs them in a VM (docs/worker-image.md)")
    engine = client()
    try:
        engine.images.get(image)
    except docker.errors.ImageNotFound:
        raise ContainerEngineError(
            f"image {image!r} is not in the engine at DOCKER_HOST={os.environ.get('DOCKER_HOST')}; "
            "build it first (from a checkout: `python -m ci.engine build`, docs/containers.md)") from None
    finally:
        engine.close()


def _labelled(engine: docker.DockerClient, label: str) -> list[dict[str, Any]]:
    """The engine's list entries (Id, Labels, State) of the containers carrying the label; no per-container reads,
    so one removed meanwhile by another process is no error."""
    found: list[dict[str, Any]] = engine.api.containers(all=True, filters={"label": label})
    return found


def _remove(engine: docker.DockerClient, entry: dict[str, Any]) -> str | None:
    try:
        engine.api.remove_container(entry["Id"], force=True)
    except docker.errors.APIError as err:
        if err.status_code in (404, 409):  # gone, or being removed: by its owner meanwhile
            return None
        raise
    return str(entry["Id"])[:12]


def remove_containers(label: str) -> list[str]:
    """Force-remove every container carrying this label (`key` or `key=value`); their short ids."""
    with contextlib.suppress(ContainerEngineError), contextlib.closing(client()) as engine:
        return [short for entry in _labelled(engine, label) if (short := _remove(engine, entry))]
    return []


def remove_owned() -> list[str]:
    """This process's containers (session end, Ctrl-C, exit)."""
    return remove_containers(f"{OWNER_LABEL}={owner_identity()}")


def remove_run() -> list[str]:
    """Every container of this run, whichever xdist worker started it (end of the controller's session)."""
    return remove_containers(f"{RUN_LABEL}={run_label()}")


def sweep_orphans() -> list[str]:
    """Remove the containers of runs whose owner process is dead (a crashed or SIGKILLed run). Only the suite's
    own: other tools' containers may carry the run label too, but never an owner."""
    with contextlib.closing(client()) as engine:
        return [short for entry in _labelled(engine, OWNER_LABEL)
                if owner_is_gone(entry["Labels"][OWNER_LABEL], entry.get("State") == "running")
                and (short := _remove(engine, entry))]


class _Stdin:
    """The container's stdin, attached and kept open; closing it is the EOF the BEAM's dying port gives."""

    def __init__(self, raw: socket.socket) -> None:
        self._socket = raw

    def close(self) -> None:
        # A half-close ends stdin only (StdinOnce: the engine closes PID 1's stdin); the output keeps coming.
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_WR)


class ContainerProcess:
    """One worker container, seen through the part of subprocess.Popen's interface the launcher uses."""

    def __init__(self, image: str, argv: Sequence[str], env: dict[str, str], shared_dir: Path, output_fd: int) -> None:
        """Start the container; its merged stdout+stderr is copied into output_fd, which this object then owns."""
        self.args = [image, *argv]
        self.returncode: int | None = None
        self._exited = threading.Event()
        self._removing = False
        self._vanished = False  # removed by someone else while it ran: its "exit" says nothing about the worker
        # testcontainers' client, not DockerContainer: that one starts at once, and the streams must be attached
        # before the worker runs. No client timeout: the engine's default (60 s) would cut a quiet worker's streams.
        self._client = DockerClient(timeout=None)
        self._wrapped: Any = None
        self._socket: socket.socket | None = None
        try:
            wrapped = self._client.create(
                image, command=list(argv), environment=env,
                labels={RUN_LABEL: run_label(), OWNER_LABEL: owner_identity()},
                network_mode="host",
                volumes={os.fspath(shared_dir): {"bind": os.fspath(shared_dir), "mode": "rw"}},
                stdin_open=True,  # docker's client then sets StdinOnce too: PROC-014 needs a stdin it can close
            )
            self._wrapped = wrapped
            attached = wrapped.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._socket = attached._sock  # raw, under docker's SocketIO: nothing is buffered before the start
            self.stdin: _Stdin | None = _Stdin(attached._sock)
            wrapped.start()
            wrapped.reload()
            self.id: str = wrapped.short_id
            threading.Thread(target=self._copy_output, args=(attached._sock, output_fd), name="container-output",
                             daemon=True).start()
            output_fd = -1  # the thread owns it now
            self.pid: int = self._host_pid(wrapped, env)
        except BaseException:
            if output_fd >= 0:
                os.close(output_fd)
            self.remove()
            raise
        threading.Thread(target=self._wait, args=(wrapped,), name="container-wait", daemon=True).start()

    @staticmethod
    def _host_pid(wrapped: Any, env: dict[str, str]) -> int:
        """PID 1's pid on this host, where pool and clauses inspect processes; never 0 (kill(0) hits our own group)."""
        pid = int(wrapped.attrs["State"]["Pid"])
        if pid == 0:
            # Already exited (the engine reports no pid): a pid no process can have, so every signal and
            # lookup finds it gone, while its exit status and output reach the launcher as usual.
            return processes.impossible_pid()
        # Until the runtime's init execs the image's command, the pid shows the runtime's environment.
        tag = env[RUN_TAG_ENV]
        deadline = time.monotonic() + _EXEC_WAIT_S
        while not (visible := processes.environment_value(pid, RUN_TAG_ENV) == tag) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not visible:
            raise ContainerEngineError(
                f"the container's PID 1 is not process {pid} of this machine: the engine at DOCKER_HOST="
                f"{os.environ.get('DOCKER_HOST')} runs elsewhere or in another PID namespace; the containers tier "
                "needs a local engine (docs/worker-image.md)")
        return pid

    @staticmethod
    def _copy_output(attached: socket.socket, output_fd: int) -> None:
        """stdout and stderr frames, in the order and chunks the worker wrote them, into one pipe like a Port's."""
        try:
            for _stream, chunk in frames_iter(attached, tty=False):
                os.write(output_fd, chunk)
        except OSError:
            pass  # the socket closed under us: the output ends here
        finally:
            os.close(output_fd)

    def _wait(self, wrapped: Any) -> None:
        try:
            self.returncode = int(wrapped.wait()["StatusCode"])
            self._vanished = not self._removing and self._gone(wrapped)
        except (docker.errors.DockerException, ConnectionError):
            self.returncode = _SIGNAL_EXIT_BASE + signal.SIGKILL  # removed by force: it was killed
            self._vanished = not self._removing
        finally:
            self._exited.set()

    @staticmethod
    def _gone(wrapped: Any) -> bool:
        try:
            wrapped.reload()
        except docker.errors.NotFound:
            return True
        return bool(wrapped.status == "removing")

    def poll(self) -> int | None:
        return self.returncode if self._exited.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; HarnessError if the container was removed under the suite (an exit the worker never made)."""
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        if self._vanished:
            raise HarnessError(f"container {self.id} was removed by another process while its worker ran "
                               "(another run's cleanup?); its end says nothing about the worker")
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal PID 1 through the engine, as `docker kill --signal` does."""
        if self.poll() is not None:
            return
        with contextlib.suppress(docker.errors.APIError):  # it exited meanwhile
            self._wrapped.kill(signal=int(sig))

    def remove(self) -> None:
        """Force-remove the container (its processes die with it) and close the engine client."""
        self._removing = True
        if self._wrapped is not None:
            with contextlib.suppress(docker.errors.DockerException, ConnectionError):
                self._wrapped.remove(force=True)
        if self._socket is not None:
            self._socket.close()
        self._client.client.close()


atexit.register(remove_owned)
