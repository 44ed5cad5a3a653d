"""Bootstrap: arguments, bind, readiness, signals, orphan defence; behaviour is in servicer.py and tools.py.

Orphan defence. Snakepit's own orphan sweep only recognises Python processes named `grpc_server.py`, so any
other worker must leave by itself once Snakepit is gone (docs/contract.md §1):

* stdin watcher: Snakepit's stdin is a pipe it never writes to, so EOF means the BEAM side closed it or died.
  Only a pipe or socket is watched (a tty or /dev/null says nothing about Snakepit); on EOF the worker stops
  gracefully and exits with status 70.
* dependent heartbeat (elixir.py): when an Elixir address is known, the worker sends Heartbeat to Elixir;
  once Elixir has answered and then misses `max_missed_heartbeats` in a row, the worker stops and exits 70.
  Before any answer, failures are tolerated for 60 s, since the Elixir side may start after the worker.

SIGTERM and SIGINT stop gracefully (1 s grace for in-flight calls) and exit 0, also when they arrive during an
orphan shutdown: being asked to stop is not a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import grpc

from .elixir import ElixirClient, heartbeat_watchdog, load_heartbeat_config
from .proto import snakepit_bridge_pb2_grpc as pb_grpc
from .servicer import MAX_MESSAGE, BridgeServicer
from .tools import WorkerState

_LOG = logging.getLogger("reference_worker")
EXIT_ORPHANED = 70  # EX_SOFTWARE: distinguishable from a clean stop (0) and from a crash.
SHUTDOWN_GRACE_S = 1.0  # Leaves room inside Snakepit 0.6's 2 s SIGTERM→SIGKILL window.
_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),  # An explicit --port already in use must fail the bind, not be shared.
]
_VALUE_FLAGS = frozenset(
    {
        "--port",
        "--host",
        "--elixir-address",
        "--snakepit-run-id",
        "--snakepit-instance-name",
        "--snakepit-instance-token",
        "--adapter",
    }
)
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse known flags; unknown flags and positionals (Snakepit may pass a script path) are ignored."""
    parser = argparse.ArgumentParser(prog="reference_worker", allow_abbrev=False)
    parser.add_argument("--port", type=int, default=0, help="Port to bind; 0 lets the OS choose (Snakepit)")
    parser.add_argument("--host", default="127.0.0.1", help="Bind address (loopback unless told otherwise)")
    parser.add_argument(
        "--elixir-address",
        default=os.environ.get("SNAKEPIT_GRPC_ADDRESS") or os.environ.get("SNAKEPIT_ELIXIR_ADDRESS") or None,
        help="HOST:PORT of Snakepit's BridgeServer, for callbacks and the heartbeat watchdog",
    )
    parser.add_argument("--snakepit-run-id", help="Kept in argv for Snakepit's process tracking")
    parser.add_argument("--snakepit-instance-name", help="Kept in argv for Snakepit's process tracking")
    parser.add_argument("--snakepit-instance-token", help="Kept in argv for Snakepit's process tracking")
    parser.add_argument("--adapter", help="Accepted for Snakepit's default argv; ignored")
    args, unknown = parser.parse_known_args(_join_values(argv))
    args.unknown = unknown
    return args


def _join_values(argv: list[str]) -> list[str]:
    """Turn `--flag value` into `--flag=value`, so a value starting with '-' (a token) is kept as a value."""
    joined: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in _VALUE_FLAGS and index + 1 < len(argv):
            joined.append(f"{arg}={argv[index + 1]}")
            index += 2
        else:
            joined.append(arg)
            index += 1
    return joined


def _configure_logging() -> None:
    """WARNING by default, to stderr; SNAKEPIT_LOG_LEVEL (debug/info/warning/error/none) overrides."""
    name = os.environ.get("SNAKEPIT_LOG_LEVEL", "warning").strip().lower()
    level = logging.CRITICAL + 1 if name == "none" else _LOG_LEVELS.get(name, logging.WARNING)
    log_format = "%(asctime)s %(name)s %(levelname)s %(message)s"
    logging.basicConfig(level=level, stream=sys.stderr, format=log_format)


def _enter_process_group() -> None:
    """SNAKEPIT_PROCESS_GROUP=1: lead a new group so Snakepit's group kill reaches our children too."""
    if os.environ.get("SNAKEPIT_PROCESS_GROUP", "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    with contextlib.suppress(PermissionError):  # EPERM: already a group leader, nothing to do.
        os.setsid()


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _announce_ready(port: int) -> None:
    """Both readiness signals, once the server accepts calls: the ready file (>= 0.8.1) and the line (0.6)."""
    ready_file = os.environ.get("SNAKEPIT_READY_FILE")
    if ready_file:
        temporary = f"{ready_file}.tmp"
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(str(port))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, ready_file)
    sys.stdout.flush()
    # One write(2): Snakepit 0.6 reads the port with no line buffering, so a split line could be misparsed.
    os.write(sys.stdout.fileno(), f"GRPC_READY:{port}\n".encode())


class _Shutdown:
    """The first stop request sets the exit status, except that a signal (status 0) always wins."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.code: int | None = None

    def request(self, code: int) -> None:
        if self.code is None or code == 0:
            self.code = code
        self._event.set()

    async def wait(self) -> int:
        await self._event.wait()
        return self.code if self.code is not None else 0


def _watch_stdin(loop: asyncio.AbstractEventLoop, on_eof: Callable[[], None]) -> None:
    """Read stdin to EOF in a daemon thread when it is a pipe or a socket, as Snakepit's is; a tty, /dev/null or a
    closed stdin (runs by hand) says nothing about Snakepit and is not watched."""

    def drain() -> None:
        with contextlib.suppress(OSError):  # a read error ends the watch as EOF does
            collections.deque(iter(functools.partial(os.read, 0, 65536), b""), maxlen=0)  # read until EOF
        _LOG.warning("stdin reached EOF: Snakepit is gone, shutting down")
        with contextlib.suppress(RuntimeError):  # The loop already closed: the process is exiting anyway.
            loop.call_soon_threadsafe(on_eof)

    with contextlib.suppress(OSError):  # no stdin at all (fd 0 closed)
        mode = os.fstat(0).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            threading.Thread(target=drain, name="stdin-watcher", daemon=True).start()


async def serve(args: argparse.Namespace) -> int:
    """Bind, start, announce readiness, serve until a signal or orphan condition; returns the exit status."""
    loop = asyncio.get_running_loop()
    elixir = ElixirClient(args.elixir_address) if args.elixir_address else None
    state = WorkerState(args.snakepit_run_id, args.snakepit_instance_name, elixir)
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    pb_grpc.add_BridgeServiceServicer_to_server(BridgeServicer(state), server)
    address = _bind_address(args.host, args.port)
    shutdown = _Shutdown()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.request, 0)
    orphaned = functools.partial(shutdown.request, EXIT_ORPHANED)
    _watch_stdin(loop, orphaned)
    try:
        port = server.add_insecure_port(address)  # RuntimeError when it cannot bind (an explicit port taken)
        await server.start()
        _announce_ready(port)  # OSError when the ready file cannot be written
    except (RuntimeError, OSError) as exc:
        sys.stderr.write(f"reference_worker: cannot start on {address}: {exc}\n")
        await server.stop(None)
        return 1
    watchdog = None
    heartbeat = load_heartbeat_config(os.environ.get("SNAKEPIT_HEARTBEAT_CONFIG"))
    if elixir is not None and heartbeat.enabled:
        watchdog = asyncio.create_task(heartbeat_watchdog(elixir, heartbeat, orphaned))
    code = await shutdown.wait()
    if watchdog is not None:
        watchdog.cancel()
    await server.stop(grace=SHUTDOWN_GRACE_S)
    state.stop_children()
    if elixir is not None:
        await elixir.close()
    return code


def exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown (grpc's threads and modules): that teardown is most of the time from
    SIGTERM to exit, 0.15-0.3 s on a busy 2-core machine and seconds under heavy load, against Snakepit 0.6's 2 s
    grace. Everything the worker started is stopped by then; the log and output are flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the worker; returns its exit status: 0 on SIGTERM/SIGINT, 70 if orphaned, 1 if it cannot start."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if args.unknown:
        _LOG.debug("ignoring unknown arguments: %s", args.unknown)
    _enter_process_group()
    return asyncio.run(serve(args))
